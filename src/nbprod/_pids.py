"""Whether a process id on this machine still names a running process.

Jobs, registrations and server workers record their pid so that a later process can tell a
crashed owner (its leftovers are safe to repair) from a live one (hands off).
"""

from __future__ import annotations

import os

__all__ = ["alive"]


def alive(pid: int) -> bool:
    """True while ``pid`` exists; a process owned by another user counts as alive."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
