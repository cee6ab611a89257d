"""``python -m nbprod.pipelines.guard RUN_ID STEP PID``: roll back a canary if its runner dies mid-step.

The canary step starts this detached process right after recording the canary it adds. It polls
the run's record: when the step no longer has a pending canary (it finished, or rolled back on a
failed gate) it exits; when the runner ``PID`` is gone (SIGKILL, a crash) while the canary is still
pending, it rolls the canary back and clears the mark, so production is as the last completed step
left it and ``nbprod pipeline resume`` starts the step afresh.
"""

from __future__ import annotations

import sys
import time


def watch(run_id: str, step: str, pid: int, interval: float = 0.2) -> str:
    from ..deployments.process import alive
    from . import store
    from .verbs import undo_canary

    while True:
        row = store.read_run(run_id)
        st = row["steps"].get(step) or {}
        pending = (st.get("pending") or {}).get("canary")
        if not pending:
            return "step ended"
        if not alive(pid):
            undo_canary(pending["deployment"], pending["version"])
            row = store.read_run(run_id)
            row["steps"][step]["pending"] = None
            row["steps"][step]["reason"] = "runner died; canary rolled back by the guard"
            store.update_run(run_id, steps=row["steps"])
            from .. import audit

            audit.record("pipeline.canary", details={"pipeline": row["pipeline"], "run_id": run_id, "step": step,
                                                     "status": "rolled back by guard",
                                                     "version": pending["version"]})
            return "rolled back"
        time.sleep(interval)


if __name__ == "__main__":  # pragma: no cover - run as a detached process
    watch(sys.argv[1], sys.argv[2], int(sys.argv[3]))
