"""crlib's exceptions: a small tree, like httpx's.

    CrlibError
    ├── ParameterError      a parameter is invalid; nothing was written
    ├── PreconditionFailed  Azure is not in a state the step can work from; nothing was written
    │   └── ManifestInvalid a deployment manifest failed validation; nothing was applied
    ├── StepFailed          Azure refused a write; carries the SDK's error (crlib.azure.errors maps them)
    ├── StepTimeout         a wait ran out; carries a diagnosis of what was still wrong
    ├── RunFailed           a step of a run failed; names the step, carries its error and earlier results
    ├── NotConfirmed        an apply was asked for without a confirmation; nothing was written
    └── ArchiveError        a run's archive is incomplete, altered, or holds a secret

Every class is defined here; tests/test_errors.py checks this tree against the classes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .results import StepResult


def _redact(text: str) -> str:
    # Error texts often quote the service (whose answer may echo a request); never show a secret.
    from .secrets import MASKER

    return MASKER.redact(text)


class CrlibError(Exception):
    """Base of every error crlib raises on purpose. Its message never carries a known secret."""

    def __init__(self, message: str):
        super().__init__(_redact(message))


class ParameterError(CrlibError):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = _redact(message)


class PreconditionFailed(CrlibError):
    def __init__(self, subject: str, message: str):
        super().__init__(f"{subject}: {message}")
        self.subject = subject
        self.message = _redact(message)


class ManifestInvalid(PreconditionFailed):
    """A manifest failed validation; nothing was applied. `problems` lists every finding."""

    def __init__(self, problems: list[str]):
        super().__init__("manifest", "invalid: " + "; ".join(problems))
        self.problems = problems


class StepFailed(CrlibError):
    def __init__(self, step: str, message: str, *, error: Exception | None = None):
        super().__init__(f"{step}: {message}")
        self.step = step
        self.message = _redact(message)
        self.error = error


class StepTimeout(CrlibError):
    def __init__(self, step: str, message: str, *, diagnosis: list[str] | None = None):
        detail = "; ".join(diagnosis or [])
        super().__init__(f"{step}: {message}" + (f" ({detail})" if detail else ""))
        self.step = step
        self.message = _redact(message)
        self.diagnosis = [_redact(d) for d in diagnosis or []]


class RunFailed(CrlibError):
    """A step failed; `results` holds what ran before it, `step` names it."""

    def __init__(self, step: str, error: Exception, results: list[StepResult]):
        super().__init__(f"step '{step}' failed: {error}")  # masks any secret in it
        self.step = step
        self.error = error
        self.results = results


class NotConfirmed(CrlibError):
    """An apply without `confirm: true` (headless) or the Confirm button (interactive)."""


class ArchiveError(CrlibError):
    def __init__(self, run_dir: str, problems: list[str]):
        super().__init__(f"{run_dir}: " + "; ".join(problems[:5]) + (" …" if len(problems) > 5 else ""))
        self.run_dir = run_dir
        self.problems = problems
