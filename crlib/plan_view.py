"""A plan as operators read it, the way Terraform shows one: per notebook and step, each change as
`+ create`, `~ update` (with each field's old → new), `- delete`, `> run`, or the step `= unchanged`,
then the counts (`Plan: 2 to add, 1 to change, 0 to destroy.`). It is made from the steps a run
recorded in run.json (`steps[].plan`), the same data the notebooks' plan tables show, so the
terminal, the notebooks and the record say the same. `as_json` is the `--json` form.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from .plans import Action

_SYMBOL = {a.value: a.symbol for a in Action}
# Terraform's words for the counts; a `run` (a password generated, a wait) is not a resource change.
_COUNTED = {"create": "add", "update": "change", "delete": "destroy", "run": "run"}


def counts(steps: Iterable[dict]) -> dict[str, int]:
    """How many changes of each kind: add, change, destroy, run."""
    totals = dict.fromkeys(_COUNTED.values(), 0)
    for step in steps:
        for change in step.get("plan") or []:
            totals[_COUNTED[change["action"]]] += 1
    return totals


def summary_line(steps: Iterable[dict]) -> str:
    total = counts(steps)
    line = f"Plan: {total['add']} to add, {total['change']} to change, {total['destroy']} to destroy."
    if total["run"]:
        line += f" {total['run']} {'operation' if total['run'] == 1 else 'operations'} to run."
    return line


def _field_lines(change: dict) -> list[str]:
    fields = change.get("fields") or []
    if change["action"] == "update":
        return [f"      {f['name']}: {f['old']} → {f['new']}" for f in fields]
    if change["action"] == "create":
        return [f"      {f['name']}: {f['new']}" for f in fields]
    return []


def resource_changes(steps: Iterable[dict]) -> list[list[str]]:
    """What a plan would do to resources: its creates, updates and deletes with their fields, as
    [step, action, kind, name, fields as JSON]. Runs (a pull, a push with a fresh tag, a wait) are
    operations, made anew by every plan, so they are left out: two plans of an unchanged target
    give the same list."""
    return [[step["step"], c["action"], c["kind"], c["name"], json.dumps(c["fields"], sort_keys=True)]
            for step in steps for c in step.get("plan") or [] if c["action"] != "run"]


def render(steps: list[dict], *, title: str | None = None) -> str:
    """The plan's text: one block per notebook, one line per change (with its fields), the counts."""
    lines = [title, ""] if title else []
    notebook = None
    width = max((len(s["step"]) for s in steps), default=0)
    for step in steps:
        if step.get("notebook") != notebook:
            notebook = step.get("notebook")
            lines.append(str(notebook))
        planned = step.get("plan") or []
        if not planned:
            state = "skipped" if step.get("status") == "skipped" else step.get("status") or "unchanged"
            symbol = "=" if state in ("unchanged", "planned") else "·"
            lines.append(f"  {symbol} {step['step']:<{width}}  {'unchanged' if symbol == '=' else state}")
            continue
        for change in planned:
            lines.append(f"  {_SYMBOL[change['action']]} {step['step']:<{width}}  {change['summary']}")
            lines.extend(_field_lines(change))
    if lines and lines[-1] != "":
        lines.append("")
    lines.append(summary_line(steps))
    return "\n".join(lines)


def as_json(record: dict) -> dict[str, Any]:
    """The plan as data: the site and target, each step's planned changes, and the counts."""
    return {"site": record.get("site"), "run": record.get("run"), "target": record.get("target"),
            "steps": [{"step": s["step"], "notebook": s.get("notebook"), "status": s.get("status"),
                       "changes": s.get("plan") or []} for s in record.get("steps", [])],
            "counts": counts(record.get("steps", []))}
