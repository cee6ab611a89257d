"""Run a pipeline: one parent MLflow run, a child run per step, an audit row per step, a lock per name.

A step's state is written to the state DB before and after it runs, so a runner killed mid-step
leaves a record ``resume`` continues from. The canary step records the canary it is about to add
before traffic moves and starts a guard process (:mod:`.guard`) that rolls the canary back if the
runner dies before the step ends — production is never left with half a canary.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import NbprodError, PipelineError
from . import store
from .results import PipelineRun, PipelineRuns, Plan
from .spec import CHANGES, REF, Pipeline, load
from .verbs import STEPS, GateFailed, undo_canary

__all__ = ["pipeline", "plan", "resume", "runs", "get_run", "resolve"]


def _lookup(ref: str, ctx: dict) -> Any:
    if ctx.get("__plan__") and ref.split(".", 1)[0] not in ("params", "pipeline"):
        return f"<{ref}>"  # a plan: where the value will come from
    value: Any = ctx
    for part in ref.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        else:
            raise PipelineError(f"${{{ref}}} has no value (no {part!r})",
                                "the step that produces it did not output it; check its outputs with "
                                "nbprod pipeline show RUN_ID")
    return value


def resolve(value: Any, ctx: dict) -> Any:
    """Substitute ``${step.output}`` references: a whole-value reference keeps its type."""
    if isinstance(value, str):
        whole = REF.fullmatch(value.strip())
        if whole:
            return _lookup(whole.group(1), ctx)
        return REF.sub(lambda m: str(_lookup(m.group(1), ctx)), value)
    if isinstance(value, dict):
        return {k: resolve(v, ctx) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, ctx) for v in value]
    return value


def _params(p: Pipeline, given: dict | None) -> dict:
    unknown = sorted(set(given or {}) - set(p.params))
    if unknown:
        raise PipelineError(f"pipeline {p.name!r} has no parameter {unknown[0]!r}",
                            f"its parameters: {', '.join(p.params) or 'none'} (declare new ones under params:)")
    return {**p.params, **(given or {})}


def plan(path: str | Path, params: dict | None = None) -> Plan:
    """The steps, their inputs and what each would change — checked, nothing run."""
    p = load(path)
    merged = _params(p, params)
    steps = []
    for s in p.steps:
        inputs = {k: v for k, v in s.args.items() if k != "outputs"}
        inputs = resolve(inputs, {"params": merged, "pipeline": {"run_id": "<run>", "name": p.name},
                                  "__plan__": True})
        steps.append({"name": s.name, "kind": s.kind, "needs": s.needs, "inputs": inputs, "changes": CHANGES[s.kind]})
    return Plan(p.name, str(p.path), merged, steps, p.schedule)


def _experiment(c, name: str) -> str:
    """The pipeline's experiment, made the way a job's is: its artefacts under NBPROD_HOME, not in
    MLflow's default ``./mlruns`` of whatever folder the runner was started in."""
    from ..jobs.prepare import choose_experiment

    return choose_experiment(c, f"pipeline-{name}")


def _cleanup(name: str) -> list[str]:
    """Roll back canaries left by interrupted runs of ``name`` (the guard normally did already)."""
    undone = []
    for r in store.list_runs(name, limit=20):
        if r["status"] != "INTERRUPTED":
            continue
        changed = False
        for step in r["steps"].values():
            pend = step.get("pending") or {}
            c = pend.get("canary")
            if c and undo_canary(c["deployment"], c["version"]):
                undone.append(f"v{c['version']} on {c['deployment']}")
            if pend:
                step["pending"] = None
                changed = True
        if changed:
            store.update_run(r["run_id"], steps=r["steps"])
    return undone


def _start_guard(run_id: str, step: str) -> subprocess.Popen:
    from ..config import settings

    env = {**os.environ, "NBPROD_DB_URL": settings.db_url, "NBPROD_HOME": str(settings.home)}
    return subprocess.Popen([sys.executable, "-m", "nbprod.pipelines.guard", run_id, step, str(os.getpid())],
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def _flat(outputs: dict, prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for k, v in outputs.items():
        items += _flat(v, f"{prefix}{k}.") if isinstance(v, dict) else [(f"{prefix}{k}", v)]
    return items


def _log_outputs(c, run_id: str, outputs: dict, status: str, reason: str | None) -> None:
    """A step's outputs (numbers as metrics, the rest as tags) and its end, in two calls to the store."""
    from mlflow.entities import Metric, RunTag

    now = int(time.time() * 1000)
    metrics, tags = [], [RunTag("nbprod.status", status)]
    for k, v in _flat(outputs):
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            metrics.append(Metric(k, float(v), now, 0))
        elif v is not None:
            tags.append(RunTag(f"nbprod.output.{k}", str(v)[:500]))
    if reason:
        tags.append(RunTag("nbprod.reason", reason[:500]))
    c.log_batch(run_id, metrics=metrics, tags=tags)
    c.set_terminated(run_id, "FINISHED" if status == "done" else "FAILED")


def _notebook(p: Pipeline, step, args: dict, exp_name: str, parent: str) -> tuple[dict, str | None]:
    from ..jobs import JobFailed
    from ..jobs import run as run_job
    from ..registry.store import client

    nb = Path(args["notebook"])
    if not nb.is_absolute():
        nb = p.path.parent / nb
    try:
        job = run_job(nb, args.get("parameters") or {}, experiment=exp_name, progress=False,
                      timeout=args.get("timeout_s"))
    except JobFailed as exc:
        if exc.result.run_id:
            client().set_tag(exc.result.run_id, "mlflow.parentRunId", parent)
        raise PipelineError(f"notebook {nb.name} failed: {exc.problem}",
                            f"its partial output is in job run {exc.result.run_id} (nbprod runs, the MLflow UI)"
                            ) from exc
    client().set_tag(job.run_id, "mlflow.parentRunId", parent)
    client().set_tag(job.run_id, "nbprod.pipeline_step", step.name)
    outputs = {"run_id": job.run_id, "model_uri": job.models[0] if job.models else None, "models": list(job.models),
               "status": job.status, "output": str(job.output) if job.output else None, "metrics": dict(job.metrics)}
    for name in args.get("outputs") or []:
        try:
            _lookup(name, outputs)
        except PipelineError:
            raise PipelineError(f"notebook step {step.name!r} declares output {name!r} but its job "
                                f"{job.run_id} did not produce it",
                                "register a model / log the metric in the notebook, or drop it from outputs:") from None
    return outputs, job.run_id


def _execute(p: Pipeline, run_id: str, params: dict, steps: dict, progress: Any) -> PipelineRun:
    from .. import audit
    from ..registry.store import client

    c = client()
    exp_name = f"pipeline-{p.name}"
    exp_id = _experiment(c, p.name)
    ctx: dict[str, Any] = {"params": params, "pipeline": {"run_id": run_id, "name": p.name}}
    for name, st in steps.items():
        if st.get("status") == "done":
            ctx[name] = st.get("outputs") or {}
    status, reason = "FINISHED", None
    for step in p.steps:
        st = steps[step.name]
        if st.get("status") == "done":
            continue
        st.update(status="running", reason=None, started_at=time.time())
        store.update_run(run_id, steps=steps)
        _show(progress, p, run_id, steps, "RUNNING")
        child = None
        guard = None
        try:
            args = resolve(step.args, ctx)
            if step.kind == "notebook":
                outputs, child = _notebook(p, step, args, exp_name, run_id)
            else:
                child = c.create_run(exp_id, tags={"mlflow.parentRunId": run_id, "mlflow.runName": step.name,
                                                   "nbprod.pipeline_step": step.name, "nbprod.verb": step.kind}
                                     ).info.run_id

                def record(pending: dict, _st=st, _name=step.name) -> None:
                    nonlocal guard
                    _st["pending"] = pending
                    store.update_run(run_id, steps=steps)
                    guard = _start_guard(run_id, _name)

                outputs = STEPS[step.kind](args, {"record": record, "tick": lambda: None})
            st.update(status="done", outputs=outputs, child_run_id=child, pending=None, ended_at=time.time())
            ctx[step.name] = outputs
        except GateFailed as exc:
            st.update(status="gate_failed", reason=exc.reason, outputs=exc.outputs, child_run_id=child, pending=None)
            status, reason = "GATE_FAILED", f"{step.name}: {exc.reason}"
        except Exception as exc:  # noqa: BLE001 - recorded, then raised as a PipelineError
            text = f"{type(exc).__name__}: {exc}" if not isinstance(exc, NbprodError) else str(exc)
            st.update(status="failed", reason=text[:500], child_run_id=child, pending=None)
            status, reason = "FAILED", f"{step.name}: {text[:500]}"
        finally:
            if guard is not None:  # the pending canary is cleared: the guard exits
                store.update_run(run_id, steps=steps)
                guard.wait(timeout=30)
        if child and step.kind != "notebook":
            _log_outputs(c, child, st.get("outputs") or {}, st["status"], st.get("reason"))
        audit.record(f"pipeline.{step.kind}", model_uri=_model_of(st.get("outputs")),
                     details={"pipeline": p.name, "run_id": run_id, "step": step.name, "status": st["status"],
                              "reason": st.get("reason"), "child_run_id": child})
        store.update_run(run_id, steps=steps)
        if st["status"] != "done":
            break
    store.update_run(run_id, steps=steps, status=status, reason=reason)
    c.set_terminated(run_id, "FINISHED" if status == "FINISHED" else "FAILED")
    audit.record("pipeline.run", details={"pipeline": p.name, "run_id": run_id, "status": status, "reason": reason})
    result = _result(store.read_run(run_id), p)
    _show(progress, p, run_id, steps, status)
    return result


def _model_of(outputs: dict | None) -> str | None:
    uri = (outputs or {}).get("model_uri")
    return uri if isinstance(uri, str) else None


def _show(progress: Any, p: Pipeline, run_id: str, steps: dict, status: str) -> None:
    if progress is None:
        return
    progress(_result({"run_id": run_id, "pipeline": p.name, "path": str(p.path), "status": status, "steps": steps,
                      "reason": None, "params": {}}, p))


def _result(row: dict, p: Pipeline | None = None) -> PipelineRun:
    order = [s.name for s in p.steps] if p else list(row["steps"])
    kinds = {s.name: (s.kind, s.needs) for s in p.steps} if p else {}
    steps = []
    for name in order:
        st = dict(row["steps"].get(name) or {})
        kind, needs = kinds.get(name, (st.get("kind"), st.get("needs", [])))
        steps.append({"name": name, "kind": kind, "needs": needs, "status": st.get("status", "pending"),
                      "reason": st.get("reason"), "outputs": st.get("outputs") or {},
                      "child_run_id": st.get("child_run_id")})
    return PipelineRun(row["run_id"], row["pipeline"], row["path"], row["status"], steps, row.get("reason"),
                       row.get("params") or {})


def _finish(result: PipelineRun) -> PipelineRun:
    if result.status == "FAILED":
        raise PipelineError(f"pipeline {result.pipeline} run {result.run_id} failed at {result.reason}",
                            f"inspect: nbprod pipeline show {result.run_id}; after fixing it, "
                            f"resume: nbprod pipeline resume {result.run_id}")
    return result


def pipeline(path: str | Path, params: dict | None = None, *, progress: Any = None) -> PipelineRun:
    """Run the pipeline file ``path`` (parameters override its ``params:``) → :class:`PipelineRun`.

    A gate that fails returns a run with ``status == "GATE_FAILED"`` (``ok`` false) and the reason;
    a step that errors raises :class:`PipelineError` naming the command to inspect or resume.
    A second runner of the same pipeline while one runs raises :class:`PipelineConflict`.
    """
    from ..registry.store import client

    p = load(path)
    merged = _params(p, params)
    owner = store.acquire(p.name, None)
    try:
        _cleanup(p.name)
        c = client()
        parent = c.create_run(_experiment(c, p.name), tags={"mlflow.runName": p.name, "nbprod.pipeline": p.name,
                                                            "nbprod.pipeline_path": str(p.path)}).info.run_id
        from mlflow.entities import Param

        c.log_batch(parent, params=[Param(k, str(v)[:500]) for k, v in merged.items()])
        steps = {s.name: {"status": "pending", "kind": s.kind, "needs": s.needs} for s in p.steps}
        store.create_run(parent, p.name, str(p.path.resolve()), merged, steps, owner)
        store.acquire(p.name, parent)
        return _finish(_execute(p, parent, merged, steps, progress))
    finally:
        store.release(p.name)


def resume(run_id: str, params: dict | None = None, *, progress: Any = None) -> PipelineRun:
    """Continue run ``run_id`` from its failed (or interrupted) step, reusing the outputs of the steps done.

    ``params`` override recorded parameters for the steps still to run (after fixing what failed)."""
    from ..registry.store import client

    row = store.read_run(run_id)
    if row["status"] == "FINISHED":
        raise PipelineError(f"pipeline run {run_id} already finished", "start a new run: nbprod pipeline run FILE")
    if row["status"] == "RUNNING":
        raise PipelineError(f"pipeline run {run_id} is still running", "wait for it (nbprod pipeline runs)")
    p = load(row["path"])
    owner = store.acquire(p.name, run_id)
    try:
        _cleanup(p.name)
        row = store.read_run(run_id)
        steps = row["steps"]
        for s in p.steps:
            steps.setdefault(s.name, {"status": "pending", "kind": s.kind, "needs": s.needs})
            if steps[s.name].get("status") != "done":
                steps[s.name].update(status="pending", reason=None)
        _params(p, params)  # unknown names refused
        merged = {**row["params"], **(params or {})}
        store.update_run(run_id, steps=steps, status="RUNNING", owner=owner)
        client().update_run(run_id, status="RUNNING")
        return _finish(_execute(p, run_id, merged, steps, progress))
    finally:
        store.release(p.name)


def get_run(run_id: str) -> PipelineRun:
    row = store.read_run(run_id)
    try:
        p = load(row["path"])
    except NbprodError:
        p = None
    return _result(row, p)


def runs(pipeline: str | None = None, *, as_json: bool = False, limit: int | None = None) -> PipelineRuns:
    return PipelineRuns(store.list_runs(pipeline, limit), as_json=as_json)
