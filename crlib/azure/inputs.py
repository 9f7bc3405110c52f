"""What a registry-side step needs from the steps before it, read for planning: the registry and the
site's connected registry, each with the `PreconditionFailed` that blocks an apply while it is
missing (or, for the registry, not yet Premium with its data endpoint).

A plan made before the endpoint or definition step ran still says what will happen; the error
becomes its `blocked_by` (crlib.plans), the same error the step raised outside plan mode before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import PreconditionFailed
from . import readers

if TYPE_CHECKING:
    from ..context import RunContext


def refusal(check: Callable[[], object]) -> PreconditionFailed | None:
    """The PreconditionFailed `check()` raises, or None."""
    try:
        check()
    except PreconditionFailed as exc:
        return exc
    return None


def registry(ctx: RunContext) -> tuple[Any, PreconditionFailed | None]:
    """The registry as far as it exists (None when missing), and what blocks an apply."""
    found = readers.ready_registry(ctx, required=False)
    return found, refusal(lambda: readers.ready_registry(ctx))


def connected_registry(ctx: RunContext, registry: Any) -> tuple[Any, PreconditionFailed | None]:
    """The site's connected registry (None without a registry), and what blocks an apply while it is missing."""
    found = readers.connected_registry(ctx) if registry is not None else None
    if found is not None:
        return found, None
    name = ctx.site.connected_registry.name
    return None, PreconditionFailed("connected_registry", f"connected registry '{name}' does not exist; run the "
                                                          "definition step first")
