"""What the runbook notebooks call: parameters in, a form, a plan, a confirmation, an apply,
tables out. Notebooks hold no logic; this module holds all of it.

A notebook's cells, in order:

    params_file = ...; overrides = {}; confirm = False; ...    # the papermill `parameters` cell
    page = notebook.open_page("03-connected-registry", globals())
    form = page.form(); form          # widgets, shown only interactively
    page.read_form(form)              # the one cell that reads the form, headless or not
    page.plan()
    page.confirmation()               # a Confirm button interactively; `confirm: true` headless
    page.apply()
    page.details()

`open_page` closes papermill's gaps: a parameter it does not know is an error (papermill only
warns), and booleans passed as strings (`-p confirm false`) are read strictly, not as truthy.
Every step start, result and failure is appended to `results_path` (JSON lines) when set, which
is how `crlib run` knows which step a notebook was in when it stopped.

Interactively (JupyterLab), a refusal is a short styled message, not a traceback: applying before
confirming (NotConfirmed) or a value the parameters refuse (ParameterError, its field highlighted in
the form) shows what to do, and the cell still fails, so "Run All" stops there. Headless, every error
raises as it is, so `crlib run` records it. The Confirm button shows once it is pressed ("Confirmed
✓", disabled) until a new plan or form reading asks again. An interactive apply is recorded like a
headless run: crlib/lab_record.py writes a sealed, signed run folder with a "Save record" button.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from . import params as parameters
from . import plan_view, progress, runbook
from .errors import CrlibError, NotConfirmed, ParameterError, RunFailed
from .forms import Form, lookup, message_html
from .plans import Action, StepPlan
from .results import StepResult
from .secrets import MASKER

if TYPE_CHECKING:
    import pandas as pd

    from .context import RunContext

# The parameters every notebook's `parameters` cell defines, with the help papermill shows.
COMMON_PARAMETERS = {
    "params_file": ("../parameters/sandbox.yaml", "the site's parameter file (YAML); secrets appear there only as "
                                                  "references"),
    "overrides": ({}, "dotted parameters over the file, e.g. {'connected_registry.mode': 'ReadOnly'}"),
    "confirm": (False, "true: apply without asking (a headless run needs it); false: wait for the Confirm button"),
    "plan_only": (False, "true: show the plan and stop; nothing is written"),
    "interactive": (True, "false for headless runs (crlib run, papermill): no form is shown"),
    "results_path": ("", "JSON-lines file that collects each step's start, result or failure (set by crlib run)"),
    "approved_plan": ("", "JSON: the resource changes approved at crlib run's prompt; an apply whose plan differs "
                          "writes nothing (set by crlib run)"),
}
_BOOLEANS = ("confirm", "plan_only", "interactive")
_IPYTHON_NAMES = {"In", "Out"}
_PARAMETER_TYPES = (str, int, float, bool, list, dict, type(None))


def parameter_names(phase: runbook.Phase) -> list[str]:
    return [*COMMON_PARAMETERS, *phase.option_names]


def _bool(name: str, value: object) -> bool:
    try:
        coerced = parameters._strict_bool(value)
    except ValueError as exc:
        raise ParameterError(name, str(exc)) from None
    if not isinstance(coerced, bool):
        raise ParameterError(name, f"{value!r} is not a boolean (true/false)")
    return coerced


def _overrides(value: object) -> dict:
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value) if value.strip() else {}
        except yaml.YAMLError as exc:
            raise ParameterError("overrides", f"is not a YAML or JSON mapping: {exc}") from None
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ParameterError("overrides", "must be a mapping of dotted parameter names to values")
    return value


def refuse_unknown(namespace: dict, notebook: str, names: list[str]) -> None:
    """papermill only warns about a parameter a notebook does not declare: refuse it, naming them all."""
    unknown = sorted(name for name, value in namespace.items()
                     if not name.startswith("_") and name not in _IPYTHON_NAMES and name not in names
                     and isinstance(value, _PARAMETER_TYPES))
    if unknown:
        raise ParameterError(unknown[0], f"is not a parameter of {notebook}; its parameters are {', '.join(names)}")


def open_page(notebook: str, namespace: dict) -> Page:
    """Read a notebook's parameters from its namespace (after papermill's injection), strictly."""
    phase = runbook.phase(notebook)
    known = parameter_names(phase)
    refuse_unknown(namespace, phase.notebook, known)
    values = {name: namespace.get(name, COMMON_PARAMETERS.get(name, (False,))[0]) for name in known}
    for name in [*_BOOLEANS, *phase.option_names]:
        values[name] = _bool(name, values[name])
    values["overrides"] = _overrides(values["overrides"])
    return Page(phase, values)


def open_fleet_page(namespace: dict) -> Any:
    """notebooks/10-fleet.ipynb's page: an inventory of sites (crlib/fleet_page.py)."""
    from .fleet_page import open_fleet_page as open_fleet

    return open_fleet(namespace)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


# Tables wrap long text in their cells instead of squeezing their columns (JupyterLab's tables keep
# cells on one line); the style is scoped to crlib's tables, and a table's text form is unchanged.
_TABLE_STYLE = ("<style>.crlib-table table.dataframe {table-layout: auto;} "
                ".crlib-table table.dataframe td {white-space: pre-wrap; overflow-wrap: anywhere; "
                "text-align: left; vertical-align: top; min-width: 5em; max-width: 48em;} "
                ".crlib-table table.dataframe th {text-align: left; vertical-align: top; white-space: nowrap;}</style>")


@functools.cache
def _table_class() -> type[pd.DataFrame]:
    import pandas as pd

    class Table(pd.DataFrame):
        """A DataFrame whose HTML (JupyterLab) wraps long values; its text (papermill's plain output,
        to_string) is a DataFrame's."""

        @property
        def _constructor(self) -> type[Table]:
            return Table

        def _repr_html_(self) -> str | None:
            inner = super()._repr_html_()
            return None if inner is None else f'<div class="crlib-table">{_TABLE_STYLE}{inner}</div>'

    return Table


def _table(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    import pandas as pd

    # Whole values: a plan line, a resource id or a digest cut at 50 characters says nothing.
    pd.set_option("display.max_colwidth", None)
    return _table_class()(rows, columns=columns)


def _confirm_state(change: dict) -> None:
    """The Confirm button once pressed: "Confirmed ✓", green, disabled; reset (a new plan, a form
    read again, Azure changed since): "Confirm apply" again."""
    button = change["owner"]
    if change["new"]:
        button.description, button.button_style, button.icon = "Confirmed ✓", "success", ""
        button.tooltip = "Confirmed: the apply cell applies the plan above"
        button.disabled = True
        button.add_class("crlib-confirmed")
    else:
        button.disabled = False
        button.description, button.button_style, button.icon = "Confirm apply", "warning", "check"
        button.tooltip = "Apply the plan above when the next cell runs"
        button.remove_class("crlib-confirmed")


def _short_traceback(exc: BaseException) -> Callable[[], list[str]]:
    return lambda: [f"{type(exc).__name__}: stopped here; the message above says what to do"]


def results_table(results: list[StepResult]) -> pd.DataFrame:
    """One row per step: status, duration, what changed, resource ids and (masked) secrets."""
    return _table([{"step": r.step, "status": str(r.status), "duration_s": r.duration_s,
                    "changes": "; ".join(r.changes) or "(none)", "resource_ids": "; ".join(r.resource_ids),
                    "secrets": ", ".join(f"{k}: {v}" for k, v in r.secrets.items())} for r in results],
                  ["step", "status", "duration_s", "changes", "resource_ids", "secrets"])


def _resource_changes(planned: list[StepResult]) -> list[list[str]]:
    """What a plan would do to resources (crlib.plan_view.resource_changes)."""
    return plan_view.resource_changes({"step": r.step, "plan": r.plan} for r in planned)


def plan_table(planned: list[StepResult]) -> pd.DataFrame:
    """One row per change: step, status, the action's symbol (+ create, ~ update, - delete,
    > run), the resource, the change as a line, and its fields old -> new."""
    rows = []
    for result in planned:
        if not result.plan:
            rows.append({"step": result.step, "status": str(result.status), "action": "", "resource": "",
                         "change": "; ".join(result.changes) or "(nothing to do)", "fields": ""})
        for change in result.plan:
            fields = "; ".join(f"{f['name']}: {f['old']} -> {f['new']}" for f in change["fields"])
            rows.append({"step": result.step, "status": str(result.status),
                         "action": f"{Action(change['action']).symbol} {change['action']}",
                         "resource": f"{change['kind']} '{change['name']}'", "change": change["summary"],
                         "fields": fields})
    return _table(rows, ["step", "status", "action", "resource", "change", "fields"])


class _Shown:
    """Something a cell shows only in an interactive session; headless it shows one line of text."""

    def __init__(self, widget: Any, interactive: bool, headless_text: str) -> None:
        self.widget, self.interactive, self.headless_text = widget, interactive, headless_text

    def _ipython_display_(self) -> None:
        from IPython.display import Markdown, display

        display(self.widget if self.interactive else Markdown(self.headless_text))


class Page:
    """One notebook's session: its phase, its parameters and what its cells did."""

    def __init__(self, phase: runbook.Phase, values: dict):
        self.phase = phase
        self.values = values
        self.form_overrides: dict[str, object] = {}
        self.site = parameters.load_file(values["params_file"], values["overrides"], flag="overrides:")
        self.options = {name: values[name] for name in phase.option_names}
        progress.set_headless(not values["interactive"])  # headless: progress as lines the record keeps
        self.planned: list[StepResult] | None = None
        self.plans: dict[str, StepPlan] = {}  # step -> the plan shown, applied as shown when confirmed
        self.applied: list[StepResult] = []
        self._confirm_button: Any = None  # an ipywidgets ToggleButton once shown
        self._context: RunContext | None = None
        self._form_problem: ParameterError | None = None  # the form's last reading, when refused
        self.events: list[dict] = []  # every event recorded, also when there is no results_path
        self.record_dir: Path | None = None  # the run folder an interactive apply was recorded in
        self.record_box: Any = None  # its Save record button (crlib.lab_record.RecordBox)

    # -- recording ----------------------------------------------------------------------------------
    def _record(self, event: str, **fields: Any) -> None:
        line = MASKER.redact(json.dumps({"event": event, "notebook": self.phase.notebook, "time": _now(), **fields},
                                        default=str))
        self.events.append(json.loads(line))
        path = self.values["results_path"]
        if not path:
            return
        with Path(path).open("a") as fh:
            fh.write(line + "\n")

    @property
    def context(self) -> RunContext:
        if self._context is None:
            from .context import open_context

            self._context = open_context(self.site)
        return self._context

    def _step_options(self) -> dict[str, dict]:
        return {step: {name: self.options[name] for name in names} for step, names in self.phase.options.items()}

    # -- refusals, interactively ----------------------------------------------------------------------
    @contextlib.contextmanager
    def _errors_shown(self) -> Iterator[None]:
        """Interactively, a refusal (NotConfirmed, a ParameterError, also inside a step's RunFailed)
        becomes a short styled message (beside the form too, its field highlighted) and its traceback
        is suppressed; the exception still propagates, so the cell fails and "Run All" stops. Headless
        nothing changes."""
        try:
            yield
        except CrlibError as exc:
            refusal = exc.error if isinstance(exc, RunFailed) else exc
            if not self.values["interactive"] or not isinstance(refusal, NotConfirmed | ParameterError):
                raise
            self._show_refusal(refusal)
            exc._render_traceback_ = _short_traceback(exc)  # type: ignore[attr-defined]  # IPython shows this
            raise

    def _show_refusal(self, exc: NotConfirmed | ParameterError) -> None:
        from IPython.display import HTML, display

        form = getattr(self, "_form", None)
        if isinstance(exc, ParameterError):
            problems = [(field, message) for _, field, message in exc.problems]
            title = "Not accepted: the parameters refuse this value. "
            marked = form.show_problems(title, problems) if isinstance(form, Form) else []
            where = ("Correct the highlighted field in the form above, then run this cell again."
                     if marked else "Correct the parameter file or overrides, then run the cells again.")
            display(HTML(message_html(title + where, [f"{field}: {message}" for field, message in problems])))
        else:
            display(HTML(message_html("Not applied: nothing was written.", [str(exc)])))

    def _reset_confirmation(self) -> None:
        if self._confirm_button is not None:
            self._confirm_button.value = False

    # -- cells --------------------------------------------------------------------------------------
    def form(self) -> _Shown:
        """The form, prefilled from the parameters; interactive sessions show it."""
        if not self.values["interactive"]:  # headless: nobody edits it, so no widgets are built
            return _Shown(None, False, f"*Form not shown (headless): parameters come from "
                                       f"`{self.values['params_file']}` and `overrides`.*")
        options = {name: (self.options[name], help_text) for per_step in self.phase.options.values()
                   for name, help_text in per_step.items()}
        self._form = Form(self.site, self.phase.fields, options)
        return _Shown(self._form, True,
                      f"*Form not shown (headless): parameters come from `{self.values['params_file']}` "
                      "and `overrides`.*")

    def read_form(self, shown: _Shown | Form | None = None) -> pd.DataFrame:
        """Apply the form's edits to the parameters and validate them again; a table of the values.
        A refused value leaves no plan: plan and apply refuse until the form is read again."""
        with self._errors_shown():
            return self._read_form(shown)

    def _read_form(self, shown: _Shown | Form | None) -> pd.DataFrame:
        form = shown.widget if isinstance(shown, _Shown) else shown or getattr(self, "_form", None)
        form = form if isinstance(form, Form) else None
        if form is not None:
            form.clear_problems()
            self._context, self.planned, self.plans = None, None, {}
            self._reset_confirmation()
            try:
                self.form_overrides = form.overrides()
                self.options |= form.option_values()
                self.site = parameters.load_file(self.values["params_file"],
                                                 self.values["overrides"] | self.form_overrides)
            except ParameterError as exc:
                self._form_problem = exc
                raise
            self._form_problem = None
        data = self.site.model_dump(mode="json")
        rows = []
        for dotted in self.phase.fields:
            value = lookup(data, dotted)
            source = ("form" if dotted in self.form_overrides else
                      "overrides" if dotted in self.values["overrides"] else "parameter file")
            rows.append({"parameter": dotted, "value": json.dumps(value) if not isinstance(value, str) else value,
                         "source": source})
        rows += [{"parameter": name, "value": json.dumps(value), "source": "notebook"}
                 for name, value in self.options.items()]
        return _table(rows, ["parameter", "value", "source"])

    def plan(self) -> pd.DataFrame:
        """What applying would change, one row per change (action, resource, fields old -> new);
        nothing is written. The plans are kept: a confirmed apply executes them as shown. A new plan
        needs a new confirmation."""
        with self._errors_shown():
            return self._plan()

    def _plan(self) -> pd.DataFrame:
        problem = self._form_problem
        if problem is not None:
            raise ParameterError(problem.field, problem.message, where=problem.where, problems=problem.problems)
        self._reset_confirmation()
        self.plans = {}
        try:
            self.planned = runbook.run(self.context, plan=True, only=self.phase.steps, options=self._step_options(),
                                       plans=self.plans)
        except RunFailed as exc:
            self._record("failed", step=exc.step, error=str(exc), type=type(exc.error).__name__, plan=True)
            raise
        for result in self.planned:
            self._record("plan", **result.to_dict())
        return plan_table(self.planned)

    def confirmation(self) -> _Shown:
        """Interactively, a Confirm button; headless, what `confirm` and `plan_only` say."""
        if self.values["plan_only"]:
            return _Shown(None, False, "**Plan only:** nothing will be applied.")
        if self.values["confirm"] or not self.values["interactive"]:
            said = "confirmed by the parameter `confirm: true`" if self.values["confirm"] else \
                "not confirmed: a headless run applies only with `confirm: true`"
            return _Shown(None, False, f"**Apply:** {said}.")
        import ipywidgets as w

        self._confirm_button = w.ToggleButton(value=False, description="Confirm apply", button_style="warning",
                                              icon="check", tooltip="Apply the plan above when the next cell runs")
        self._confirm_button.add_class("crlib-confirm")
        self._confirm_button.observe(_confirm_state, names="value")
        return _Shown(self._confirm_button, True, "")

    def _confirmed(self) -> bool:
        if self.values["confirm"]:
            return True
        if not self.values["interactive"]:
            raise NotConfirmed("confirm: a headless run applies only with confirm: true "
                               "(or plan_only: true to stop at the plan)")
        if self.planned is None:
            raise NotConfirmed("plan: run the plan cell first, then confirm it")
        if self._confirm_button is None or not self._confirm_button.value:
            raise NotConfirmed("confirm: press 'Confirm apply' above, then run this cell again")
        return True

    def _plans_to_apply(self) -> dict:
        """The plans shown, when they may be applied as they are. Headless and confirmed: as planned,
        without reading again. Interactively time passes between plan and apply, so the steps plan
        again; if that plan differs from the one confirmed, the button must be pressed again."""
        if self.values["approved_plan"]:
            approved = json.loads(self.values["approved_plan"])
            if self.planned is None or _resource_changes(self.planned) != approved:
                raise NotConfirmed("plan: what this notebook would change now differs from the plan approved at the "
                                   "prompt (Azure changed in between); nothing was written; run again to see the new plan")
        if self.values["confirm"] or self.planned is None:
            return self.plans
        fresh: dict = {}
        now = runbook.run(self.context, plan=True, only=self.phase.steps, options=self._step_options(), plans=fresh)
        if _resource_changes(now) != _resource_changes(self.planned):
            self.planned, self.plans = now, fresh
            if self._confirm_button is not None:
                self._confirm_button.value = False
            raise NotConfirmed("plan: Azure changed since the plan was confirmed; run the plan cell again, read it, "
                               "and confirm the new plan")
        return fresh

    def apply(self) -> pd.DataFrame:
        """Run the phase's steps for real; a table of what each did. A failure names its step.
        Interactively the apply is recorded in a sealed run folder (crlib/lab_record.py)."""
        with self._errors_shown():
            return self._apply()

    def _apply(self) -> pd.DataFrame:
        if self.values["plan_only"]:
            return _table([{"step": s, "status": "not applied (plan only)"} for s in self.phase.steps],
                          ["step", "status"])
        self._confirmed()
        self.applied = []

        def started(step: str) -> None:
            self._record("start", step=step)

        def finished(result: StepResult) -> None:
            self.applied.append(result)
            self._record("result", **result.to_dict())

        try:
            runbook.run(self.context, only=self.phase.steps, options=self._step_options(),
                        plans=self._plans_to_apply(), on_start=started, on_result=finished)
        except RunFailed as exc:
            self._record("failed", step=exc.step, error=str(exc), type=type(exc.error).__name__)
            self._keep_lab_record(exc)
            raise
        self.plans = {}
        self._keep_lab_record(None)
        return results_table(self.applied)

    def _keep_lab_record(self, failure: RunFailed | None) -> None:
        """Interactively, outside `crlib run` (which records its own runs), the apply is recorded in a
        sealed, signed run folder with a "Save record" button (crlib/lab_record.py)."""
        if not self.values["interactive"] or self.values["results_path"]:
            return
        from . import lab_record

        self.record_dir = lab_record.after_apply(self, failure=failure)

    def _after_apply(self, show: Callable[[], Any]) -> Any:
        """Views of what apply built; in a plan-only run those things may not exist yet."""
        from IPython.display import Markdown

        from .errors import PreconditionFailed

        try:
            return show()
        except PreconditionFailed as exc:
            if not self.values["plan_only"]:
                raise
            return Markdown(f"*Not available until applied: {exc}*")

    def host_script(self) -> Any:
        """The device's host provisioning script (it holds no secret: the connection string stays in
        a root-only file on the device)."""
        from IPython.display import Markdown

        from .steps.provisioning import provisioning_script

        arc = self.context.site.host.arc
        if arc is not None:
            return Markdown(f"*An Arc host has no device to provision: cluster '{arc.cluster}' is connected with "
                            "`az connectedk8s connect`, and the prerequisites step checked that it is Connected.*")
        return self._after_apply(lambda: Markdown(f"```bash\n{provisioning_script(self.context)}\n```"))

    def readiness(self) -> Any:
        """Where the device stands: waiting for modules ($edgeAgent 417), ready, or what is wrong."""
        return self._after_apply(self._readiness)

    def _readiness(self) -> pd.DataFrame:
        from .steps.device import device_readiness

        if self.context.site.host.kind == "arc":
            return self._extension_readiness()

        view = device_readiness(self.context)
        rows = [{"aspect": "state", "value": view["state"]},
                {"aspect": "connection", "value": str(view["connection_state"])},
                {"aspect": "$edgeAgent code", "value": str(view["code"])}]
        rows += [{"aspect": f"module {name}", "value": status} for name, status in view["modules"].items()]
        rows += [{"aspect": "diagnosis", "value": text} for text in view["diagnosis"]]
        return _table(rows, ["aspect", "value"])

    def _extension_readiness(self) -> pd.DataFrame:
        """An Arc host: the cluster, the extension and its statuses, and what is wrong."""
        from .azure.readers import text
        from .hosts.arc import ArcHost

        host = ArcHost(self.context, step="deploy")
        cluster = host.cluster()
        rows = [{"aspect": "cluster", "value": f"{host.arc.cluster}: "
                 + (text(cluster.connectivity_status) if cluster is not None else "missing")}]
        view = host.view()
        if view is None:
            rows.append({"aspect": "extension", "value": f"{host.arc.extension_name}: not installed"})
        else:
            rows += [{"aspect": "extension", "value": f"{view['name']} ({view['extension_type']})"},
                     {"aspect": "provisioning state", "value": view["provisioning_state"]},
                     {"aspect": "version", "value": f"{view['current_version'] or '?'} (auto-upgrade "
                                                    f"{view['auto_upgrade_minor_version']})"}]
            rows += [{"aspect": f"setting {k}", "value": v} for k, v in view["configuration_settings"].items()]
            rows += [{"aspect": f"status {st['code']}", "value": f"{st['level']}: {st['message']}"}
                     for st in view["statuses"]]
        rows += [{"aspect": "diagnosis", "value": text} for text in host.diagnose()
                 if not text.startswith(("extension provisioningState", "extension status"))]
        return _table(rows, ["aspect", "value"])

    def manifest(self) -> Any:
        """The deployment as recorded: secrets replaced by references to the secret store (on Arc,
        the extension's settings; its protected settings as references too)."""
        from IPython.display import Markdown

        from .hosts import host_for

        host = host_for(self.context, step="manifest", required=False)
        return self._after_apply(lambda: Markdown(
            f"```json\n{MASKER.redact(json.dumps(host.desired(record=True), indent=2))}\n```"))

    def details(self) -> pd.DataFrame:
        """What the steps found or did beyond the status: hosts, digests, versions, checks."""
        rows = []
        for result in self.applied or self.planned or []:
            for key, value in result.details.items():
                if key == "evidence" and isinstance(value, list):  # the checks' findings: one line each, in words
                    rows += [{"step": result.step, "detail": key, "value": MASKER.redact(str(line))} for line in value]
                    continue
                if key == "record":  # the manifest's record copy is long; the archive keeps it in results
                    value = "(kept in the run's results)"
                shown = value if isinstance(value, str) else json.dumps(value, default=str)
                rows.append({"step": result.step, "detail": key, "value": MASKER.redact(shown)})
        return _table(rows, ["step", "detail", "value"])


__all__ = ["COMMON_PARAMETERS", "CrlibError", "Page", "open_page", "parameter_names", "results_table"]


# -- the day-2 status view (notebooks/11-status.ipynb): not a runbook phase; it reads and never writes ------
# Its parameters, with the help papermill shows: the common ones a read-only view has use for.
STATUS_PARAMETERS = {
    "params_file": ("../parameters/sandbox.yaml", "a site's parameter file, or a fleet inventory (a file with a "
                                                  "top-level fleet: key)"),
    "overrides": ({}, "dotted parameters over the file, e.g. {'status.expiry_warning_days': 30} (for an inventory: "
                      "status.* only, applied to every site)"),
    "interactive": (True, "false for headless runs (papermill): no form is shown"),
}
STATUS_FIELDS = ("status.expiry_warning_days", "status.sync_grace")


def status_page(namespace: dict) -> StatusPage:
    """Notebook 11's page: its parameters read from its namespace (after papermill's injection),
    strictly, as open_page reads a phase's. The logic is crlib/status.py's."""
    refuse_unknown(namespace, "11-status", list(STATUS_PARAMETERS))
    values = {name: namespace.get(name, default) for name, (default, _) in STATUS_PARAMETERS.items()}
    return StatusPage(str(values["params_file"]), _overrides(values["overrides"]),
                      interactive=_bool("interactive", values["interactive"]))


class StatusPage:
    """The status view's cells: a form for the thresholds, the table coloured by health, the plot of
    sync ages and days to expiry, and the reasons."""

    def __init__(self, params_file: str, overrides: dict, *, interactive: bool = True):
        from . import status

        self.params_file, self.overrides, self.interactive = params_file, overrides, interactive
        self.sites = status.load_sites(params_file, overrides, flag="overrides:")
        self.form_overrides: dict[str, object] = {}
        self._form: Form | None = None
        self._statuses: list | None = None

    @property
    def statuses(self) -> list:
        """Each site's status (crlib.status.SiteStatus), read once per reading of the form."""
        if self._statuses is None:
            from . import status

            self._statuses = status.read_status(self.sites)
        return self._statuses

    def form(self) -> _Shown:
        """The thresholds, prefilled from the (first) site's parameters; interactive sessions show it."""
        text = f"*Form not shown (headless): thresholds come from `{self.params_file}` and `overrides`.*"
        if not self.interactive:
            return _Shown(None, False, text)
        self._form = Form(self.sites[0], STATUS_FIELDS)
        return _Shown(self._form, True, text)

    def read_form(self, shown: _Shown | Form | None = None) -> pd.DataFrame:
        """Apply the form's thresholds to every site (validated again); a table of them."""
        from . import status

        form = shown.widget if isinstance(shown, _Shown) else shown or self._form
        if isinstance(form, Form):
            form.clear_problems()
            self.form_overrides = form.overrides()
            try:
                self.sites = [status.with_status(site, self.form_overrides, flag="form") for site in self.sites]
            except ParameterError as exc:
                if self.interactive:
                    form.show_problems("Not accepted: ", [(exc.field, exc.message)])
                raise
            self._statuses = None
        return _table([{"site": s.site, "expiry_warning_days": s.status.expiry_warning_days,
                        "sync_grace": s.status.sync_grace} for s in self.sites],
                      ["site", "expiry_warning_days", "sync_grace"])

    def table(self) -> Any:
        """One row per site (crlib.status.to_frame), green when healthy, red when not."""
        from . import status

        return status.style(status.to_frame(self.statuses))

    def plot(self) -> pd.DataFrame:
        """Each site's sync age and days to its first password expiry, as bars (green healthy, red
        not) with the allowances as lines; the cell's value is the data plotted."""
        import io

        from IPython.display import Image, display

        from . import status

        buffer = io.BytesIO()  # rendered here: no pyplot state, one image whatever the kernel's backend
        status.plot(self.statuses).savefig(buffer, format="png", dpi=100)
        display(Image(data=buffer.getvalue(), format="png"))
        data = status.plot_frame(self.statuses)
        return _table(data.to_dict("records"), list(data.columns))

    def reasons(self) -> pd.DataFrame:
        """Why each unhealthy site is unhealthy, one row per reason (none: every site is healthy)."""
        rows = [{"site": s.site, "reason": r.removeprefix(f"{s.site}: ")} for s in self.statuses for r in s.reasons]
        if not rows:
            rows = [{"site": f"all {len(self.statuses)}", "reason": "healthy"}]
        return _table(rows, ["site", "reason"])
