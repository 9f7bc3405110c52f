"""An IoT Edge device as a deployment host: its deployment is the desired properties of its
`$edgeAgent` and `$edgeHub` module twins, applied with applyConfigurationContent (what
`az iot edge set-modules` sends), and its state is what `$edgeAgent` reports. The manifest itself
is composed and validated in crlib.hosts.iotedge_manifest.

The documented success rule for a deployment: `$edgeAgent` reports `lastDesiredVersion` equal to
the desired `$version` and `lastDesiredStatus.code` 200, and every module the deployment names
reports `runtimeStatus` running. crlib also requires each module's reported image to be the one
desired, so a module still running an older image does not count.

The device lives in the site's IoT hub, reached with the hub's owner connection string, or with
Entra ID when the hub has local auth disabled (crlib.azure.readers.hub_access); IoT Hub's msrest
errors become crlib's through crlib.azure.errors. Removing the host deletes the device identity: its module twins, hence its
deployment, go with it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..azure import devices, names, readers
from ..azure.errors import get_or_none, map_exceptions
from ..azure.pull_access import deployed_module_repositories
from ..azure.removal import deletion, secret_deletions
from . import HostStatus
from . import iotedge_manifest as manifests
from .iotedge_manifest import CONNECTED_REGISTRY_MODULE, EDGE_AGENT, EDGE_HUB

if TYPE_CHECKING:
    from ..context import RunContext
    from ..plans import Change

__all__ = ["EDGE_AGENT", "EDGE_HUB", "IoTEdgeHost"]
_TWIN_METADATA = ("$version", "$metadata")
NO_DEPLOYMENT = "no deployment yet"


class IoTEdgeHost:
    def __init__(self, ctx: RunContext, *, step: str):
        self._ctx = ctx
        self.step = step
        self.device_id = ctx.site.device.id
        self.name = f"IoT Edge device '{self.device_id}'"
        self.label = f"{self.name} in IoT hub '{ctx.site.hub.name}'"
        self._registry_manager: Any = None

    # -- reaching the device ----------------------------------------------------------------------
    def _hub(self) -> readers.HubAccess | None:
        return readers.hub_access(self._ctx, required=False)

    def check(self) -> None:
        readers.hub_access(self._ctx, required=True)

    @property
    def resource_id(self) -> str:
        hub = self._hub()
        return devices.device_address(hub, self.device_id) if hub else f"{self._ctx.site.hub.name}/devices/" \
                                                                         f"{self.device_id}"

    @property
    def registry_manager(self) -> Any:
        if self._registry_manager is None:
            hub = readers.hub_access(self._ctx)
            assert hub is not None  # required: a missing hub raised
            self._registry_manager = self._ctx.clients.registry_manager(hub)
        return self._registry_manager

    def _twin_properties(self, module_id: str) -> Any:
        """The module twin's properties, or None when the device or the module does not exist."""
        with map_exceptions(self.step, f"reading the {module_id} twin of {self.label}"):
            twin = get_or_none(lambda: self.registry_manager.get_module_twin(self.device_id, module_id))
        return twin.properties if twin is not None else None

    # -- the deployment -----------------------------------------------------------------------------
    def desired(self, *, record: bool = False) -> dict:
        return manifests.build_manifest(self._ctx, record=record)

    def validate(self, deployment: dict) -> None:
        manifests.validate_manifest(deployment)

    def modules(self, deployment: dict) -> list[str]:
        return manifests.module_names(deployment)

    def images(self, deployment: dict) -> dict[str, str | None]:
        return manifests.images_of(deployment)

    def current(self, parts: Iterable[str] | None = None) -> dict | None:
        found = {}
        for module_id in parts if parts is not None else (EDGE_AGENT, EDGE_HUB):
            properties = self._twin_properties(module_id)
            desired = {k: v for k, v in ((properties.desired if properties else None) or {}).items()
                       if k not in _TWIN_METADATA}
            if desired:
                found[module_id] = {"properties.desired": desired}
        return found or None

    def differences(self, current: dict | None, desired: dict) -> list[str]:
        """Which parts (and, one level down, which modules or sections) differ."""
        if not current:
            return [NO_DEPLOYMENT]
        found = []
        for part, content in desired.items():
            have = (current.get(part) or {}).get("properties.desired") or {}
            want = content.get("properties.desired") or {}
            found += _part_differences(part, have, want)
        return found

    def starts_new_registry(self, differences: list[str]) -> bool:
        return bool({NO_DEPLOYMENT, f"{EDGE_AGENT} modules.{CONNECTED_REGISTRY_MODULE}"} & set(differences))

    def apply(self, deployment: dict) -> None:
        from azure.iot.hub.models import ConfigurationContent

        hub = readers.hub_access(self._ctx)
        assert hub is not None  # required: a missing hub raised
        with map_exceptions(self.step, f"applying the deployment to {self.label}"):
            self._ctx.clients.configuration_manager(hub).apply_configuration_on_edge_device(
                self.device_id, ConfigurationContent(modules_content=deployment))

    # -- what the device reports ------------------------------------------------------------------------
    def _agent(self) -> tuple[dict, dict]:
        properties = self._twin_properties(EDGE_AGENT)
        if properties is None:
            return {}, {}
        return properties.desired or {}, properties.reported or {}

    def status(self) -> HostStatus:
        desired, reported = self._agent()
        version = desired.get("$version")
        wanted = _wanted_images(desired)
        running = _running(reported)
        modules = {name: (running.get(name) or {}).get("runtimeStatus", "absent") for name in wanted}
        last = reported.get("lastDesiredStatus") or {}
        if not wanted:
            return HostStatus(False, NO_DEPLOYMENT, version, modules)
        if reported.get("lastDesiredVersion") != version:
            return HostStatus(False, f"the device has not applied desired version {version} yet "
                                     f"(it reports {reported.get('lastDesiredVersion')})", version, modules)
        if last.get("code") != 200:
            return HostStatus(False, f"lastDesiredStatus {last.get('code')}: {last.get('description', '')}",
                              version, modules)
        stale = [n for n, image in wanted.items() if ((running.get(n) or {}).get("settings") or {}).get("image")
                 != image]
        waiting = [n for n, state in modules.items() if state != "running"]
        if waiting or stale:
            return HostStatus(False, f"modules not running the desired image: {', '.join(sorted(set(waiting + stale)))}",
                              version, modules)
        return HostStatus(True, f"desired version {version} applied, every module running", version, modules)

    def diagnose(self) -> list[str]:
        with map_exceptions(self.step, f"reading {self.label}"):
            device = readers.device_identity(self.registry_manager, self.device_id)
        if device is None:
            return [f"{self.label} does not exist"]
        findings = []
        if device.connection_state != "Connected":
            findings.append(f"{self.label} is {device.connection_state}: has it been provisioned?")
        desired, reported = self._agent()
        last = reported.get("lastDesiredStatus") or {}
        if last:
            findings.append(f"$edgeAgent lastDesiredStatus {last.get('code')}: {last.get('description') or 'ok'} "
                            f"(desired version {desired.get('$version')}, applied {reported.get('lastDesiredVersion')})")
        running = _running(reported)
        return findings + [finding for name, image in _wanted_images(desired).items()
                           if (finding := _module_finding(name, image, running.get(name)))] + self._parent_findings()

    def _parent_findings(self) -> list[str]:
        """A nested device pulls its modules from its parent connected registry: the module
        repositories the parent does not sync, named."""
        parent = self._ctx.site.connected_registry.parent
        if self._ctx.site.device.parent_device is None or parent is None:
            return []
        with map_exceptions(self.step, f"reading the sync scope map of parent connected registry '{parent}'"):
            scope_map = readers.scope_map(self._ctx, names.sync_scope_map_name(parent))
        actions = set(scope_map.actions or []) if scope_map is not None else set()
        return [f"parent connected registry '{parent}' does not sync repository '{repo}', which this device pulls "
                f"from $upstream: set connected_registry.sync_module_images: true (or add '{repo}' to the "
                "parent's repositories)"
                for repo in deployed_module_repositories(self._ctx)
                if f"repositories/{repo}/content/read" not in actions]

    # -- teardown ----------------------------------------------------------------------------------------
    def removal(self) -> list[Change]:
        """The device identity (none to delete when the hub is gone: its devices went with it) and
        the device's connection string in the secret store."""
        changes = []
        device = None
        if self._hub() is not None:
            with map_exceptions(self.step, f"reading {self.label}"):
                device = readers.device_identity(self.registry_manager, self.device_id)
        if device is not None:
            changes.append(deletion(self.step, "device identity", self.device_id,
                                    f"delete device identity '{self.device_id}' from IoT hub "
                                    f"'{self._ctx.site.hub.name}'",
                                    lambda: self.registry_manager.delete_device(self.device_id)))
        return changes + secret_deletions(self._ctx, [names.DEVICE_SECRET])


def _part_differences(part: str, have: dict, want: dict) -> list[str]:
    """One part's differing keys; inside modules and systemModules, the differing modules."""
    found = []
    for key in sorted(set(have) | set(want)):
        inner_have, inner_want = have.get(key), want.get(key)
        if inner_have == inner_want:
            continue
        if isinstance(inner_have, dict) and isinstance(inner_want, dict) and key in manifests.MODULE_GROUPS:
            found += [f"{part} {key}.{name}" for name in sorted(set(inner_have) | set(inner_want))
                      if inner_have.get(name) != inner_want.get(name)]
        else:
            found.append(f"{part} {key}")
    return found


def _running(reported: dict) -> dict:
    return {**(reported.get("systemModules") or {}), **(reported.get("modules") or {})}


def _module_finding(name: str, image: str | None, module: dict | None) -> str | None:
    if module is None:
        return f"module {name}: not reported yet"
    if module.get("runtimeStatus") != "running":
        return f"module {name} is in {module.get('runtimeStatus')}: {module.get('statusDescription') or 'no description'}"
    if (module.get("settings") or {}).get("image") != image:
        return f"module {name} still runs {module.get('settings', {}).get('image')}"
    return None


def _wanted_images(desired: dict) -> dict[str, str | None]:
    """Module name -> image, for every module the desired deployment runs."""
    wanted = {}
    for group in manifests.MODULE_GROUPS:
        for name, body in (desired.get(group) or {}).items():
            if isinstance(body, dict) and body.get("status", "running") == "running":
                wanted[name] = (body.get("settings") or {}).get("image")
    return wanted
