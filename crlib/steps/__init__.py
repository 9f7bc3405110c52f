"""The runbook's steps, one module each. A step is a planner `plan_<name>(ctx, **options) ->
crlib.plans.StepPlan`: one read of the current state, the writes that would converge it as data
(each with its call), refusals raised before any write. `crlib.runbook.STEPS` refers to the
planners. Each module keeps its older `ensure_*(ctx, *, plan=False) -> StepResult` as a one-line
wrapper (`planner(ctx).outcome(plan=plan)`). Steps import helpers from `crlib.azure` and
`crlib.hosts`, never from each other."""
