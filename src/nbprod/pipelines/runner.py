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
from .paths import anchor_args, anchor_given, notebook
from .results import PipelineRun, PipelineRuns, Plan
from .spec import CHANGES, REF, Pipeline, check_numbers, check_values, load
from .verbs import STEPS, GateFailed, undo_canary

__all__ = ["pipeline", "plan", "resume", "queue", "runs", "get_run", "resolve"]


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
    merged = _params(p, anchor_given(params))
    check_values(p, merged)
    steps = []
    for s in p.steps:
        inputs = {k: v for k, v in s.args.items() if k != "outputs"}
        inputs = resolve(inputs, {"params": merged, "pipeline": {"run_id": "<run>", "name": p.name},
                                  "__plan__": True})
        if s.kind != "notebook":  # the files it would read, as the run will (:mod:`.paths`)
            inputs = anchor_args(s.kind, inputs, p.folder)
        steps.append({"name": s.name, "kind": s.kind, "needs": s.needs, "inputs": inputs, "changes": CHANGES[s.kind]})
    return Plan(p.name, str(p.path), merged, steps, p.schedule)


_experiments: dict[tuple[str, str], str] = {}


def _experiment(c, name: str, *, fresh: bool = False) -> str:
    """The pipeline's experiment, made the way a job's is: its artefacts under NBPROD_HOME, not in
    MLflow's default ``./mlruns`` of whatever folder the runner was started in. Cached per process
    and tracking store (``fresh``: look it up again, e.g. after it was deleted)."""
    from ..config import settings
    from ..jobs.prepare import choose_experiment

    key = (settings.tracking_uri, name)
    if fresh or key not in _experiments:
        _experiments[key] = choose_experiment(c, f"pipeline-{name}")
    return _experiments[key]


def _parent_run(c, p: Pipeline, extra: dict | None = None) -> tuple[str, str]:
    """(experiment id, parent run id): a cached experiment that was deleted meanwhile is looked up again."""
    tags = {"mlflow.runName": p.name, "nbprod.pipeline": p.name, "nbprod.pipeline_path": str(p.path), **(extra or {})}
    exp_id = _experiment(c, p.name)
    try:
        return exp_id, c.create_run(exp_id, tags=tags).info.run_id
    except Exception:  # noqa: BLE001 - retried once with a fresh lookup (which restores a deleted one)
        exp_id = _experiment(c, p.name, fresh=True)
        return exp_id, c.create_run(exp_id, tags=tags).info.run_id


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


def _step_run(c, exp_id: str, parent: str, step, st: dict) -> str:
    """A verb step's child run, written once the step has ended, in two calls to the tracking store:
    ``create_run`` carrying its outputs, status and reason as tags, then its end. (Its numbers are
    also metrics ``<step>.<name>`` of the parent run: :func:`_parent_metrics`.)"""
    started = int(st.get("started_at", time.time()) * 1000)
    tags = {"mlflow.parentRunId": parent, "mlflow.runName": step.name, "nbprod.pipeline_step": step.name,
            "nbprod.verb": step.kind, "nbprod.status": st["status"]}
    for k, v in _flat(st.get("outputs") or {}):
        if v is not None:
            tags[f"nbprod.output.{k}"] = str(v)[:500]
    if st.get("reason"):
        tags["nbprod.reason"] = st["reason"][:500]
    child = c.create_run(exp_id, start_time=started, tags=tags).info.run_id
    c.set_terminated(child, "FINISHED" if st["status"] == "done" else "FAILED")
    return child


def _parent_metrics(c, run_id: str, steps: dict) -> None:
    """Every step's numeric outputs as metrics ``<step>.<name>`` of the parent run, in one batch at
    the end: one row per pipeline run in MLflow's run table compares whole runs, and the store is
    called once instead of once per step."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(f"{name}.{k}", float(v), now, 0) for name, st in steps.items()
               for k, v in _flat(st.get("outputs") or {})
               if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v]
    if metrics:
        c.log_batch(run_id, metrics=metrics)


def _notebook(p: Pipeline, step, args: dict, exp_name: str, parent: str) -> tuple[dict, str | None]:
    from ..jobs import JobFailed
    from ..jobs import run as run_job
    from ..registry.store import client

    nb = notebook(args["notebook"], p.folder)  # beside the pipeline file (:mod:`.paths`)
    try:
        job = run_job(nb, args.get("parameters") or {}, experiment=exp_name, progress=False,
                      timeout=args.get("timeout_s"))
    except JobFailed as exc:
        if exc.result.run_id:
            client().set_tag(exc.result.run_id, "mlflow.parentRunId", parent)
        job = exc.result  # its problem names the notebook again ("…/train.ipynb failed: …"): its error alone
        what = (job.error or {}).get("message") or exc.problem
        raise PipelineError(f"notebook {nb.name} {job.status.lower().replace('_', ' ')}: {what}",
                            f"its partial output is in job run {job.run_id} (nbprod runs, the MLflow UI)") from exc
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


def _execute(p: Pipeline, run_id: str, params: dict, steps: dict, progress: Any, exp_id: str) -> PipelineRun:
    from .. import _context, audit, state
    from ..registry.store import client

    c = client()
    who = _context.current()  # one call's provenance for all its audit rows (git status once, not per step)
    exp_name = f"pipeline-{p.name}"
    ctx: dict[str, Any] = {"params": params, "pipeline": {"run_id": run_id, "name": p.name}}
    for name, st in steps.items():
        if st.get("status") == "done":
            ctx[name] = st.get("outputs") or {}
    status, reason, ended = "FINISHED", None, False
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
            args = check_numbers(step, resolve(step.args, ctx), p.path, final=True)
            if step.kind == "notebook":
                outputs, child = _notebook(p, step, args, exp_name, run_id)
            else:
                args = anchor_args(step.kind, args, p.folder)
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
            # a reason is a line of the runs table: an nbprod error's problem, without its fix and the line break
            text = exc.problem if isinstance(exc, NbprodError) else f"{type(exc).__name__}: {exc}"
            st.update(status="failed", reason=text[:500], child_run_id=child, pending=None)
            status, reason = "FAILED", f"{step.name}: {text[:500]}"
        finally:
            if guard is not None:  # the pending canary is cleared: the guard exits
                store.update_run(run_id, steps=steps)
                guard.wait(timeout=30)
        if step.kind != "notebook":
            st["child_run_id"] = child = _step_run(c, exp_id, run_id, step, st)
        last = st["status"] != "done" or step is p.steps[-1]
        # the step's end, its audit row (and after the last step the run's end) in one transaction
        with state.write_transaction() as conn:
            if last:
                store.update_run(run_id, steps=steps, status=status, reason=reason, connection=conn)
            else:
                store.update_run(run_id, steps=steps, connection=conn)
            audit.record(f"pipeline.{step.kind}", model_uri=_model_of(st.get("outputs")), connection=conn, context=who,
                         details={"pipeline": p.name, "run_id": run_id, "step": step.name, "status": st["status"],
                                  "reason": st.get("reason"), "child_run_id": child})
            if last:
                ended = True
                audit.record("pipeline.run", connection=conn, context=who,
                             details={"pipeline": p.name, "run_id": run_id, "status": status, "reason": reason})
        if st["status"] != "done":
            break
    if not ended:  # nothing left to run (a resume after the last step's end was recorded)
        with state.write_transaction() as conn:
            store.update_run(run_id, steps=steps, status=status, reason=reason, connection=conn)
            audit.record("pipeline.run", connection=conn, context=who,
                         details={"pipeline": p.name, "run_id": run_id, "status": status, "reason": reason})
    _parent_metrics(c, run_id, steps)
    c.set_terminated(run_id, "FINISHED" if status == "FINISHED" else "FAILED")
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
    The file's relative paths are beside it; a relative file path in ``params`` is the caller's
    (:mod:`.paths`), recorded absolute.
    """
    from ..registry.store import client

    p = load(path)
    merged = _params(p, anchor_given(params))
    check_values(p, merged)
    owner = store.acquire(p.name, None)
    try:
        _cleanup(p.name)
        c = client()
        exp_id, parent = _parent_run(c, p)
        from mlflow.entities import Param

        c.log_batch(parent, params=[Param(k, str(v)[:500]) for k, v in merged.items()])
        steps = {s.name: {"status": "pending", "kind": s.kind, "needs": s.needs} for s in p.steps}
        store.create_run(parent, p.name, str(p.path.resolve()), merged, steps, owner)  # and names it in the lock
        return _finish(_execute(p, parent, merged, steps, progress, exp_id))
    finally:
        store.release(p.name)


def queue(path: str | Path, params: dict | None, *, connection, tags: dict | None = None) -> str:
    """Record a run of ``path`` to be started by another process (``nbprod pipeline resume RUN_ID``),
    as QUEUED, in the caller's transaction ``connection``; its parent MLflow run is made now, so
    its id is known before anything runs (an alert's message names it). Returns the run id."""
    from mlflow.entities import Param

    from ..registry.store import client

    p = load(path)
    merged = _params(p, params)
    check_values(p, merged)
    c = client()
    _, run_id = _parent_run(c, p, tags)
    c.log_batch(run_id, params=[Param(k, str(v)[:500]) for k, v in merged.items()])
    steps = {s.name: {"status": "pending", "kind": s.kind, "needs": s.needs} for s in p.steps}
    store.create_run(run_id, p.name, str(p.path.resolve()), merged, steps, None, status="QUEUED",
                     connection=connection)
    return run_id


def resume(run_id: str, params: dict | None = None, *, progress: Any = None) -> PipelineRun:
    """Continue run ``run_id`` from its failed (or interrupted) step, reusing the outputs of the steps done;
    a QUEUED run (one an alert started: :mod:`.trigger`) starts from its first step.

    ``params`` override recorded parameters for the steps still to run (after fixing what failed).
    It reads the same files from any folder: the pipeline file is recorded by its absolute path, its
    relative paths are beside it, and given parameters' relative file paths are the caller's (:mod:`.paths`)."""
    from ..registry.store import client

    run_id = store.resolve(run_id)
    row = store.read_run(run_id)
    if row["status"] == "FINISHED":
        raise PipelineError(f"pipeline run {run_id} already finished", "start a new run: nbprod pipeline run FILE")
    if row["status"] == "RUNNING":
        raise PipelineError(f"pipeline run {run_id} is still running", "wait for it (nbprod pipeline runs)")
    p = load(row["path"])
    given = anchor_given(params)
    _params(p, given)  # unknown names refused
    check_values(p, {**row["params"], **(given or {})})  # before the lock and the clean-up: nothing changes
    owner = store.acquire(p.name, run_id)
    try:
        _cleanup(p.name)
        row = store.read_run(run_id)
        steps = row["steps"]
        for s in p.steps:
            steps.setdefault(s.name, {"status": "pending", "kind": s.kind, "needs": s.needs})
            if steps[s.name].get("status") != "done":
                steps[s.name].update(status="pending", reason=None)
        merged = {**row["params"], **(given or {})}
        store.update_run(run_id, steps=steps, status="RUNNING", owner=owner)
        c = client()
        c.update_run(run_id, status="RUNNING")
        return _finish(_execute(p, run_id, merged, steps, progress, _experiment(c, p.name)))
    finally:
        store.release(p.name)


def get_run(run_id: str) -> PipelineRun:
    """The run ``run_id`` names (a unique prefix of 4 or more characters is enough)."""
    row = store.read_run(store.resolve(run_id))
    try:
        p = load(row["path"])
    except NbprodError:
        p = None
    return _result(row, p)


def runs(pipeline: str | None = None, *, as_json: bool = False, limit: int | None = None) -> PipelineRuns:
    return PipelineRuns(store.list_runs(pipeline, limit), as_json=as_json)
