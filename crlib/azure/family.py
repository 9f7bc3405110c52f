"""A connected registry's family: its sync scope map (found through its sync token, as the CLI
does) and its ancestors. Shared by the definition step, which grants a child's actions to every
ancestor, and teardown, which takes them back."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from . import readers

if TYPE_CHECKING:
    from ..context import RunContext


def sync_token_id(connected: Any) -> str | None:
    parent = getattr(connected, "parent", None)
    sync = getattr(parent, "sync_properties", None)
    return getattr(sync, "token_id", None)


def sync_scope_map(ctx: RunContext, connected: Any) -> Any:
    """A connected registry's sync scope map, or None."""
    token_id = sync_token_id(connected)
    found = readers.token(ctx, readers.name_of(token_id)) if token_id else None
    if found is None or not found.scope_map_id:
        return None
    return readers.scope_map(ctx, readers.name_of(found.scope_map_id))


def ancestors(member: Any, family: list) -> Iterator[Any]:
    """The ancestors of a connected registry, nearest first (a cycle ends the walk)."""
    by_id = {c.id.lower(): c for c in family}
    seen: set[str] = set()
    parent_id = member.parent.id if member is not None and member.parent else None
    while parent_id and parent_id.lower() in by_id and parent_id.lower() not in seen:
        seen.add(parent_id.lower())
        parent = by_id[parent_id.lower()]
        yield parent
        parent_id = parent.parent.id if parent.parent else None


def lineage(first: Any, family: list) -> Iterator[Any]:
    """`first` and then its ancestors: the chain a new child joins below `first`."""
    if first is None:
        return
    yield first
    yield from ancestors(first, family)
