"""An IoT Edge device as a deployment host: its deployment is the desired properties of its
`$edgeAgent` and `$edgeHub` module twins, applied with applyConfigurationContent (what
`az iot edge set-modules` sends), and its state is what `$edgeAgent` reports.

The documented success rule for a deployment: `$edgeAgent` reports `lastDesiredVersion` equal to
the desired `$version` and `lastDesiredStatus.code` 200, and every module the deployment names
reports `runtimeStatus` running. crlib also requires each module's reported image to be the one
desired, so a module still running an older image does not count.
"""

from __future__ import annotations

from collections.abc import Iterable

from azure.iot.hub.models import ConfigurationContent
from msrest.exceptions import HttpOperationError

from . import HostStatus

EDGE_AGENT = "$edgeAgent"
EDGE_HUB = "$edgeHub"
_TWIN_METADATA = ("$version", "$metadata")


def _not_found(exc: HttpOperationError) -> bool:
    return exc.response is not None and exc.response.status_code == 404


class IoTEdgeHost:
    def __init__(self, clients, hub_connection_string: str, device_id: str, *, hub_name: str):
        self._clients = clients
        self._connection_string = hub_connection_string
        self.device_id = device_id
        self.label = f"IoT Edge device '{device_id}' in IoT hub '{hub_name}'"
        fields = dict(part.split("=", 1) for part in hub_connection_string.split(";") if "=" in part)
        self.resource_id = f"{fields.get('HostName', hub_name)}/devices/{device_id}"
        self._registry_manager = None

    @property
    def registry_manager(self):
        if self._registry_manager is None:
            self._registry_manager = self._clients.registry_manager(self._connection_string)
        return self._registry_manager

    def _twin_properties(self, module_id: str):
        """The module twin's properties, or None when the device or the module does not exist."""
        try:
            return self.registry_manager.get_module_twin(self.device_id, module_id).properties
        except HttpOperationError as exc:
            if _not_found(exc):
                return None
            raise

    def current(self, parts: Iterable[str]) -> dict | None:
        found = {}
        for module_id in parts:
            properties = self._twin_properties(module_id)
            desired = {k: v for k, v in ((properties.desired if properties else None) or {}).items()
                       if k not in _TWIN_METADATA}
            if desired:
                found[module_id] = {"properties.desired": desired}
        return found or None

    def apply(self, manifest: dict) -> None:
        self._clients.configuration_manager(self._connection_string).apply_configuration_on_edge_device(
            self.device_id, ConfigurationContent(modules_content=manifest))

    def _agent(self) -> tuple[dict, dict]:
        properties = self._twin_properties(EDGE_AGENT)
        if properties is None:
            return {}, {}
        return properties.desired or {}, properties.reported or {}

    def status(self) -> HostStatus:
        desired, reported = self._agent()
        version = desired.get("$version")
        wanted = _wanted_images(desired)
        running = {**(reported.get("systemModules") or {}), **(reported.get("modules") or {})}
        modules = {name: (running.get(name) or {}).get("runtimeStatus", "absent") for name in wanted}
        last = reported.get("lastDesiredStatus") or {}
        if not wanted:
            return HostStatus(False, "no deployment yet", version, modules)
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
        findings = []
        try:
            device = self.registry_manager.get_device(self.device_id)
        except HttpOperationError as exc:
            if not _not_found(exc):
                raise
            return [f"{self.label} does not exist"]
        if device.connection_state != "Connected":
            findings.append(f"{self.label} is {device.connection_state}: has it been provisioned?")
        desired, reported = self._agent()
        last = reported.get("lastDesiredStatus") or {}
        if last:
            findings.append(f"$edgeAgent lastDesiredStatus {last.get('code')}: {last.get('description') or 'ok'} "
                            f"(desired version {desired.get('$version')}, applied {reported.get('lastDesiredVersion')})")
        running = {**(reported.get("systemModules") or {}), **(reported.get("modules") or {})}
        for name, image in _wanted_images(desired).items():
            module = running.get(name)
            if module is None:
                findings.append(f"module {name}: not reported yet")
            elif module.get("runtimeStatus") != "running":
                findings.append(f"module {name} is in {module.get('runtimeStatus')}: "
                                f"{module.get('statusDescription') or 'no description'}")
            elif (module.get("settings") or {}).get("image") != image:
                findings.append(f"module {name} still runs {module.get('settings', {}).get('image')}")
        return findings


def _wanted_images(desired: dict) -> dict[str, str]:
    """Module name -> image, for every module the desired deployment runs."""
    wanted = {}
    for group in ("systemModules", "modules"):
        for name, body in (desired.get(group) or {}).items():
            if isinstance(body, dict) and body.get("status", "running") == "running":
                wanted[name] = (body.get("settings") or {}).get("image")
    return wanted
