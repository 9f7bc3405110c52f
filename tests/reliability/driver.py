"""Runs the whole runbook for one parameter file in a process of its own, and SIGKILLs that
process where it is told to: before a step starts, or in the middle of the imports (once the first
importImage request has reached the sandbox). The kill/resume tests start it, kill it, start it
again without a kill, and compare what the sandbox holds with a clean run's."""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time

from crlib import params, runbook
from crlib.context import open_context
from crlib.sandbox import control


def _kill_after_first_import(status: dict) -> None:
    logged = control.admin(status, "GET", "/_sandbox/requests")["requests"]
    since = logged[-1]["seq"] if logged else 0
    while True:
        rows = control.admin(status, "GET", f"/_sandbox/requests?since={since}")["requests"]
        if any(r["path"].endswith("/importImage") for r in rows):
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(0.005)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("params")
    parser.add_argument("--kill-before", default=None, help="a step name")
    parser.add_argument("--kill-during-imports", action="store_true")
    args = parser.parse_args()
    site = params.load_file(args.params)
    ctx = open_context(site)

    def on_start(step: str) -> None:
        if step == args.kill_before:
            os.kill(os.getpid(), signal.SIGKILL)
        if step == "imports" and args.kill_during_imports:
            status = control.read_status(site.target.sandbox_state_dir)
            threading.Thread(target=_kill_after_first_import, args=(status,), daemon=True).start()

    runbook.run(ctx, on_start=on_start)


if __name__ == "__main__":
    main()
