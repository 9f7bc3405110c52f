"""crlib's exceptions: a small tree, like httpx's.

    CrlibError
    ├── ParameterError      a parameter is invalid; nothing was written
    ├── PreconditionFailed  Azure is not in a state the step can work from; nothing was written
    ├── StepFailed          Azure refused a write; carries the azure-core error
    └── StepTimeout         a wait ran out; carries a diagnosis of what was still wrong
"""

from __future__ import annotations


class CrlibError(Exception):
    """Base of every error crlib raises on purpose."""


class ParameterError(CrlibError):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class PreconditionFailed(CrlibError):
    def __init__(self, subject: str, message: str):
        super().__init__(f"{subject}: {message}")
        self.subject = subject
        self.message = message


class StepFailed(CrlibError):
    def __init__(self, step: str, message: str, *, error: Exception | None = None):
        super().__init__(f"{step}: {message}")
        self.step = step
        self.message = message
        self.error = error


class StepTimeout(CrlibError):
    def __init__(self, step: str, message: str, *, diagnosis: list[str] | None = None):
        detail = "; ".join(diagnosis or [])
        super().__init__(f"{step}: {message}" + (f" ({detail})" if detail else ""))
        self.step = step
        self.message = message
        self.diagnosis = diagnosis or []
