"""The job's kernel: started before the MLflow run exists, told about the run before the first cell.

A fresh ``nbprod run`` process spends seconds importing MLflow and opening its store before it can
create the job's run, and a kernel spends a second or two booting (``ipykernel``, IPython). The
two do not depend on each other, so a Python kernel is started first, with the environment that
is known before the run (store URIs, nbprod's home, the notebook), and boots in its own process
while this one does the MLflow work. Once the run exists, the values that name it
(``MLFLOW_RUN_ID``, ``MLFLOW_EXPERIMENT_ID``, ``NBPROD_JOB_RUN_ID``) are set in the kernel's
``os.environ`` by one silent request (no output, no execution count) before papermill runs the
first cell, so the notebook sees exactly what a kernel started with them would.

Only kernels whose language is Python are started early (the setup request is Python); others,
and every retry after a dead kernel, are started by papermill with the whole environment.

At the end the kernel is asked to shut down as papermill would (interrupt, then a shutdown request),
but the job does not wait there for the process to exit (up to a second of interpreter teardown on
a busy machine): papermill writes the executed copy meanwhile, and the job waits for the exit
(:meth:`EarlyKernel.settle`) only before it reads back what the notebook logged, so whatever the
kernel flushes at exit is in the run by then; the HTML rendering goes on in its helper meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["EarlyKernel", "transport", "setup_code"]

#: The longest wait, at the end of a job, for the kernel to answer after an interrupt (see request_shutdown).
SETTLE_S = 2.0


#: The longest temp folder path the kernel's sockets fit in: ``<temp>/.k.nbprod-kernel-<pid>-<8 hex>/ipc-5``
#: within the 103 bytes a Unix socket's path may have on macOS (107 on Linux).
_TEMP_MAX = 60


def _ipc_manager_class() -> type | None:
    """Talk to the job's kernel over Unix sockets, not TCP on 127.0.0.1.

    A kernel on TCP without CurveZMQ keys warns "Kernel is running over TCP without encryption"
    on stderr, into ``make demo``'s output; on IPC the sockets are files only this user can reach,
    so there is nothing to warn about. The sockets and the connection file (which holds the kernel's
    signing key) go into one private folder of the temp folder, named after this process
    (:func:`nbprod._files.scratch_path`): the kernel manager removes them at shutdown, and a killed
    job's folder, which no shutdown removed, is deleted by the next job's. Windows has no IPC transport
    in ZeroMQ, and a Unix socket's path has at most 107 bytes: in a temp folder whose path is too long
    for one, the kernel keeps TCP.
    """
    import tempfile

    temp = Path(tempfile.gettempdir())
    if os.name == "nt" or len(str(temp)) > _TEMP_MAX:
        return None
    from jupyter_client.manager import AsyncKernelManager

    from .._files import scratch_path

    class _IpcKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._folder = scratch_path(temp / "k", "kernel")  # .k.nbprod-kernel-<pid>-<8 hex digits>
            self._folder.mkdir(mode=0o700)
            self.transport = "ipc"
            self.ip = str(self._folder / "ipc")
            self.connection_file = str(self._folder / "kernel.json")

        def cleanup_ipc_files(self) -> None:
            super().cleanup_ipc_files()  # after the connection file: the folder is empty unless restarting
            with contextlib.suppress(OSError):
                self._folder.rmdir()

    return _IpcKernelManager


def transport() -> dict[str, Any]:
    """papermill's keyword for a kernel it starts itself (IPC where there is IPC)."""
    cls = _ipc_manager_class()
    return {"kernel_manager_class": cls} if cls is not None else {}


def setup_code(values: dict[str, str]) -> str:
    """The silent request that puts the run's environment into a running Python kernel."""
    return f"__import__('os').environ.update({dict(values)!r})"


class EarlyKernel:
    """A kernel started ahead of the job's run; papermill takes it over (and shuts it down)."""

    def __init__(self, km: Any) -> None:
        self.km = km
        self.kc: Any = None
        self.setup: str | None = None
        self.shutdown_requested = False

    @classmethod
    def start(cls, kernel_name: str, cwd: Path, env: dict[str, str]) -> EarlyKernel | None:
        """Start ``kernel_name`` in ``cwd`` with ``env`` on top of this process's environment;
        ``None`` for a kernel that is not Python or that cannot be started here (papermill then
        starts it itself and reports the failure as it always does)."""
        try:
            from jupyter_client.kernelspec import KernelSpecManager
            from jupyter_client.manager import AsyncKernelManager
            from jupyter_core.utils import run_sync

            if (KernelSpecManager().get_kernel_spec(kernel_name).language or "").lower() != "python":
                return None
            km = (_ipc_manager_class() or AsyncKernelManager)(kernel_name=kernel_name)
            # what nbclient passes to a kernel it starts: no history file written by the job
            run_sync(km.start_kernel)(cwd=str(cwd), env={**os.environ, **env},
                                      extra_arguments=["--HistoryManager.hist_file=:memory:"])
        except Exception:  # noqa: BLE001 - papermill's own start then fails the job with the reason
            return None
        return cls(km)

    def connect(self) -> None:
        """Connect a client and wait until the kernel answers (what nbclient does before the first
        cell, with its fixed 0.2 s of IOPub silence), while the job's run is still being created;
        papermill's client then takes this one. Never raises: on failure papermill connects itself
        and reports what it finds."""
        from jupyter_core.utils import ensure_async, run_sync

        async def ready() -> Any:
            kc = self.km.client()
            try:
                await ensure_async(kc.start_channels())
                await ensure_async(kc.wait_for_ready(timeout=60))
            except BaseException:
                await ensure_async(kc.stop_channels())
                raise
            return kc

        try:
            self.kc = run_sync(ready)()
        except Exception:  # noqa: BLE001 - a kernel that died booting: papermill's own start says so
            self.kc = None

    def hand_over(self, run_env: dict[str, str]) -> dict[str, Any]:
        """papermill's keywords that make it use this kernel and set ``run_env`` in it first."""
        return {"km": self.km, "nbprod_setup": setup_code(run_env), "nbprod_early": self}

    async def request_shutdown(self, kc: Any = None) -> None:
        """The first half of jupyter_client's graceful shutdown (interrupt, shutdown request), on
        papermill's event loop after the last cell; :meth:`settle` waits for the exit.

        With the job's client ``kc``, a kernel_info request goes between the two: the kernel answers it
        after the reply of a cell the interrupt stopped (a cell past ``--timeout``, a job terminated), so
        that reply is sent before the kernel closes its sockets. Sent after, it failed in the kernel, which
        printed a 20-line ZMQError traceback into the job's terminal."""
        from jupyter_core.utils import ensure_async

        km = self.km
        if not await km.is_alive():
            return
        km.shutting_down = True
        km.stop_restarter()
        await km.interrupt_kernel()
        if kc is not None:
            with contextlib.suppress(Exception):  # no answer within the time: shut down all the same
                await ensure_async(kc.kernel_info(reply=True, timeout=SETTLE_S))
        await km.request_shutdown()
        self.shutdown_requested = True

    def settle(self) -> None:
        """Wait until the kernel asked to shut down has exited (killed after jupyter_client's
        ``shutdown_wait_time``, as in its own shutdown) and free its sockets; never raises."""
        if not self.shutdown_requested:
            return
        from jupyter_core.utils import run_sync

        self.shutdown_requested = False
        try:
            run_sync(self.km.finish_shutdown)()
            run_sync(self.km.cleanup_resources)()
        except Exception as exc:  # noqa: BLE001 - stop() kills it
            print(f"nbprod: the job's kernel did not shut down cleanly: {exc}", file=sys.stderr)

    def stop(self) -> None:
        """Shut the kernel down unless papermill has done so (idempotent, never raises)."""
        from jupyter_core.utils import run_sync

        kc, self.kc = self.kc, None
        try:
            if kc is not None:  # connected, but papermill never took it over (the job ended before)
                kc.stop_channels()
        except Exception:  # noqa: BLE001 - closed already
            pass
        try:
            if self.km.has_kernel:
                run_sync(self.km.shutdown_kernel)(now=True)
        except Exception as exc:  # noqa: BLE001 - already gone
            print(f"nbprod: could not stop the job's kernel: {exc}", file=sys.stderr)
