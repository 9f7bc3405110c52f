"""Typed step results: what a step did (or, in plan mode, would do), with resource ids."""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field
from typing import Any


class Status(enum.StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    PLANNED = "planned"
    DELETED = "deleted"
    PENDING = "pending"  # done by someone else, later: a script crlib wrote for the device host
    SKIPPED = "skipped"  # the step means nothing for this site's host (an IoT hub for an Arc cluster)
    # Checks: they prove something rather than make it. A check that does not pass raises, and the
    # run records its step `failed` (the runner's word, as for any step that raised).
    PASSED = "passed"
    FAILED = "failed"


@dataclass
class StepResult:
    """One step's outcome. `secrets` holds masked values only; `changes` says what was (or
    would be) written, one line per write."""

    step: str
    status: Status
    resource_ids: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)
    details: dict[str, object] = field(default_factory=dict)
    duration_s: float = 0.0
    # The plan's changes as data (crlib.plans.Change.to_dict): action, kind, name, summary, fields.
    plan: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["status"] = str(self.status)
        return body

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), default=str)


def combine(step: str, parts: list[StepResult], *, plan: bool) -> StepResult:
    """Fold sub-results (one per resource) into one step result."""
    changes = [c for p in parts for c in p.changes]
    if plan:
        status = Status.PLANNED if changes else Status.UNCHANGED
    elif any(p.status == Status.CREATED for p in parts):
        status = Status.CREATED
    elif any(p.status == Status.DELETED for p in parts):
        status = Status.DELETED
    elif changes:
        status = Status.UPDATED
    else:
        status = Status.UNCHANGED
    merged = StepResult(step, status, changes=changes)
    for p in parts:
        merged.resource_ids += [r for r in p.resource_ids if r not in merged.resource_ids]
        merged.secrets |= p.secrets
        merged.details |= p.details
    return merged
