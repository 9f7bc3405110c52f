"""crlib's exceptions: a small tree, like httpx's.

    CrlibError
    ├── ParameterError      a parameter is invalid; nothing was written
    ├── PreconditionFailed  Azure is not in a state the step can work from; nothing was written
    │   ├── ManifestInvalid a deployment manifest failed validation; nothing was applied
    │   └── SignInFailed    no usable Azure credential; says how to sign in (az login, AZURE_* variables)
    ├── StepFailed          Azure refused a write; carries the SDK's error (crlib.azure.errors maps them)
    ├── StepTimeout         a wait ran out; carries a diagnosis of what was still wrong
    ├── RunFailed           a step of a run failed; names the step, carries its error and earlier results
    ├── NotConfirmed        an apply was asked for without a confirmation; nothing was written
    └── ArchiveError        a run's archive is incomplete, altered, or holds a secret

Every class is defined here; tests/test_errors.py checks this tree against the classes. The
`crlib` command prints any of them as one line (crlib/cli.py); lower-level errors it meets (a
missing file, malformed YAML, a credential that cannot sign in) are mapped into this tree where
they are first seen.
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


def _problem(where: str | None, field: str, message: str) -> str:
    """"file:3: hub.name: message", "-p hub.name: message" (the override names the field), or "field: message"."""
    named = [part for part in (where, field) if part and not (where and part == field and where.endswith(f" {field}"))]
    return ": ".join([*named, message])


class ParameterError(CrlibError):
    """One or more invalid parameters. `problems` lists every finding as (where, field, message),
    `where` being "file:line", a file, "-p key" or None; `field` and `message` are the first's.
    Its text is every finding, "; "-separated, each "where: field: message"."""

    def __init__(self, field: str, message: str, *, where: str | None = None,
                 problems: list[tuple[str | None, str, str]] | None = None):
        self.problems = [(w, f, _redact(m)) for w, f, m in problems or [(where, field, message)]]
        super().__init__("; ".join(_problem(*problem) for problem in self.problems))
        self.where, self.field, self.message = self.problems[0]


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


class SignInFailed(PreconditionFailed):
    """The target's credential could not get a token: names `az login` or the variables to set."""

    def __init__(self, message: str):
        super().__init__("target", message)


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
