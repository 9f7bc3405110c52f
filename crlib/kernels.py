"""Kernels started one notebook ahead, for `crlib run`.

A notebook's kernel spends more time starting and importing (ipykernel, then crlib's page API, the
Azure SDKs and pandas: about a second each on a small machine) than most notebooks spend on their
steps. While notebook N runs, `KernelAhead` starts the kernel for notebook N+1 and asks it to import
those modules, so the next notebook starts on a warm kernel.

Kernels start in the working directory `crlib run` gives (a fresh private temporary folder, never the
run folder, whose contents must not influence what runs), with `PYTHONSAFEPATH=1` (neither Python nor
IPython puts the working directory on `sys.path`) and a umask of 077 (what they write is private).

Each notebook still gets a kernel process of its own, started fresh for it. The warm-up runs
`silent` (no execution count, no history, no output) and binds no name in the kernel's namespace
(`warm_up` only imports), so the notebook's cells and its archived record are what they would be on a
cold kernel. papermill hands a given kernel manager to nbclient (`km=`), which then leaves its
shutdown to us: `finish` shuts every kernel down, the one still waiting included.

Written here because papermill and nbclient start kernels only when a notebook begins; neither has
a pool or a pre-started kernel of its own.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

KERNEL_NAME = "python3"
TRANSPORT = "ipc" if os.name == "posix" else "tcp"  # Windows has no IPC transport in ZeroMQ
# Binds no name: `__import__` returns the crlib package, whose warm_up() only imports.
WARM_UP = "__import__('crlib.kernels').kernels.warm_up({steps!r})"
# Steps whose kernels need more than the page API: the IoT Hub service SDK, the manifest validator.
_HUB_STEPS = {"hub", "device", "provision", "manifest", "deploy", "rotate", "teardown"}
_MANIFEST_STEPS = {"manifest", "deploy", "rotate"}
_READY_TIMEOUT = 60.0


def kernel_env() -> dict[str, str]:
    """The environment a kernel starts with: this process's, with `PYTHONSAFEPATH=1`."""
    return {**os.environ, "PYTHONSAFEPATH": "1"}


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """A umask of (at least) 077 while a kernel process is started: the kernel inherits it."""
    previous = os.umask(0o077)
    os.umask(previous | 0o077)
    try:
        yield
    finally:
        os.umask(previous)


def warm_up(steps: tuple[str, ...] = ()) -> None:
    """Import what a notebook running `steps` uses: the page API (and through it the steps and the
    ARM SDKs), azure-identity and pandas always; the IoT Hub service SDK and the manifest schema
    validator only where its steps use them (each costs a few tenths of a second of CPU, which the
    notebook running meanwhile on the same cores would otherwise wait for)."""
    import azure.identity
    import pandas  # noqa: F401

    import crlib.notebook  # noqa: F401

    if _HUB_STEPS & set(steps):
        import azure.iot.hub  # noqa: F401
    if _MANIFEST_STEPS & set(steps):
        from crlib.hosts import iotedge_manifest

        iotedge_manifest.import_validator()


@functools.cache
def _manager_class() -> type:
    """jupyter_client's async kernel manager, remembering the clients it makes (see `stop`)."""
    from jupyter_client.manager import AsyncKernelManager

    class RememberingKernelManager(AsyncKernelManager):
        def client(self, **kwargs: Any) -> Any:
            made = super().client(**kwargs)
            self.crlib_clients = [*getattr(self, "crlib_clients", []), made]
            return made

    return RememberingKernelManager


class KernelAhead:
    """One kernel waiting for the next notebook. `take()` gives a started, warmed kernel manager
    (starting one now if none waits); `start_next()` starts the following one; `finish()` stops
    whatever is left."""

    def __init__(self, cwd: Path):
        self._cwd = cwd
        self._waiting: deque[tuple[Any, Any]] = deque()  # (kernel manager, warm-up client), in notebook order

    def _start(self, steps: tuple[str, ...] = ()) -> tuple[Any, Any]:
        # nbclient's own kind of manager (async): it polls it for a dead kernel as it polls its own.
        from jupyter_core.utils import run_sync

        # IPC: Unix sockets in the kernels' private (0700) working directory, named by an absolute
        # path (kernel and client run in different folders) unique to this kernel. Not TCP on
        # 127.0.0.1: no other local user can reach the sockets, and ipykernel has no cause to warn
        # "Kernel is running over TCP without encryption" for every notebook. Sockets are not
        # regular files, so collecting the folder's files never archives them.
        ipc = {"transport": "ipc", "ip": str(self._cwd.absolute() / f"kernel-{secrets.token_hex(4)}")} \
            if TRANSPORT == "ipc" else {}
        manager = _manager_class()(kernel_name=KERNEL_NAME, **ipc)
        try:
            with private_umask():
                run_sync(manager.start_kernel)(cwd=str(self._cwd), env=kernel_env())
            client = manager.blocking_client()
            client.start_channels()
            client.execute(WARM_UP.format(steps=tuple(steps)), silent=True, store_history=False)
        except BaseException:  # Ctrl-C while it starts: stopped, not left to outlive crlib
            self.stop(manager)
            raise
        return manager, client

    def start_next(self, steps: tuple[str, ...] = (), *, ahead: int = 1) -> None:
        """Start the kernel for a following notebook, which runs `steps`, unless `ahead` kernels
        wait already. A plan run starts every kernel at once (its notebooks are short: waiting for
        each next kernel would be most of its time); an apply run keeps one waiting."""
        if len(self._waiting) < ahead:
            self._waiting.append(self._start(steps))

    def take(self, steps: tuple[str, ...] = ()) -> Any:
        manager, client = self._waiting.popleft() if self._waiting else self._start(steps)
        try:
            # The warm-up's reply: the imports are done (or failed, which the notebook's own first
            # cell will then show). Either way the kernel is ready for its notebook.
            client.get_shell_msg(timeout=_READY_TIMEOUT)
        except Exception:
            pass
        except BaseException:  # Ctrl-C: the kernel, no one's now, would outlive crlib and print to its stderr
            self.stop(manager)
            raise
        finally:
            client.stop_channels()
        return manager

    @staticmethod
    def kill(manager: Any) -> None:
        """Kill a kernel's process from a thread other than the one running its notebook: a signal
        only (ZeroMQ sockets must not cross threads); that thread sees it die and stops it."""
        process: Any = getattr(getattr(manager, "provisioner", None), "process", None)
        if process is not None:
            with contextlib.suppress(Exception):
                process.kill()

    @staticmethod
    def stop(manager: Any) -> None:
        from jupyter_core.utils import run_sync

        with contextlib.suppress(Exception):  # an already dead kernel (killed, crashed) is stopped
            run_sync(manager.shutdown_kernel)(now=True)
        # nbclient leaves the client it made open when the manager is not its own (papermill's km=):
        # five sockets and a ZeroMQ context each, which a process running many notebooks runs out of.
        for client in getattr(manager, "crlib_clients", []):
            with contextlib.suppress(Exception):
                client.stop_channels()  # a plain method on jupyter_client's async client too

    def finish(self) -> None:
        while self._waiting:
            manager, client = self._waiting.popleft()
            client.stop_channels()
            self.stop(manager)
