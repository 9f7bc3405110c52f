"""What notebooks/10-fleet.ipynb calls: an inventory in, a form, a plan, a confirmation, an apply.

The same cells as a site's notebook (crlib/notebook.py), for a fleet (crlib/fleet.py):

    inventory_file = ...; sites = ""; max_parallel = 8; confirm = False; ...   # `parameters`
    page = notebook.open_fleet_page(globals())
    form = page.form(); form
    page.read_form(form)
    page.plan()                 # the shared steps' and each site's changes, and Azure's limits
    page.confirmation()
    page.apply()                # one row per site; a failed site does not stop the others
    page.summary()

Each site's outcome is appended to `results_path` (JSON lines) as it ends, which is how
`crlib fleet run` (crlib/fleet_runner.py) builds fleet.json and the per-site records, whatever
becomes of the notebook afterwards.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import progress
from .errors import NotConfirmed, ParameterError
from .fleet import FleetContexts, FleetPlan, FleetResult, apply_fleet, plan_fleet
from .inventory import Fleet, load_inventory
from .secrets import MASKER

if TYPE_CHECKING:
    import pandas as pd

FLEET_PARAMETERS: dict[str, tuple[object, str]] = {
    "inventory_file": ("../parameters/fleet-sandbox.yaml", "the fleet's inventory (YAML): shared, defaults, sites"),
    "sites": ("", "comma-separated site names to run (default: every site)"),
    "max_parallel": (8, "how many sites run at once"),
    "attempt": (1, "which attempt this is (set by crlib fleet run --resume)"),
    "confirm": (False, "true: apply without asking (a headless run needs it); false: wait for the Confirm button"),
    "plan_only": (False, "true: show the plan and stop; nothing is written"),
    "interactive": (True, "false for headless runs (crlib fleet run, papermill): no form is shown"),
    "results_path": ("", "JSON-lines file that collects each site's outcome (set by crlib fleet run)"),
}


def _site_names(value: object) -> list[str]:
    if isinstance(value, str):
        return [s.strip() for s in value.split(",") if s.strip()]
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return value
    raise ParameterError("sites", "must be comma-separated site names")


def _whole(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ParameterError(name, f"{value!r} is not a whole number")
    try:
        number = int(value)
    except ValueError:
        raise ParameterError(name, f"{value!r} is not a whole number") from None
    if number < 1:
        raise ParameterError(name, f"must be at least 1, not {number}")
    return number


def open_fleet_page(namespace: dict) -> FleetPage:
    """Read the fleet notebook's parameters from its namespace, strictly (as open_page does)."""
    from .notebook import _bool, refuse_unknown

    refuse_unknown(namespace, "10-fleet", list(FLEET_PARAMETERS))
    values = {name: namespace.get(name, default) for name, (default, _) in FLEET_PARAMETERS.items()}
    for name in ("confirm", "plan_only", "interactive"):
        values[name] = _bool(name, values[name])
    values["max_parallel"] = _whole("max_parallel", values["max_parallel"])
    values["attempt"] = _whole("attempt", values["attempt"])
    values["sites"] = _site_names(values["sites"])
    return FleetPage(values)


class _Shown:
    def __init__(self, widget: Any, headless_text: str) -> None:
        self.widget, self.headless_text = widget, headless_text

    def _ipython_display_(self) -> None:
        from IPython.display import Markdown, display

        display(self.widget if self.widget is not None else Markdown(self.headless_text))


def _table(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(rows, columns=columns)


class FleetPage:
    def __init__(self, values: dict):
        self.values = values
        self.fleet: Fleet = load_inventory(values["inventory_file"])
        self.fleet.select(values["sites"])  # unknown names are refused here, before anything is read
        progress.set_headless(not values["interactive"])
        self.planned: FleetPlan | None = None
        self.result: FleetResult | None = None
        self._contexts: FleetContexts | None = None
        self._form: dict[str, Any] = {}
        self._confirm_button: Any = None

    @property
    def contexts(self) -> FleetContexts:
        if self._contexts is None:
            self._contexts = FleetContexts(self.fleet)
        return self._contexts

    def _record(self, event: dict) -> None:
        line = MASKER.redact(json.dumps({**event, "time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")},
                                        default=str))
        path = self.values["results_path"]
        if path:
            with Path(path).open("a") as fh:
                fh.write(line + "\n")

    # -- cells --------------------------------------------------------------------------------------
    def form(self) -> _Shown:
        text = (f"*Form not shown (headless): the sites come from `{self.values['inventory_file']}`, "
                f"`sites` and `max_parallel`.*")
        if not self.values["interactive"]:
            return _Shown(None, text)
        import ipywidgets as w

        names = [s.site for s in self.fleet.sites]
        self._form = {
            "sites": w.SelectMultiple(options=names, value=tuple(self.values["sites"] or names), rows=min(10, len(names)),
                                      description="sites", tooltip="the sites to run (every site by default)"),
            "max_parallel": w.BoundedIntText(value=self.values["max_parallel"], min=1, max=64,
                                             description="max parallel", tooltip="how many sites run at once"),
        }
        return _Shown(w.VBox([w.HTML(f"<b>Fleet {self.fleet.name}</b>: {len(names)} sites from "
                                     f"{self.values['inventory_file']}"), *self._form.values()]), text)

    def read_form(self, shown: _Shown | None = None) -> pd.DataFrame:
        if self._form:
            chosen = list(self._form["sites"].value)
            self.values["sites"] = [] if len(chosen) == len(self.fleet.sites) else chosen
            self.values["max_parallel"] = _whole("max_parallel", self._form["max_parallel"].value)
            self.planned = None
            if self._confirm_button is not None:
                self._confirm_button.value = False
        rows = [{"site": s.site, "host": s.host.kind, "connected registry": s.connected_registry.name,
                 "mode": s.connected_registry.mode, "parent": s.connected_registry.parent or "",
                 "device or cluster": s.device.id if s.host.kind == "iotedge" else
                 (s.host.arc.cluster if s.host.arc else "")}
                for s in self.fleet.select(self.values["sites"])]
        return _table(rows, ["site", "host", "connected registry", "mode", "parent", "device or cluster"])

    def plan(self) -> pd.DataFrame:
        """Every change the run would make, per site, and Azure's limits; nothing is written."""
        self.planned = plan_fleet(self.fleet, sites=self.values["sites"], max_parallel=self.values["max_parallel"],
                                  contexts=self.contexts)
        self._record({"event": "plan", "counts": self.planned.counts(),
                      "limits": [c.line() for c in self.planned.limits],
                      "sites": {n: o.to_dict() for n, o in self.planned.sites.items()}})
        print(self.planned.render())
        rows = [{"site": "(shared)" if row["notebook"].startswith("shared") else row["notebook"].removeprefix("site "),
                 "step": row["step"], "action": change["action"], "change": change["summary"]}
                for row in self.planned.step_dicts() for change in row.get("plan") or []]
        return _table(rows, ["site", "step", "action", "change"])

    def confirmation(self) -> _Shown:
        if self.values["plan_only"]:
            return _Shown(None, "**Plan only:** nothing will be applied.")
        if self.values["confirm"] or not self.values["interactive"]:
            said = "confirmed by the parameter `confirm: true`" if self.values["confirm"] else \
                "not confirmed: a headless run applies only with `confirm: true`"
            return _Shown(None, f"**Apply:** {said}.")
        import ipywidgets as w

        self._confirm_button = w.ToggleButton(value=False, description="Confirm apply", button_style="warning",
                                              icon="check")
        return _Shown(self._confirm_button, "")

    def _confirmed(self) -> None:
        if self.values["confirm"]:
            return
        if not self.values["interactive"]:
            raise NotConfirmed("confirm: a headless run applies only with confirm: true "
                               "(or plan_only: true to stop at the plan)")
        if self.planned is None:
            raise NotConfirmed("plan: run the plan cell first, then confirm it")
        if self._confirm_button is None or not self._confirm_button.value:
            raise NotConfirmed("confirm: press 'Confirm apply' above, then run this cell again")

    def apply(self) -> pd.DataFrame:
        """Run the fleet: the shared steps once, then the sites; one row per site."""
        if self.values["plan_only"]:
            return _table([], ["site", "status"])
        self._confirmed()
        self.result = apply_fleet(self.fleet, sites=self.values["sites"], max_parallel=self.values["max_parallel"],
                                  attempt=self.values["attempt"], contexts=self.contexts, on_event=self._on_event)
        self._record({"event": "fleet", "duration_s": self.result.duration_s, "pacing": self.result.pacing,
                      "limits": [c.line() for c in self.result.limits],
                      "shared": [r.to_dict() for r in self.result.shared]})
        rows = [{"site": o.site, "status": o.status, "attempt": o.attempt, "duration_s": o.duration_s,
                 "failed step": (o.failure or {}).get("step", ""), "error": (o.failure or {}).get("error", "")}
                for o in self.result.sites.values()]
        return _table(rows, ["site", "status", "attempt", "duration_s", "failed step", "error"])

    def _on_event(self, event: dict) -> None:
        if event.get("event") == "site" and event.get("status") != "started":
            self._record(event)
            if not self.values["interactive"]:
                failure = event.get("failure") or {}
                print(f"site {event['site']}: {event['status']} ({event.get('duration_s', 0)} s)"
                      + (f": {failure.get('step')}: {failure.get('error')}" if failure else ""), flush=True)
        elif event.get("event") == "shared" and event.get("status") == "done":
            self._record(event)

    def summary(self) -> pd.DataFrame:
        """The counts, and ARM's budget as the run used it."""
        if self.result is None:
            return _table([{"what": "applied", "value": "no (plan only)"}], ["what", "value"])
        counts = self.result.counts()
        rows = [{"what": f"sites {status}", "value": count} for status, count in counts.items()]
        rows += [{"what": "wall time (s)", "value": self.result.duration_s},
                 {"what": "ARM requests", "value": json.dumps(self.result.pacing.get("requests"))},
                 {"what": "paced waits", "value": f"{self.result.pacing.get('waits')} "
                                                  f"({self.result.pacing.get('waited_s')} s)"},
                 {"what": "429s", "value": self.result.pacing.get("throttled")}]
        rows += [{"what": "limit", "value": c.line()} for c in self.result.limits]
        return _table(rows, ["what", "value"])
