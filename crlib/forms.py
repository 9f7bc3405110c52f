"""ipywidgets forms over the site parameters: one widget per dotted parameter, prefilled.

The widget for a parameter follows its pydantic type: a choice (Literal) is a dropdown, a bool a
checkbox, a number an integer box, a list of names a comma-separated text box, and anything
nested (scope maps, tokens) a YAML text area. Reading a form gives dotted overrides for exactly
the fields that were edited; the parameters are then validated again as a whole, so a form can
never produce a site that a parameter file could not.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from .errors import ParameterError
from .params import Site


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
    tooltip = description or (info.description if info is not None else None) or dotted
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
    return FormField(dotted, kind, widget)


class Form:
    """Widgets for some parameters of a site, plus the notebook's own options (checkboxes)."""

    def __init__(self, site: Site, fields: tuple[str, ...],
                 options: dict[str, tuple[bool, str]] | None = None) -> None:
        import ipywidgets as w

        data = site.model_dump(mode="json")
        self.original = data
        self.fields = [_widget(dotted, lookup(data, dotted)) for dotted in fields]
        self.options = {name: _widget(name, value, description=help_text)
                        for name, (value, help_text) in (options or {}).items()}
        rows = [f.widget for f in self.fields] + [o.widget for o in self.options.values()]
        self.box = w.VBox([w.HTML(f"<b>Parameters of site <code>{site.site}</code></b>"), *rows])
        self.box.add_class("crlib-form")

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
