"""``nbprod pipeline scheduler FILE…``: run pipelines on their recorded ``schedule:`` (cron, 5 fields).

One run at a time per pipeline (the state-DB lock: a run still going, here or elsewhere, makes the
due run a *missed* one); a run missed while busy or down is logged once, never run twice to catch up.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime, timedelta
from typing import Any

from ..errors import NbprodError, PipelineConflict, PipelineError
from .cron import next_after, parse
from .spec import load

__all__ = ["scheduler", "due"]


def due(schedule: str, last: datetime, now: datetime) -> tuple[bool, int]:
    """Is a run due between ``last`` and ``now``, and how many further due times were missed."""
    c = parse(schedule)
    t = next_after(c, last)
    if t > now:
        return False, 0
    missed = 0
    while True:
        nxt = next_after(c, t)
        if nxt > now:
            return True, missed
        missed += 1
        t = nxt


def scheduler(paths: list[str], *, once: bool = False, now: Any = None, log=None) -> str:
    """Check every minute which pipelines are due; run each due one (``once``: check once, then return)."""
    from .runner import pipeline

    say = log or (lambda text: print(f"nbprod scheduler: {text}", file=sys.stderr, flush=True))
    files = [load(p) for p in paths]
    for p in files:
        if not p.schedule:
            raise PipelineError(f"{p.path} has no schedule:", 'add e.g. schedule: "0 3 * * 1"')
    start = now() if callable(now) else datetime.now()
    minute = start.replace(second=0, microsecond=0)
    # --once checks whether the current minute is a due time; the loop starts from now
    last = {str(p.path): minute - timedelta(minutes=1) if once else minute for p in files}
    ran = []
    while True:
        current = now() if callable(now) else datetime.now()
        for p in files:
            key = str(p.path)
            is_due, missed = due(p.schedule or "", last[key], current)
            if not is_due:
                continue
            if missed:
                say(f"{p.name}: {missed} scheduled run(s) missed while busy or down; running once now")
            last[key] = current
            try:
                run = pipeline(p.path)
                say(f"{p.name}: run {run.run_id} {run.status}")
                ran.append(run.run_id)
            except PipelineConflict as exc:
                say(f"{p.name}: scheduled run missed: {exc.problem}")
            except NbprodError as exc:
                say(f"{p.name}: run failed: {exc}")
        if once:
            return f"{len(ran)} run(s): {', '.join(ran)}" if ran else "nothing due"
        time.sleep(max(1.0, 60 - datetime.now().second))
