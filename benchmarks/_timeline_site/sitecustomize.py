"""Timeline marks of every Python process started with this folder on ``PYTHONPATH`` and ``NBPROD_TL``
set to a file (benchmarks/timeline_deploy.py): one line per mark, ``pid ppid time cpu what``.

Marks: the interpreter's start, the start and end (wall and CPU) of each heavy import in ``WATCH``,
uvicorn's app factory (``Config.load``), ``Server.startup`` (its end: the worker serves),
``nbprod.serving.loader.load_version``, and the exit.
"""

import os
import sys
import time

_T = os.environ.get("NBPROD_TL")
WATCH = {"nbprod", "nbprod.cli", "nbprod.service", "nbprod.serving.app", "sqlalchemy", "numpy", "starlette",
         "uvicorn", "nbprod.serving.loader", "nbprod.monitoring.predlog", "nbprod.state", "yaml",
         "nbprod.deployments.events", "nbprod.monitoring.http", "prometheus_client", "multiprocessing",
         "nbprod.serving.server", "pandas", "sklearn", "mlflow", "nbprod.registry", "anyio", "uvloop", "httptools"}


def _mark(what):
    _f.write(f"{os.getpid()} {os.getppid()} {time.time():.4f} {time.process_time():.4f} {what}\n")


def _instrument(name, module):
    """Marks around what a module does once it is imported (uvicorn's start-up, the model load)."""
    if name == "uvicorn":
        import uvicorn.config as uc
        import uvicorn.server as us

        startup = us.Server.startup

        async def marked_startup(self, sockets=None):
            _mark("uvicorn startup>")
            await startup(self, sockets=sockets)
            _mark("uvicorn startup< (serving)")

        us.Server.startup = marked_startup
        load = uc.Config.load

        def marked_load(self):
            _mark("config.load> (app factory)")
            load(self)
            _mark("config.load<")

        uc.Config.load = marked_load
    if name == "nbprod.serving.loader":
        load_version = module.load_version

        def marked_load_version(*a, **k):
            _mark("load_version>")
            try:
                return load_version(*a, **k)
            finally:
                _mark("load_version<")

        module.load_version = marked_load_version


class _Finder:
    """Wraps the loader of each module in WATCH (the first time it is imported) with marks."""

    def find_spec(self, name, path, target=None):
        if name not in WATCH:
            return None
        WATCH.discard(name)
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        exec_module = getattr(spec.loader, "exec_module", None)
        if exec_module is None:
            return spec

        def marked(module, _exec=exec_module, _name=name):
            t, c = time.time(), time.process_time()
            _mark(f"import> {_name} (__main__: {getattr(sys.modules.get('__main__'), '__name__', '')})")
            _exec(module)
            _mark(f"import< {_name} {time.time() - t:.3f}s cpu {time.process_time() - c:.3f}")
            _instrument(_name, module)

        spec.loader.exec_module = marked
        return spec


if _T:
    _f = open(_T, "a", buffering=1)  # noqa: SIM115 - open for the process's life
    _mark("interpreter")
    sys.meta_path.insert(0, _Finder())
    import atexit

    atexit.register(lambda: _mark("exit"))
