"""Plans as data: what a step would change, computed from one read, and executed as it was shown.

A step's planner reads the current state once and returns a `StepPlan`: an ordered list of
`Change`s (resource, action, fields old -> new, and the call that makes it) plus a `finish`
that builds the step's `StepResult` from what was read and written. The same list gives the
plan text, the `--plan` output and the notebook tables; `StepPlan.apply()` runs exactly those
calls, so a confirmed run does not read again.

    plan = plan_endpoint(ctx)        # reads
    plan.preview()                   # StepResult with status "planned": writes nothing
    plan.apply()                     # runs each change's call in order, then finish()

A plan built while an input from an earlier step did not exist yet (the registry before the
endpoint step ran, say) is `provisional`: its changes say what will happen, but apply must plan
again once the input exists (`runbook.run` does this); applying it raises `blocked_by`. Calls share what they create through
`StepPlan.made`, keyed by whatever the step chooses (e.g. "token").
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .results import Status, StepResult


class Action(enum.StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    RUN = "run"  # an operation that is not a resource's state: a password generated, a deployment awaited

    @property
    def symbol(self) -> str:
        return {"create": "+", "update": "~", "delete": "-", "run": ">"}[self.value]


@dataclass(frozen=True)
class FieldChange:
    """One field of a resource, old -> new. Values are what the parameters and Azure show; a
    secret never goes here (a secret's field names the store entry instead)."""

    name: str
    old: object = None
    new: object = None


def _shown(value: object) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, list | tuple | set):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


@dataclass
class Change:
    """One write. `summary` is the line operators read ("create sync token 'cr1' ..."); `kind`
    and `name` say which resource; `fields` say what moves. `call` makes the write."""

    action: Action
    kind: str
    name: str
    summary: str
    fields: tuple[FieldChange, ...] = ()
    call: Callable[[], Any] | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"action": str(self.action), "kind": self.kind, "name": self.name, "summary": self.summary,
                "fields": [{"name": f.name, "old": _shown(f.old), "new": _shown(f.new)} for f in self.fields]}


@dataclass
class StepPlan:
    """One step's changes from one read. `finish(made)` returns the step's result after the calls
    ran (or, with `applied=False`, the plan's preview); by default a result built from the changes."""

    step: str
    changes: list[Change] = field(default_factory=list)
    resource_ids: list[str] = field(default_factory=list)
    details: dict[str, object] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    # Why this plan could only say what will happen: an input from an earlier step is missing.
    # Such a plan previews; applying it raises this (runbook.run plans again first).
    blocked_by: Exception | None = None
    created: bool = False  # apply's status is "created" (not "updated") when it makes the step's main resource
    finish: Callable[[StepPlan], StepResult] | None = field(default=None, repr=False)
    made: dict[str, Any] = field(default_factory=dict, repr=False)

    def add(self, action: Action, kind: str, name: str, summary: str, *, call: Callable[[], Any] | None = None,
            fields: tuple[FieldChange, ...] | list[FieldChange] = ()) -> Change:
        change = Change(action, kind, name, summary, tuple(fields), call)
        self.changes.append(change)
        return change

    def extend(self, other: StepPlan) -> StepPlan:
        """Take another plan's changes, ids, details and secrets (sub-plans of one step)."""
        self.changes += other.changes
        self.resource_ids += [r for r in other.resource_ids if r not in self.resource_ids]
        self.details |= other.details
        self.secrets |= other.secrets
        self.blocked_by = self.blocked_by or other.blocked_by
        self.created = self.created or other.created
        return self

    @property
    def provisional(self) -> bool:
        return self.blocked_by is not None

    @property
    def summaries(self) -> list[str]:
        return [c.summary for c in self.changes]

    def preview(self) -> StepResult:
        """The plan as a result: status "planned" when anything would change; nothing is written."""
        status = Status.PLANNED if self.changes else Status.UNCHANGED
        if "skipped" in self.details and not self.changes:
            status = Status.SKIPPED
        return StepResult(self.step, status, list(self.resource_ids), self.summaries, dict(self.secrets),
                          dict(self.details), plan=[c.to_dict() for c in self.changes])

    def apply(self) -> StepResult:
        """Run every change's call in order, then build the result."""
        if self.blocked_by is not None:
            raise self.blocked_by
        for change in self.changes:
            if change.call is not None:
                change.call()
        if self.finish is not None:
            result = self.finish(self)
        else:
            result = StepResult(self.step, self.applied_status(), list(self.resource_ids), self.summaries,
                                dict(self.secrets), dict(self.details))
        result.plan = [c.to_dict() for c in self.changes]
        return result

    def applied_status(self) -> Status:
        if not self.changes:
            return Status.UNCHANGED
        if all(c.action == Action.DELETE for c in self.changes):
            return Status.DELETED
        return Status.CREATED if self.created else Status.UPDATED

    def outcome(self, *, plan: bool) -> StepResult:
        return self.preview() if plan else self.apply()


def skipped_plan(step: str, reason: str) -> StepPlan:
    """A step that does not apply to this site (its host does without it): no read, no write."""
    plan = StepPlan(step, details={"skipped": reason})
    plan.finish = lambda done: StepResult(step, Status.SKIPPED, details=dict(done.details))
    return plan


def combine_plans(step: str, parts: list[StepPlan]) -> StepPlan:
    """One plan from sub-plans, in order."""
    combined = StepPlan(step)
    for part in parts:
        combined.extend(part)
    return combined
