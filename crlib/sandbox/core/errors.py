"""One error type for every emulated service; each service renders it in its own wire format."""

from __future__ import annotations


class SandboxError(Exception):
    """A refusal the sandbox sends back: an HTTP status, a service error code and a message."""

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None,
                 details: object = None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.details = details


def not_found(code: str, message: str) -> SandboxError:
    return SandboxError(404, code, message)


def bad_request(code: str, message: str) -> SandboxError:
    return SandboxError(400, code, message)


def conflict(code: str, message: str) -> SandboxError:
    return SandboxError(409, code, message)
