"""Configurations: IoT Edge deployments (modulesContent) and automatic device and module
configurations (deviceContent, moduleContent), how they reach twins, and their metrics.

IoT Hub applies configurations on its own, asynchronously. The sandbox does it at once: after
any change to configurations or twins, each device (for deployments: each IoT Edge device; for
module configurations: each module) gets the highest-priority configuration of each kind whose
target condition it matches (the most recently created one on a tie). The winner's content is
applied once, and the twin that carries the statuses ($edgeAgent's for deployments) marks the
winner "Applied" and the other matches "Targeted", which is what the system metrics count.

A hub holds at most MAX_CONFIGURATIONS of them (MAX_CONFIGURATIONS_FREE on a free hub). "IoT Hub
quotas and throttling", Other limits (articles/iot-hub/iot-hub-devguide-quotas-throttling.md):
"Automatic device and module configurations | 100 configurations per basic or standard SKU hub. 10
configurations per free SKU hub." and "IoT Edge automatic deployments | ... 100 deployments
(including layered deployments) per basic or standard SKU hub. 10 deployments per free SKU hub."
The sandbox counts both kinds together, as one /configurations collection: the article lists them
apart, but a hub refusing a 101st automatic configuration answered "ErrorCode:
ConfigurationCountLimitExceeded;Number of deployments exceed the maximum quota 100 for this IotHub."
(MicrosoftDocs/azure-docs issue 94528), which is the harsher reading. A refusal is 413
ConfigurationCountLimitExceeded (413101 in "Troubleshoot Azure IoT Hub error codes"). Content
applied to one device (applyConfigurationContent, `az iot edge set-modules`) is no configuration
and counts for nothing.
"""

from __future__ import annotations

import base64
import re

from ..core.errors import SandboxError
from . import models, twins
from .errors import (
    argument_invalid,
    configuration_count_limit_exceeded,
    configuration_not_found,
    precondition_failed,
)
from .query import parse_condition, parse_query

CONFIGURATION = "iothub.configuration"
KINDS = ("modulesContent", "deviceContent", "moduleContent")
# Configuration ids: up to 128 lower-case letters, digits and - : + % _ # * ? ! ( ) , = @ ; $ '
_ID = re.compile(r"^[a-z0-9\-:+%_#*?!(),=@;$']{1,128}$")
# Module configurations name their source in the target condition, as IoT Hub requires.
_MODULES_PREFIX = re.compile(r"^\s*from\s+devices\.modules\s+where\s+", re.I)
MAX_LISTED = 20  # GET /configurations answers at most 20, whatever top asks for
MAX_CONFIGURATIONS = 100  # per basic or standard hub, configurations and deployments together
MAX_CONFIGURATIONS_FREE = 10  # per free (F1) hub


def config_key(hub_id: str, config_id: str) -> str:
    return f"{hub_id}/configurations/{config_id}"


# -- content ----------------------------------------------------------------------------------
def check_twin_content(where: str, content: object) -> dict:
    """One twin's content: "properties.desired" (all of it) and/or "properties.desired.<section>"."""
    if not isinstance(content, dict) or not content:
        raise argument_invalid(f"{where} must be a non-empty object")
    for key, value in content.items():
        if key == "properties.desired":
            if not isinstance(value, dict):
                raise argument_invalid(f"{where}['properties.desired'] must be an object")
        elif not key.startswith("properties.desired.") or "" in key.split("."):
            raise argument_invalid(f"{where}: '{key}' is neither 'properties.desired' nor "
                                   "'properties.desired.<section>'")
    return content


def check_modules_content(modules_content: object, *, whole_manifest: bool) -> dict:
    """Per-module content. A whole manifest (what applyConfigurationContent takes) must set the
    desired properties of both IoT Edge system modules."""
    if not isinstance(modules_content, dict) or not modules_content:
        raise argument_invalid("modulesContent must be a non-empty object")
    for module_id, content in modules_content.items():
        models.check_id("module", module_id)
        check_twin_content(f"modulesContent['{module_id}']", content)
    if whole_manifest:
        for module_id in models.SYSTEM_MODULES:
            if "properties.desired" not in modules_content.get(module_id, {}):
                raise argument_invalid(f"modulesContent must set {module_id}'s properties.desired")
    return modules_content


def content_kind(content: object) -> str:
    if not isinstance(content, dict):
        raise argument_invalid("content must be an object")
    present = [k for k in KINDS if content.get(k)]
    if len(present) != 1:
        raise argument_invalid("content must have exactly one of modulesContent, deviceContent or moduleContent")
    kind = present[0]
    if kind == "modulesContent":
        check_modules_content(content[kind], whole_manifest=False)
    else:
        check_twin_content(kind, content[kind])
    return kind


def apply_modules_content(sandbox, hub_id: str, device_id: str, modules_content: dict) -> None:
    """Replace (or patch, for a section) each named module twin's desired properties. Modules the
    content names that do not exist yet are created, managed by IoT Edge."""
    now = models.now(sandbox)
    for module_id, content in modules_content.items():
        doc = models.ensure_module(sandbox, hub_id, device_id, module_id)
        twins.apply_content(doc["twin"], content, now)
        models.save_module(sandbox.store, hub_id, doc)


def apply_on_edge_device(sandbox, hub_id: str, device_id: str, content: object) -> None:
    """POST /devices/{id}/applyConfigurationContent: what `az iot edge set-modules` sends."""
    device = models.get_device(sandbox.store, hub_id, device_id)
    if not device["capabilities"].get("iotEdge"):
        raise argument_invalid(f"Device {device_id} is not an IoT Edge device")
    if not isinstance(content, dict) or not content.get("modulesContent"):
        raise argument_invalid("The content must have modulesContent")
    if content.get("moduleContent"):
        raise argument_invalid("moduleContent reaches modules through a configuration's targetCondition; "
                               "apply modulesContent to an edge device")
    modules_content = check_modules_content(content["modulesContent"], whole_manifest=True)
    device_content = content.get("deviceContent")
    if device_content:
        check_twin_content("deviceContent", device_content)
    apply_modules_content(sandbox, hub_id, device_id, modules_content)
    if device_content:
        twins.apply_content(device["twin"], device_content, models.now(sandbox))
        models.save_device(sandbox.store, hub_id, device)
    reconcile(sandbox, hub_id)


# -- configurations ---------------------------------------------------------------------------
def _condition(kind: str, text: str):
    return parse_condition(_MODULES_PREFIX.sub("", text) if kind == "moduleContent" else text)


def _etag(revision: int) -> str:
    return base64.b64encode(str(revision).encode()).decode()


def configuration_limit(store, hub_id: str) -> int:
    hub = store.get(hub_id)
    return MAX_CONFIGURATIONS_FREE if hub and hub.get("sku", {}).get("name") == "F1" else MAX_CONFIGURATIONS


def get(store, hub_id: str, config_id: str) -> dict:
    doc = store.get(config_key(hub_id, config_id))
    if doc is None:
        raise configuration_not_found(config_id)
    return doc


def put(sandbox, hub_id: str, config_id: str, body: dict, if_match: str | None) -> tuple[dict, bool]:
    """Create a configuration, or update it when If-Match allows; returns (document, created)."""
    if not _ID.match(config_id):
        raise argument_invalid(f"The configuration id '{config_id}' is invalid: use up to 128 lower-case letters, "
                               "digits and - : + % _ # * ? ! ( ) , = @ ; $ '")
    if body.get("id") not in (None, config_id):
        raise argument_invalid(f"The id in the body ('{body['id']}') does not match the URL ('{config_id}')")
    kind = content_kind(body.get("content"))
    target = body.get("targetCondition")
    if not isinstance(target, str) or not target.strip():
        raise argument_invalid("targetCondition is required")
    _condition(kind, target)
    priority = body.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool) or priority < 0:
        raise argument_invalid("priority must be a non-negative integer")
    labels = models.section(body, "labels")
    if not all(isinstance(v, str) for v in labels.values()):
        raise argument_invalid("labels must be an object of strings")
    queries = models.section(models.section(body, "metrics"), "queries")
    for query in queries.values():
        if not isinstance(query, str):
            raise argument_invalid("metrics.queries must map names to query strings")
        parse_query(query)

    store, now = sandbox.store, models.now(sandbox)
    doc = store.get(config_key(hub_id, config_id))
    created = doc is None
    if created:
        if if_match is not None:
            raise configuration_not_found(config_id)
        limit = configuration_limit(store, hub_id)
        if len(store.children(hub_id, CONFIGURATION)) >= limit:
            raise configuration_count_limit_exceeded(limit)
        doc = {"id": config_id, "schemaVersion": body.get("schemaVersion") or "1.0", "content": body["content"],
               "createdTimeUtc": now, "_sandbox": {"revision": 0, "kind": kind}}
    else:
        if if_match is None:
            raise SandboxError(409, "ConfigurationAlreadyExists", f"Configuration {config_id} already exists")
        if not models.matches_etag(if_match, doc["etag"]):
            raise precondition_failed(f"configuration {config_id}")
        if body["content"] != doc["content"]:
            raise argument_invalid(f"The content of configuration {config_id} cannot change; create a new "
                                   "configuration instead")
    doc["_sandbox"]["revision"] += 1
    doc.update(labels=labels, targetCondition=target, priority=priority, metrics={"queries": queries},
               lastUpdatedTimeUtc=now, etag=_etag(doc["_sandbox"]["revision"]))
    store.put(config_key(hub_id, config_id), CONFIGURATION, doc, parent=hub_id)
    reconcile(sandbox, hub_id)
    return doc, created


def delete(sandbox, hub_id: str, config_id: str, if_match: str | None) -> None:
    doc = get(sandbox.store, hub_id, config_id)
    if not models.matches_etag(if_match, doc["etag"]):
        raise precondition_failed(f"configuration {config_id}")
    sandbox.store.delete(config_key(hub_id, config_id))
    reconcile(sandbox, hub_id)


def listed(store, hub_id: str, top: int | None) -> list[dict]:
    docs = sorted(store.children(hub_id, CONFIGURATION), key=lambda c: c["createdTimeUtc"])
    return docs[: min(top or MAX_LISTED, MAX_LISTED)]


# -- metrics ----------------------------------------------------------------------------------
def system_queries(doc: dict) -> dict[str, str]:
    """The queries IoT Hub shows (and counts) as a configuration's system metrics."""
    kind, cid, target = doc["_sandbox"]["kind"], doc["id"], doc["targetCondition"].strip()
    if kind == "modulesContent":
        applied = (f"select deviceId from devices.modules where moduleId = '$edgeAgent' and "
                   f"configurations.[[{cid}]].status = 'Applied'")
        reported = applied + " and properties.desired.$version = properties.reported.lastDesiredVersion"
        return {
            "targetedCount": "select deviceId from devices where capabilities.iotEdge = true"
                             + ("" if target == "*" else f" and {target}"),
            "appliedCount": applied,
            "reportedSuccessfulCount": reported + " and properties.reported.lastDesiredStatus.code = 200",
            "reportedFailedCount": reported + " and properties.reported.lastDesiredStatus.code != 200",
        }
    source = "devices.modules" if kind == "moduleContent" else "devices"
    fields = "deviceId, moduleId" if kind == "moduleContent" else "deviceId"
    condition = _MODULES_PREFIX.sub("", target)
    return {
        "targetedCount": f"select {fields} from {source}" + ("" if condition == "*" else f" where {condition}"),
        "appliedCount": f"select {fields} from {source} where configurations.[[{cid}]].status = 'Applied'",
    }


def twin_rows(store, hub_id: str) -> tuple[list[dict], list[dict]]:
    """Every device twin and module twin of a hub: what queries run over."""
    return ([twins.view(d) for d in models.devices(store, hub_id)],
            [twins.view(m) for m in models.modules(store, hub_id)])


def view(doc: dict, rows: tuple[list[dict], list[dict]]) -> dict:
    def results(queries: dict[str, str]) -> dict[str, int]:
        return {name: len(parse_query(q).run(*rows)) for name, q in queries.items()}

    system = system_queries(doc)
    out = {k: doc[k] for k in ("id", "schemaVersion", "labels", "content", "targetCondition", "createdTimeUtc",
                               "lastUpdatedTimeUtc", "priority")}
    return out | {"systemMetrics": {"results": results(system), "queries": system},
                  "metrics": {"results": results(doc["metrics"]["queries"]), "queries": doc["metrics"]["queries"]},
                  "etag": doc["etag"]}


# -- application ------------------------------------------------------------------------------
def reconcile(sandbox, hub_id: str) -> None:
    """Bring every twin in line with the configurations that target it (see the module docstring)."""
    store, now = sandbox.store, models.now(sandbox)
    ranked = sorted(store.children(hub_id, CONFIGURATION), key=lambda c: (c["priority"], c["createdTimeUtc"]),
                    reverse=True)
    candidates = {kind: [(c, _condition(kind, c["targetCondition"])) for c in ranked
                         if c["_sandbox"]["kind"] == kind] for kind in KINDS}
    for device in models.devices(store, hub_id):
        key, row = models.device_key(hub_id, device["deviceId"]), twins.view(device)
        if winner := _settle(store, key, models.DEVICE, hub_id, row, candidates["deviceContent"]):
            _apply_to_twin(store, key, models.DEVICE, hub_id, winner["content"]["deviceContent"], now)
        if device["capabilities"].get("iotEdge"):
            agent = models.module_key(hub_id, device["deviceId"], models.EDGE_AGENT)
            if winner := _settle(store, agent, models.MODULE, key, row, candidates["modulesContent"]):
                apply_modules_content(sandbox, hub_id, device["deviceId"], winner["content"]["modulesContent"])
    for module in models.modules(store, hub_id):
        if module["moduleId"].startswith("$"):
            continue  # module configurations reach custom modules only
        key = models.module_key(hub_id, module["deviceId"], module["moduleId"])
        parent = models.device_key(hub_id, module["deviceId"])
        if winner := _settle(store, key, models.MODULE, parent, twins.view(module), candidates["moduleContent"]):
            _apply_to_twin(store, key, models.MODULE, parent, winner["content"]["moduleContent"], now)


def _settle(store, status_key: str, doc_type: str, parent: str, row: dict, candidates: list) -> dict | None:
    """Record on the target's twin the status of every configuration it matches; return the
    winner if its content has yet to be applied there."""
    matching = [config for config, condition in candidates if condition.matches(row)]
    winner = matching[0] if matching else None
    statuses = {c["id"]: {"status": "Applied" if c is winner else "Targeted"} for c in matching}
    # Content never changes, so a configuration applied once is identified by id and creation time.
    applied = [winner["id"], winner["createdTimeUtc"]] if winner else None
    doc = store.get(status_key)
    before = doc["_sandbox"].get("applied")
    if doc["twin"]["configurations"] != statuses or before != applied:
        doc["twin"]["configurations"] = statuses
        doc["_sandbox"]["applied"] = applied
        store.put(status_key, doc_type, doc, parent=parent)
    return winner if winner and before != applied else None


def _apply_to_twin(store, key: str, doc_type: str, parent: str, content: dict, now: str) -> None:
    doc = store.get(key)
    twins.apply_content(doc["twin"], content, now)
    store.put(key, doc_type, doc, parent=parent)
