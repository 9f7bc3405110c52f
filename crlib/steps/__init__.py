"""The runbook's steps. Each is `ensure_*(ctx, *, plan=False) -> StepResult` (or `delete_*`):
get-or-create, no write when nothing changed, and in plan mode no write at all."""
