"""Where a fresh ``nbprod run`` (or ``papermill``) command line spends its wall time: a timeline.

Runs one command line in this process with wall-clock marks (seconds since the process started,
and this process's CPU seconds) around each phase: imports, the kernel's start, MLflow's store,
the run's creation, each cell, the end of the execution, the HTML wait, every store call, the
exit. It wraps functions in place (no change to nbprod), so it shows nbprod's critical path as
the command runs it. Used for issue 14 (BENCHMARKS.md, Jobs):

    .venv/bin/python benchmarks/timeline_run.py nbprod run small.ipynb --no-progress -p alpha 2
    .venv/bin/python benchmarks/timeline_run.py papermill small.ipynb out.ipynb -p alpha 2 -k python3

Set ``NBPROD_HOME`` to a scratch folder first. The process start is taken from ``/proc`` (Linux).
"""

from __future__ import annotations

import atexit
import functools
import inspect
import os
import sys
import time

_marks: list[tuple[float, float, str]] = []


def _started() -> float:
    """This process's start, in ``time.time()`` seconds (from /proc; now where there is none)."""
    try:
        ticks = int(open(f"/proc/{os.getpid()}/stat").read().rsplit(")", 1)[1].split()[19])
        uptime = float(open("/proc/uptime").read().split()[0])
        return time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.time()


T0 = _started()


def mark(label: str) -> None:
    _marks.append((time.time() - T0, time.process_time(), label))


def wrap(owner, name: str, label: str | None = None) -> None:
    """Mark the start and end of ``owner.name`` (a function or coroutine function)."""
    fn = getattr(owner, name, None)
    if fn is None:
        return
    label = label or name
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def awrapped(*a, **k):
            mark(f"> {label}")
            try:
                return await fn(*a, **k)
            finally:
                mark(f"< {label}")
        setattr(owner, name, awrapped)
        return

    @functools.wraps(fn)
    def wrapped(*a, **k):
        mark(f"> {label}")
        try:
            return fn(*a, **k)
        finally:
            mark(f"< {label}")
    if isinstance(inspect.getattr_static(owner, name), classmethod):
        setattr(owner, name, classmethod(lambda cls, *a, **k: wrapped(*a, **k)))
    else:
        setattr(owner, name, wrapped)


def _cells() -> None:
    from papermill.engines import NotebookExecutionManager

    for name in ("cell_start", "cell_complete", "notebook_complete"):
        fn = getattr(NotebookExecutionManager, name)

        def hooked(self, *a, _fn=fn, _name=name, **k):
            mark(f"{_name} {k.get('cell_index', a[1] if len(a) > 1 else '')}".rstrip())
            return _fn(self, *a, **k)
        setattr(NotebookExecutionManager, name, hooked)
    import nbclient.client as nc
    import papermill.execute as pe

    wrap(pe, "write_ipynb", "papermill writes the executed copy")
    for name in ("load_notebook_node", "parameterize_notebook", "prepare_notebook_metadata"):
        wrap(pe, name, f"papermill.{name}")
    wrap(nc.NotebookClient, "async_start_new_kernel_client", "nbclient starts its kernel client")
    wrap(nc.NotebookClient, "async_wait_for_reply", "nbclient waits for a reply")


def _report() -> None:
    mark("atexit (the interpreter's teardown follows unless skipped)")
    width = max(len(label) for _, _, label in _marks)
    print(f"\n{'wall s':>7}  {'cpu s':>6}  event (this process; the kernel and the HTML helper are others)",
          file=sys.stderr)
    for wall, cpu, label in _marks:
        print(f"{wall:7.3f}  {cpu:6.2f}  {label:<{width}}", file=sys.stderr)


def _nbprod(argv: list[str]) -> int:
    import nbprod.cli

    mark("nbprod.cli imported")
    import nbprod.jobs.execute as ex
    import nbprod.jobs.kernel as kernel
    import nbprod.jobs.render as render

    mark("nbprod.jobs imported")
    for mod, names in [(ex, ["read_notebook", "choose_kernel", "check_parameters", "git_info", "_tracked",
                             "choose_experiment", "finish"]),
                       (render, ["start", "render"]), (ex.environment, ["capture"])]:
        for name in names:
            wrap(mod, name, f"{mod.__name__.rsplit('.', 1)[-1]}.{name}")
    wrap(kernel.EarlyKernel, "start", "kernel started (process launched)")
    wrap(kernel.EarlyKernel, "request_shutdown", "kernel asked to shut down")
    wrap(kernel.EarlyKernel, "settle", "wait for the kernel's exit")
    runstore = getattr(ex, "runstore", None)
    if runstore is not None:  # the run is written by a helper process (MLflow is imported there) or here
        wrap(runstore, "start", "runstore.start (the store's helper process launched)")
        for cls in (runstore.HelperStore, runstore.LocalStore):
            for name in ("open", "close", "stop"):
                wrap(cls, name, f"{cls.__name__}.{name}")
    register = ex.register_engine

    def register_engine():
        mark("papermill, nbclient imported")
        register()
        _cells()
        if runstore is not None and "mlflow" not in sys.modules:
            return  # this process does not import MLflow: its store calls are the helper's
        from mlflow.tracking import MlflowClient

        for name in ["create_run", "log_artifacts", "get_run", "log_batch", "set_terminated",
                     "search_model_versions"]:
            wrap(MlflowClient, name, f"MlflowClient.{name}")
    ex.register_engine = register_engine  # then MLflow is imported and its store opened: until choose_experiment
    mark("timeline hooks set")
    code = nbprod.cli.main(argv)
    mark("main() returned")
    return code


def _papermill(argv: list[str]) -> int:
    from papermill.cli import papermill

    mark("papermill.cli imported")
    _cells()
    import papermill.cli as pc

    wrap(pc, "execute_notebook", "papermill.execute_notebook")
    try:
        papermill.main(argv, standalone_mode=False)
    finally:
        mark("main() returned")
    return 0


def main() -> None:
    mark("timeline_run.py started (interpreter up)")
    atexit.register(_report)
    tool, argv = sys.argv[1], sys.argv[2:]
    code = _nbprod(argv) if tool == "nbprod" else _papermill(argv)
    if tool == "nbprod":
        from nbprod.cli import exit_now

        exit_now(code)
    sys.exit(code)


if __name__ == "__main__":
    main()
