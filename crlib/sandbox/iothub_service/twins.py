"""Device and module twins: tags, desired and reported properties with their $metadata and $version.

A twin lives in its identity's document, under "twin". These functions change it in place and
build the JSON IoT Hub returns; storing the document is the caller's business. Every change bumps
the twin's version (which its etag encodes); desired and reported changes bump their own $version
too, and stamp $metadata on each property they touch, as IoT Hub does.
"""

from __future__ import annotations

import base64
import re
import struct
from typing import Any

from .errors import argument_invalid

# A time IoT Hub reports for things that have not happened yet (a device that never connected).
NEVER = "0001-01-01T00:00:00Z"
MAX_DEPTH = 10
# Twin property names: no control characters, '.', '$' or space (IoT Hub's rule).
_BAD_NAME = re.compile(r"[\x00-\x1f\x7f-\x9f.$ ]")


def new_twin(now: str) -> dict:
    return {"tags": {}, "desired": {}, "desiredMeta": {"$lastUpdated": now}, "desiredVersion": 1,
            "reported": {}, "reportedMeta": {"$lastUpdated": now}, "reportedVersion": 1, "version": 1,
            "configurations": {}}


def etag(twin: dict) -> str:
    return base64.b64encode(struct.pack(">Q", twin["version"])).decode()


def check_properties(section: str, value: object, depth: int = 1) -> dict:
    """Refuse what IoT Hub refuses in tags and properties: non-objects, bad names, deep nesting."""
    if not isinstance(value, dict):
        raise argument_invalid(f"{section} must be a JSON object")
    if depth > MAX_DEPTH:
        raise argument_invalid(f"{section} nests deeper than {MAX_DEPTH} levels")
    for key, child in value.items():
        if not key or _BAD_NAME.search(key) or len(key.encode()) > 1024:
            raise argument_invalid(f"{section}: the property name '{key}' is not allowed (no '.', '$', spaces "
                                   "or control characters, at most 1 KB)")
        if isinstance(child, dict):
            check_properties(f"{section}.{key}", child, depth + 1)
    return value


def _merge(target: dict, patch: dict) -> None:
    """JSON merge patch: objects merge, null deletes, anything else replaces."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = _copy_without_nulls(value) if isinstance(value, dict) else value


def _copy_without_nulls(value: dict) -> dict:
    return {k: _copy_without_nulls(v) if isinstance(v, dict) else v for k, v in value.items() if v is not None}


def _stamp(meta: dict, patch: dict, now: str, version: int | None) -> None:
    """Record in $metadata when (and, for desired properties, in which $version) each property in
    a patch last changed."""
    meta["$lastUpdated"] = now
    if version is not None:
        meta["$lastUpdatedVersion"] = version
    for key, value in patch.items():
        if value is None:
            meta.pop(key, None)
        elif isinstance(value, dict):
            existing = meta.get(key)
            child = existing if isinstance(existing, dict) else {}
            _stamp(child, value, now, version)
            meta[key] = child
        else:
            meta[key] = {"$lastUpdated": now} | ({"$lastUpdatedVersion": version} if version is not None else {})


def update(twin: dict, *, tags: dict | None, desired: dict | None, now: str) -> None:
    """A service-side PATCH: merge tags and desired properties."""
    if tags is not None:
        _merge(twin["tags"], check_properties("tags", tags))
    if desired is not None:
        _merge(twin["desired"], check_properties("properties.desired", desired))
        twin["desiredVersion"] += 1
        _stamp(twin["desiredMeta"], desired, now, twin["desiredVersion"])
    twin["version"] += 1


def replace(twin: dict, *, tags: dict, desired: dict, now: str) -> None:
    """A service-side PUT: tags and desired properties become exactly what was sent."""
    twin["tags"] = _copy_without_nulls(check_properties("tags", tags))
    apply_content(twin, {"properties.desired": desired}, now)


def _section(path: list[str], value: object) -> Any:
    """{"a": {"b": value}} for the path ["a", "b"]."""
    for name in reversed(path):
        value = {name: value}
    return value


def apply_content(twin: dict, content: dict, now: str) -> None:
    """Apply one module's (or a device's) configuration content, in one desired $version.

    "properties.desired" replaces all desired properties; "properties.desired.a.b" replaces just
    that section, as layered deployments and device configurations do.
    """
    version = twin["desiredVersion"] + 1
    for key in sorted(content, key=lambda k: k != "properties.desired"):
        if key == "properties.desired":
            twin["desired"] = _copy_without_nulls(check_properties(key, content[key]))
            twin["desiredMeta"] = {}
            _stamp(twin["desiredMeta"], twin["desired"], now, version)
            continue
        path = key.removeprefix("properties.desired.").split(".")
        section = check_properties("properties.desired", _section(path, content[key]))
        removal = _section(path, None)  # the section is replaced, not merged into
        _merge(twin["desired"], removal)
        _merge(twin["desired"], section)
        _stamp(twin["desiredMeta"], removal, now, version)
        _stamp(twin["desiredMeta"], section, now, version)
    twin["desiredVersion"] = version
    twin["version"] += 1


def report(twin: dict, reported: dict, now: str) -> int:
    """A device-side update of reported properties; returns their new $version."""
    _merge(twin["reported"], check_properties("properties.reported", reported))
    twin["reportedVersion"] += 1
    _stamp(twin["reportedMeta"], reported, now, None)
    twin["version"] += 1
    return twin["reportedVersion"]


def properties_view(twin: dict) -> dict:
    return {
        "desired": twin["desired"] | {"$metadata": twin["desiredMeta"], "$version": twin["desiredVersion"]},
        "reported": twin["reported"] | {"$metadata": twin["reportedMeta"], "$version": twin["reportedVersion"]},
    }


def view(doc: dict) -> dict:
    """The twin JSON of a device or module identity document."""
    twin = doc["twin"]
    out = {"deviceId": doc["deviceId"]}
    if "moduleId" in doc:
        out["moduleId"] = doc["moduleId"]
    out |= {
        "etag": etag(twin), "deviceEtag": doc["etag"], "status": doc.get("status", "enabled"),
        "statusUpdateTime": doc.get("statusUpdatedTime", NEVER), "connectionState": doc["connectionState"],
        "lastActivityTime": doc["lastActivityTime"], "cloudToDeviceMessageCount": doc["cloudToDeviceMessageCount"],
        "authenticationType": doc["authentication"]["type"], "version": twin["version"],
    }
    if "x509Thumbprint" in doc["authentication"]:
        out["x509Thumbprint"] = doc["authentication"]["x509Thumbprint"]
    for key in ("capabilities", "deviceScope", "parentScopes"):
        if key in doc:
            out[key] = doc[key]
    if twin["tags"]:
        out["tags"] = twin["tags"]
    out["properties"] = properties_view(twin)
    if twin["configurations"]:
        out["configurations"] = twin["configurations"]
    return out
