"""Reading the sandbox's request log from a moment on: how tests count what crlib wrote."""

from __future__ import annotations

from crlib.sandbox import control


def log_from_now(sandbox: dict):
    """A reader of the Azure requests the sandbox logs from this moment on (its admin calls excluded)."""
    logged = control.admin(sandbox, "GET", "/_sandbox/requests")["requests"]
    since = logged[-1]["seq"] if logged else 0

    def read() -> list[dict]:
        rows = control.admin(sandbox, "GET", f"/_sandbox/requests?since={since}")["requests"]
        return [r for r in rows if not r["path"].startswith("/_sandbox/")]

    return read
