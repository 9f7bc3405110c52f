"""Plans as data through the page API: a confirmed headless apply executes the plan it showed,
without reading Azure again; an interactive apply refuses a plan that Azure overtook."""

from __future__ import annotations

from pathlib import Path

import pytest
from requestlog import log_from_now

from crlib import notebook, runbook
from crlib.context import open_context
from crlib.errors import NotConfirmed
from crlib.params import load_file


def build(params: Path, *notebooks: str) -> None:
    """What the earlier notebooks build, in-process (faster than papermill)."""
    runbook.run(open_context(load_file(params)), only=[s for n in notebooks for s in runbook.phase(n).steps])


def _page(name: str, params: Path, **values):
    return notebook.open_page(name, {"params_file": str(params), "In": [], "Out": {}, **values})


def test_a_confirmed_headless_apply_reads_nothing_the_plan_read(sandbox, write_params):
    params = write_params()
    build(params, "00", "01", "02", "03")
    page = _page("03-connected-registry", params, interactive=False, confirm=True)
    table = page.plan()
    assert set(table["status"]) == {"unchanged"}, table.to_string()
    requests = log_from_now(sandbox)
    applied = page.apply()
    assert list(applied["status"]) == ["unchanged", "unchanged"]
    assert requests() == [], "apply read again what the plan had read"


def test_plan_rows_come_from_the_changes_as_data(sandbox, write_params):
    params = write_params()
    build(params, "00", "01")
    page = _page("02-registry", params, interactive=False, confirm=True)
    table = page.plan()
    endpoint = table[table["step"] == "endpoint"].iloc[0]
    assert endpoint["action"] == "+ create"
    assert endpoint["resource"].startswith("registry '")
    results = page.planned
    assert [c["summary"] for r in results for c in r.plan] == [line for r in results for line in r.changes]
    applied = page.apply()
    assert list(applied["step"]) == ["endpoint", "imports"]
    assert list(applied["status"]) == ["created", "created"]


def test_an_interactive_apply_refuses_a_plan_azure_overtook(sandbox, write_params):
    params = write_params()
    build(params, "00", "01", "02", "03")
    page = _page("03-connected-registry", params)
    page.plan()
    page.confirmation()
    page._confirm_button.value = True
    site, acr = page.site, page.context.clients.acr
    from azure.mgmt.containerregistry import models

    acr.connected_registries.begin_update(site.resource_group, site.registry.name, site.connected_registry.name,
                                          models.ConnectedRegistryUpdateParameters(
                                              logging=models.LoggingProperties(log_level="Debug"))).result()
    with pytest.raises(NotConfirmed, match="changed since the plan was confirmed"):
        page.apply()
    assert page._confirm_button.value is False
    page._confirm_button.value = True
    applied = page.apply()
    assert list(applied["status"]) == ["updated", "unchanged"]
