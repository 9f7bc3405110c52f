"""A fleet's inventory: one file, many sites on one registry and one hub (`parameters/fleet-*.yaml`).

    fleet: stores                 # the fleet's name: its records and its shared secrets are named after it
    shared:                       # one registry, one hub, one target: no site may set these
      target: {kind: sandbox}
      resource_group: crlib-stores
      hub: {name: stores-hub}
      registry: {name: storesregistry}
      images: {...}
      secrets: {...}              # one store for the fleet (entries are still named per site)
      records: {...}              # one signing key for the fleet's change records
    defaults:                     # any other site parameter; `{site}` in a value is the site's name
      connected_registry: {mode: ReadOnly, repositories: [hello-world]}
      device: {id: "{site}-edge"}
      client_access: {tokens: [{name: "{site}-client", scope_map: "{site}-clients"}], ...}
    sites:
      - site: store-001
        connected_registry: {name: store001}
      - site: store-002
        connected_registry: {name: store002, parent: store001}   # nested: runs after store001 is Online

Each site is `shared`, then `defaults`, then its own entry, merged key by key (a list replaces a
list), and validated as a single site's parameter file is (crlib/params.py). Every site is
validated before anything is written, and every problem of every site is reported at once, each
naming the file and line, the site and the field. Across sites, the names that are one resource
per registry, hub or cluster must differ: sites, devices, connected registries, client tokens and
scope maps, Arc extensions.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .errors import ParameterError
from .params import Site, _problems, read_document

# What every site of a fleet shares; a site entry or `defaults` that sets one is refused.
SHARED_KEYS = ("target", "subscription_id", "resource_group", "location", "hub", "registry", "images", "secrets",
               "records")
TOP_KEYS = ("fleet", "shared", "defaults", "sites")
PLACEHOLDER = "{site}"


@dataclass(frozen=True)
class Fleet:
    """A validated inventory: its name, its file, and its sites in the file's order."""

    name: str
    path: Path
    sites: tuple[Site, ...]

    def site(self, name: str) -> Site:
        for site in self.sites:
            if site.site == name:
                return site
        raise ParameterError("--sites", f"'{name}' is not a site of fleet {self.name} "
                                        f"(its sites: {', '.join(s.site for s in self.sites[:10])}"
                                        f"{' ...' if len(self.sites) > 10 else ''})")

    def select(self, names: Iterable[str] | None) -> list[Site]:
        """The named sites (all when none), in the inventory's order."""
        if not names:
            return list(self.sites)
        wanted = {self.site(name).site for name in names}
        return [s for s in self.sites if s.site in wanted]

    @property
    def shared_site(self) -> Site:
        """The site the shared steps (prerequisites, group, hub, endpoint, imports) run as: the first
        site, named after the fleet, so the secrets those steps keep are the fleet's, not a site's."""
        return self.sites[0].model_copy(update={"site": self.name})

    def parent_of(self, site: Site) -> Site | None:
        """The site whose connected registry is this site's parent, when the inventory holds it."""
        parent = site.connected_registry.parent
        if parent is None:
            return None
        return next((s for s in self.sites if s.connected_registry.name.lower() == parent.lower()), None)


def _substitute(value: Any, name: str) -> Any:
    if isinstance(value, str):
        return value.replace(PLACEHOLDER, name)
    if isinstance(value, list):
        return [_substitute(item, name) for item in value]
    if isinstance(value, dict):
        return {_substitute(key, name): _substitute(item, name) for key, item in value.items()}
    return value


def _merge(base: dict, over: dict) -> dict:
    """`over` on `base`, key by key; a mapping merges into a mapping, anything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_inventory(path: Path | str) -> Fleet:
    """Read and validate an inventory; raise one ParameterError listing every problem of every site."""
    path = Path(path)
    data, lines = read_document(path)

    def at(*keys: object) -> str:
        parts = tuple(str(k) for k in keys)
        known = next((lines[parts[:n]] for n in range(len(parts), 0, -1) if parts[:n] in lines), None)
        return f"{path}:{known}" if known else str(path)

    if not isinstance(data, dict):
        raise ParameterError(str(path), "is not a fleet inventory (fleet:, shared:, defaults:, sites:)")
    unknown = sorted(set(data) - set(TOP_KEYS))
    if unknown:
        raise ParameterError(unknown[0], f"is not an inventory key (they are {', '.join(TOP_KEYS)}); a single "
                                         "site's parameter file is run with crlib run", where=at(unknown[0]))
    name = data.get("fleet")
    if not isinstance(name, str) or not _site_name_ok(name):
        raise ParameterError("fleet", "is required: the fleet's name (1-41 lowercase letters, digits and '-')",
                             where=at("fleet"))
    shared, defaults, entries = data.get("shared") or {}, data.get("defaults") or {}, data.get("sites")
    for key, value in (("shared", shared), ("defaults", defaults)):
        if not isinstance(value, dict):
            raise ParameterError(key, "must be a mapping of site parameters", where=at(key))
    if not isinstance(entries, list) or not entries:
        raise ParameterError("sites", "must list at least one site (- site: <name> ...)", where=at("sites"))
    problems: list[tuple[str | None, str, str]] = []
    problems += [(at("shared", k), f"shared.{k}", "is not shared by a fleet's sites; set it under defaults: or "
                                                  "in a site") for k in shared if k not in SHARED_KEYS and k != "site"]
    if "site" in shared:
        problems.append((at("shared", "site"), "shared.site", "each site names itself under sites:"))
    problems += [(at("defaults", k), f"defaults.{k}", "is shared by every site of a fleet; set it under shared:")
                 for k in defaults if k in SHARED_KEYS]
    if problems:
        raise ParameterError(problems[0][1], problems[0][2], problems=problems)

    sites: list[Site] = []
    for index, entry in enumerate(entries):
        label = entry.get("site") if isinstance(entry, dict) and isinstance(entry.get("site"), str) else f"#{index + 1}"
        if not isinstance(entry, dict):
            problems.append((at("sites", index), f"site {label}", "must be a mapping (- site: <name> ...)"))
            continue
        for key in entry:
            if key in SHARED_KEYS:
                problems.append((at("sites", index, key), f"site {label}: {key}",
                                 "is shared by every site of a fleet; set it under shared:"))
        merged = _merge(_merge(shared, _substitute(defaults, str(label))), entry)
        try:
            sites.append(Site.model_validate(merged))
        except ValidationError as exc:
            for field, message in _problems(exc):
                parts = field.split(".")
                where = next((at(*root, *parts) for root in (("sites", index), ("defaults",), ("shared",))
                              if _has(data, *root, *parts[:1])), at("sites", index))
                problems.append((where, f"site {label}: {field}", message))
    if not problems:
        problems = _cross_site_problems(sites, entries, at)
    if problems:
        raise ParameterError(problems[0][1], problems[0][2], problems=problems)
    return Fleet(name, path, tuple(sites))


def _site_name_ok(name: str) -> bool:
    import re

    return bool(re.fullmatch(r"[a-z0-9][a-z0-9-]{0,40}", name))


def _has(data: Any, *keys: object) -> bool:
    for key in keys:
        found = (isinstance(data, dict) and key in data) or \
            (isinstance(data, list) and isinstance(key, int) and key < len(data))
        if found:
            data = data[key]
        else:
            return False
    return True


def _cross_site_problems(sites: list[Site], entries: list, at: Any) -> list[tuple[str | None, str, str]]:
    """Names that are one resource per registry, hub or cluster, used by two sites; parents that
    form a cycle; a nested device whose parent device is not its parent site's."""
    problems: list[tuple[str | None, str, str]] = []

    def claim(kind: str, field: str, key: str, index: int, owners: dict[str, str]) -> None:
        site = sites[index].site
        if key in owners:
            problems.append((at("sites", index, *field.split(".")), f"site {site}: {field}",
                             f"{kind} '{key}' is also site {owners[key]}'s; each site needs its own"))
        else:
            owners[key] = site

    owners: dict[str, dict[str, str]] = {k: {} for k in ("site", "device", "cr", "token", "map", "ext")}
    for index, site in enumerate(sites):
        claim("the site name", "site", site.site, index, owners["site"])
        if site.host.kind == "iotedge":
            claim("the device", "device.id", site.device.id.lower(), index, owners["device"])
        elif site.host.arc is not None:
            arc = site.host.arc
            claim("the extension", "host.arc.extension_name",
                  f"{arc.cluster_resource_group}/{arc.cluster}/{arc.extension_name}".lower(), index, owners["ext"])
        claim("the connected registry", "connected_registry.name", site.connected_registry.name.lower(), index,
              owners["cr"])
        for token in site.client_access.tokens:
            claim("the client token", "client_access.tokens", token.name.lower(), index, owners["token"])
        for scope_map in site.client_access.scope_maps:
            claim("the scope map", "client_access.scope_maps", scope_map.lower(), index, owners["map"])
    by_registry = {s.connected_registry.name.lower(): s for s in sites}
    for index, site in enumerate(sites):
        seen, parent = {site.connected_registry.name.lower()}, site.connected_registry.parent
        while parent is not None and parent.lower() in by_registry:
            if parent.lower() in seen:
                problems.append((at("sites", index, "connected_registry", "parent"),
                                 f"site {site.site}: connected_registry.parent", "the parents form a cycle"))
                break
            seen.add(parent.lower())
            parent_site = by_registry[parent.lower()]
            if parent_site is by_registry.get((site.connected_registry.parent or "").lower()) \
                    and site.device.parent_device and parent_site.host.kind == "iotedge" \
                    and site.device.parent_device.lower() != parent_site.device.id.lower():
                problems.append((at("sites", index, "device", "parent_device"),
                                 f"site {site.site}: device.parent_device",
                                 f"'{site.device.parent_device}' is not the device of its parent connected registry's "
                                 f"site {parent_site.site} ('{parent_site.device.id}')"))
            parent = parent_site.connected_registry.parent
    return problems
