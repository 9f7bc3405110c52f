"""ipywidgets forms over the site parameters: one widget per dotted parameter, prefilled.

The widget for a parameter follows its pydantic type: a choice (Literal) is a dropdown, a bool a
checkbox, a number an integer box, a list of names a comma-separated text box, and anything
nested (scope maps, tokens) a YAML text area. Reading a form gives dotted overrides for exactly
the fields that were edited; the parameters are then validated again as a whole, so a form can
never produce a site that a parameter file could not.

The fields are grouped by section (the site, the IoT hub, the device, the registry, the connected
registry, client access, checks, the notebook's own options), each titled, and each field shows its
help under it and as its tooltip: the pydantic Field's description (crlib/params.py), or FIELD_HELP
where the model has none. A value the parameters refuse is shown beside the form (`show_problems`)
with its field highlighted (CSS class `crlib-field-error`).
"""

from __future__ import annotations

import html
import types
import typing
from dataclasses import dataclass

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from .errors import ParameterError
from .params import Site

# Sections of the form, in order: a parameter's first part names its section (top-level ones are
# the site's); the notebook's own options come last.
SECTIONS = {"": "Site", "hub": "IoT hub", "device": "Edge device", "registry": "Cloud registry",
            "images": "Images", "connected_registry": "Connected registry", "client_access": "Client access",
            "checks": "Checks", "host": "Host", "secrets": "Secrets", "records": "Records", "target": "Target"}
OPTIONS_SECTION = "options"
OPTIONS_TITLE = "This notebook's options"

# Help for the parameters whose pydantic Field has no description (a description in crlib/params.py wins).
FIELD_HELP = {
    "site": "the site's name (1-41 lowercase letters, digits and '-'): it names the run records and the secrets",
    "resource_group": "the resource group the site's resources go in (1-90 letters, digits, '-', '_', '.', '(', ')')",
    "location": "the Azure region, such as westus",
    "registry.name": "the cloud registry (Premium SKU), 5-50 letters and digits",
    "images.source_registry": "where the images are imported from, such as mcr.microsoft.com",
    "images.connected_registry": "the connected registry's image (repository:tag)",
    "images.edge_agent": "the IoT Edge agent module's image (repository:tag)",
    "images.edge_hub": "the IoT Edge hub module's image (repository:tag)",
    "images.api_proxy": "the IoT Edge API proxy module's image (repository:tag)",
    "images.diagnostics": "the IoT Edge diagnostics image (repository:tag)",
    "hub.name": "the IoT hub (3-50 letters, digits and '-')",
    "hub.sku": "the IoT hub's pricing tier",
    "device.id": "the IoT Edge device's identity in the hub",
    "device.host_os": "the device's operating system, for its host provisioning script",
    "device.parent_device": "the parent IoT Edge device's id, for a nested device (empty: none)",
    "connected_registry.mode": "ReadWrite: clients may push, and pushes sync to the cloud; ReadOnly: pull only",
    "connected_registry.repositories": "the repositories it syncs, comma-separated",
    "connected_registry.sync_schedule": "when it syncs: a five-field cron expression",
    "connected_registry.sync_window": "how long each scheduled sync lasts, an ISO 8601 duration such as PT3H "
                                      "(empty: no window)",
    "connected_registry.message_ttl": "how long sync messages are kept, an ISO 8601 duration such as P2D",
    "connected_registry.log_level": "the connected registry's log level",
    "connected_registry.notifications": "artifact patterns it sends notifications for, comma-separated",
    "client_access.tokens": "client tokens, YAML: each a name, a scope_map and optional expiry_days",
    "checks.pull_image": "the image the check pulls through the device (repository:tag)",
    "checks.push_repository": "the repository the check pushes to (refused by a ReadOnly connected registry)",
}
ERROR_CLASS = "crlib-field-error"
# The form's own style: small help text, section titles, and a highlighted field in error.
_STYLE = """<style>
.crlib-form .crlib-section-title {font-weight: 600; margin: 10px 0 4px 0; padding-bottom: 2px;
  border-bottom: 1px solid var(--jp-border-color2, #ccc);}
.crlib-form .crlib-help {font-size: 0.85em; color: var(--jp-ui-font-color2, #616161); margin: -2px 0 4px 12.5em;
  max-width: 30em; line-height: 1.3;}
.crlib-form .crlib-field-error input, .crlib-form .crlib-field-error select, .crlib-form .crlib-field-error textarea
  {border: 2px solid #c62828 !important; background: #fdecea !important;}
.crlib-form .crlib-field-error label {color: #c62828; font-weight: 600;}
</style>"""


def message_html(title: str, lines: list[str], *, kind: str = "error") -> str:
    """A short styled message (an HTML block, not a traceback): a bold title and one line per finding."""
    colours = {"error": ("#c62828", "#fdecea", "#611a15"), "note": ("#2e7d32", "#edf7ed", "#1e4620")}
    edge, background, text = colours[kind]
    body = "".join(f"<div>{html.escape(line)}</div>" for line in lines)
    return (f'<div class="crlib-message crlib-message-{kind}" role="{"alert" if kind == "error" else "status"}" '
            f'style="border-left: 4px solid {edge}; background: {background}; color: {text}; padding: 6px 10px; '
            f'margin: 4px 0; border-radius: 3px; font-family: var(--jp-ui-font-family, sans-serif); '
            f'font-size: var(--jp-ui-font-size1, 13px); line-height: 1.4; max-width: 60em;">'
            f"<b>{html.escape(title)}</b>{body}</div>")


def section_of(dotted: str) -> str:
    """The form section a dotted parameter belongs to ("" for the site's top-level parameters)."""
    return dotted.split(".")[0] if "." in dotted else ""


def help_text(dotted: str) -> str:
    """What a parameter means: its pydantic Field description, else FIELD_HELP, else nothing."""
    return _field_info(dotted).description or FIELD_HELP.get(dotted, "")


def _field_info(dotted: str) -> FieldInfo:
    """The pydantic FieldInfo of a dotted parameter such as connected_registry.mode."""
    model: type[BaseModel] = Site
    *parents, last = dotted.split(".")
    for part in parents:
        model = typing.cast("type[BaseModel]", model.model_fields[part].annotation)  # a nested model
    return model.model_fields[last]


def _kind(annotation: typing.Any) -> tuple[str, tuple]:
    """(kind, choices) for an annotation: choice, bool, int, names, text, optional-text or yaml."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        inner = [a for a in args if a is not type(None)]
        kind, choices = _kind(inner[0]) if len(inner) == 1 else ("yaml", ())
        return ("optional-text", ()) if kind == "text" else (kind, choices)
    if origin is typing.Literal:
        return "choice", args
    if origin is typing.Annotated:
        return _kind(args[0])
    if annotation is bool:
        return "bool", ()
    if annotation is int:
        return "int", ()
    if annotation is str:
        return "text", ()
    if origin is list and args == (str,):
        return "names", ()
    return "yaml", ()


def lookup(data: dict, dotted: str) -> typing.Any:
    """The value at a dotted parameter in a site's mapping (None when absent)."""
    value: typing.Any = data
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


@dataclass
class FormField:
    dotted: str
    kind: str
    widget: typing.Any  # an ipywidgets widget
    help: str = ""

    def value(self) -> typing.Any:
        raw = self.widget.value
        if self.kind == "names":
            return [item.strip() for item in raw.replace("\n", ",").split(",") if item.strip()]
        if self.kind == "optional-text":
            return raw.strip() or None
        if self.kind == "yaml":
            try:
                return yaml.safe_load(raw) if raw.strip() else None
            except yaml.YAMLError as exc:
                raise ParameterError(self.dotted, f"is not valid YAML: {exc}") from None
        return raw


def _widget(dotted: str, value: typing.Any, *, description: str | None = None) -> FormField:
    import ipywidgets as w

    info = _field_info(dotted) if description is None else None
    kind, choices = _kind(info.annotation) if info is not None else ("bool", ())
    help_ = description if description is not None else help_text(dotted)
    tooltip = f"{dotted}: {help_}" if help_ else dotted
    common = {"description": dotted.split(".")[-1], "tooltip": tooltip,
              "style": {"description_width": "12em"}, "layout": w.Layout(width="42em")}
    if kind == "choice":
        widget = w.Dropdown(options=[str(c) for c in choices], value=str(value), **common)
    elif kind == "bool":
        widget = w.Checkbox(value=bool(value), indent=False, **common)
    elif kind == "int":
        widget = w.IntText(value=int(value), **common)
    elif kind == "names":
        widget = w.Text(value=", ".join(value or []), placeholder="comma-separated", **common)
    elif kind == "yaml":
        text = yaml.safe_dump(value, sort_keys=False, default_flow_style=False).strip() if value else ""
        common["layout"] = w.Layout(width="42em", height="8em")
        widget = w.Textarea(value=text, placeholder="YAML", **common)
    else:
        widget = w.Text(value="" if value is None else str(value), **common)
    widget.add_class(f"crlib-field-{dotted.replace('.', '-').replace('_', '-')}")
    return FormField(dotted, kind, widget, help_)


class Form:
    """Widgets for some parameters of a site, plus the notebook's own options (checkboxes)."""

    def __init__(self, site: Site, fields: tuple[str, ...],
                 options: dict[str, tuple[bool, str]] | None = None) -> None:
        import ipywidgets as w

        data = site.model_dump(mode="json")
        self.original = data
        self.fields = [_widget(dotted, lookup(data, dotted)) for dotted in fields]
        self.options = {name: _widget(name, value, description=option_help)
                        for name, (value, option_help) in (options or {}).items()}
        grouped: dict[str, list[FormField]] = {}
        for form_field in self.fields:
            grouped.setdefault(section_of(form_field.dotted), []).append(form_field)
        if self.options:
            grouped[OPTIONS_SECTION] = list(self.options.values())
        order = [*SECTIONS, OPTIONS_SECTION]
        self.sections = {key: grouped[key] for key in sorted(grouped, key=lambda k: (order.index(k) if k in order
                                                                                     else len(order), k))}
        boxes = [self._section(key, members) for key, members in self.sections.items()]
        self.message = w.HTML(value="")  # a refusal, shown beside the form (show_problems)
        self.message.add_class("crlib-form-message")
        title = w.HTML(f"{_STYLE}<b>Parameters of site <code>{html.escape(site.site)}</code></b>")
        self.box = w.VBox([title, *boxes, self.message])
        self.box.add_class("crlib-form")

    @staticmethod
    def _section(key: str, members: list[FormField]) -> typing.Any:
        """A titled group of fields, each with its help in small text under it."""
        import ipywidgets as w

        title = OPTIONS_TITLE if key == OPTIONS_SECTION else SECTIONS.get(key, key.replace("_", " ").capitalize())
        rows: list[typing.Any] = [w.HTML(f'<div class="crlib-section-title">{html.escape(title)}</div>')]
        for member in members:
            rows.append(member.widget)
            if member.help:
                rows.append(w.HTML(f'<div class="crlib-help">{html.escape(member.help)}</div>'))
        box = w.VBox(rows)
        box.add_class("crlib-section")
        box.add_class(f"crlib-section-{(key or 'site').replace('_', '-')}")
        return box

    def _repr_mimebundle_(self, **kwargs: typing.Any) -> typing.Any:
        """Displayed, a form is its widgets (JupyterLab renders the box, not this object's repr)."""
        return self.box._repr_mimebundle_(**kwargs)

    def overrides(self) -> dict[str, object]:
        """Dotted overrides for the fields whose value differs from the parameters."""
        edited = {}
        for form_field in self.fields:
            value = form_field.value()
            if value != lookup(self.original, form_field.dotted):
                edited[form_field.dotted] = value
        return edited

    def option_values(self) -> dict[str, bool]:
        return {name: bool(option.widget.value) for name, option in self.options.items()}

    def widget(self, dotted: str) -> typing.Any:
        """The widget of one parameter (tests and notebooks set values through it)."""
        for form_field in self.fields:
            if form_field.dotted == dotted:
                return form_field.widget
        if dotted in self.options:
            return self.options[dotted].widget
        raise KeyError(dotted)

    def field_for(self, dotted: str) -> str | None:
        """The form's parameter a refusal's field is about: itself, or the parameter it lies in
        (client_access.tokens.0.name is about client_access.tokens); None when the form lacks it."""
        names = [f.dotted for f in self.fields] + list(self.options)
        return next((name for name in names if dotted == name or dotted.startswith(name + ".")), None)

    def show_problems(self, title: str, problems: list[tuple[str, str]]) -> list[str]:
        """Show (field, message) refusals beside the form and highlight their fields; the fields
        highlighted."""
        self.clear_problems()
        marked = []
        for dotted, _ in problems:
            name = self.field_for(dotted)
            if name is not None and name not in marked:
                self.widget(name).add_class(ERROR_CLASS)
                marked.append(name)
        self.message.value = message_html(title, [f"{field}: {message}" for field, message in problems])
        return marked

    def show_message(self, html_text: str) -> None:
        self.message.value = html_text

    def clear_problems(self) -> None:
        """No field highlighted, no message."""
        for form_field in [*self.fields, *self.options.values()]:
            form_field.widget.remove_class(ERROR_CLASS)
        self.message.value = ""

    def highlighted(self) -> list[str]:
        """The parameters whose fields are highlighted as in error."""
        return [f.dotted for f in [*self.fields, *self.options.values()] if ERROR_CLASS in f.widget._dom_classes]
