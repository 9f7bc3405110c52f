"""The sandbox is wired by declaration: one Service per package, one ordered list."""

from __future__ import annotations

from pathlib import Path

import pytest

import crlib.sandbox
from crlib.sandbox.config import LATENCY_PROFILES
from crlib.sandbox.core.lro import Operations
from crlib.sandbox.core.service import OperationKind
from crlib.sandbox.services import SERVICES

NAMES = [service.name for service in SERVICES]


def test_every_service_package_is_in_the_list_once():
    root = Path(crlib.sandbox.__file__).parent
    packages = {path.parent.name for path in root.glob("*/service.py")} - {"core"}  # core/service.py: the dataclass
    assert len(NAMES) == len(set(NAMES))
    assert packages <= set(NAMES), f"a service.py that services.SERVICES leaves out: {packages - set(NAMES)}"


def test_hosts_come_back_before_the_devices_that_use_them():
    for first in ("arm_containerregistry", "arm_iothub", "image_source", "registry_dataplane"):
        assert NAMES.index(first) < NAMES.index("edge_devices")


def test_operation_kinds_are_declared_once_and_the_latency_profiles_time_only_those():
    declared = [kind.name for service in SERVICES for kind in service.operation_kinds]
    assert len(declared) == len(set(declared))
    for name, profile in LATENCY_PROFILES.items():
        assert set(profile) <= set(declared), f"profile {name} times undeclared kinds: {set(profile) - set(declared)}"


def test_an_undeclared_operation_kind_cannot_begin():
    declared = OperationKind("thing.create")
    operations = Operations(None, [declared])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not declared"):
        operations.begin(OperationKind("thing.create"), resource_id="/x", location="westus", namespace="X",
                         api_version="2020-01-01")
    with pytest.raises(ValueError, match="two operation kinds"):
        Operations(None, [declared, OperationKind("thing.create")])  # type: ignore[arg-type]
