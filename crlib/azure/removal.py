"""Deletes as plan changes, shared by teardown and a host's `removal`: a resource already gone when
the delete runs is success (`map_exceptions(..., missing_ok=True)`), and a stored secret is
deleted with what it served."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any

from ..plans import Action, Change
from . import readers
from .errors import map_exceptions

if TYPE_CHECKING:
    from ..context import RunContext

SECRET = "secret"


def _deleting(step: str, what: str, delete: Callable[[], Any]) -> None:
    with map_exceptions(step, what, missing_ok=True):
        delete()


def deletion(step: str, kind: str, name: str, summary: str, delete: Callable[[], Any]) -> Change:
    """A change whose call runs `delete` (e.g. `lambda: ops.begin_delete(...).result()`)."""
    return Change(Action.DELETE, kind, name, summary, call=partial(_deleting, step, f"deleting {kind} '{name}'", delete))


def secret_deletions(ctx: RunContext, purposes: Iterable[str]) -> list[Change]:
    """A delete for each of these secrets the store holds."""
    return [Change(Action.DELETE, SECRET, ctx.secret_name(p), f"delete secret '{ctx.secret_name(p)}'",
                   call=partial(ctx.secrets.delete, ctx.secret_name(p)))
            for p in purposes if ctx.get_secret(p) is not None]


def token_users(tokens: Iterable[Any], scope_map: Any, *, besides: Iterable[str]) -> list[str]:
    """The tokens bound to `scope_map` other than `besides` (a scope map they use cannot go)."""
    if scope_map is None:
        return []
    skip = {n.lower() for n in besides}
    return [t.name for t in tokens if t.name.lower() not in skip and readers.same_id(t.scope_map_id, scope_map.id)]
