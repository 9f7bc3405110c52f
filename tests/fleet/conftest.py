"""Fixtures for fleet tests: an inventory of sites with names unique to the test, aimed at the
session sandbox, and every site it built torn down afterwards (their devices stop syncing)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from fleet_kit import inventory_data


def tear_down_fleet(path: Path) -> None:
    from crlib.context import open_context
    from crlib.errors import ParameterError
    from crlib.inventory import load_inventory
    from crlib.steps.teardown import teardown

    try:
        fleet = load_inventory(path)
    except ParameterError:
        return
    def depth(site) -> int:
        parent = fleet.parent_of(site)
        return 0 if parent is None else 1 + depth(parent)

    ordered = sorted(fleet.sites, key=depth, reverse=True)  # bottom-up: children before their parents
    for index, site in enumerate(ordered):
        last = index == len(ordered) - 1
        try:
            teardown(open_context(site), delete_hub=last, delete_registry=last)
        except Exception:  # a site that was never built, or is gone already
            if last:
                raise


@pytest.fixture
def write_inventory(sandbox, tmp_path):
    """Write an inventory (`count` sites, or `data` as given); every one written is torn down after the test."""
    written: list[Path] = []

    def write(count: int = 3, *, data: dict | None = None, name: str = "fleet.yaml", built: bool = True) -> Path:
        """`built`: False for an inventory the test expects to be refused (nothing to tear down)."""
        data = data or inventory_data(sandbox, tmp_path / "secrets", count)
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        if built and path not in written:
            written.append(path)
        return path

    yield write
    for path in written:
        tear_down_fleet(path)
