"""Replay Microsoft's x-ms-examples against the sandbox and validate its answers with the spec.

Each example names an operation (found through the spec's x-ms-examples references), its
request parameters and the statuses the service may answer. The replay sends the request with
the example's values (the subscription swapped for the sandbox's), checks that the status is one
the example lists, and validates the body against the operation's response schema, resolving the
spec's $refs (including common-types) with `referencing`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

SPECS = Path(__file__).resolve().parent / "specs"
EXAMPLE_SUBSCRIPTION = re.compile(r"/subscriptions/[0-9a-fA-F-]{36}")

SPEC_FILES = [
    SPECS / "containerregistry/specification/containerregistry/resource-manager/Microsoft.ContainerRegistry/"
    "Registry/stable/2025-11-01/containerregistry.json",
    SPECS / "iothub-rm/specification/iothub/resource-manager/Microsoft.Devices/stable/2023-06-30/iothub.json",
    SPECS / "arc/specification/hybridkubernetes/resource-manager/Microsoft.Kubernetes/HybridKubernetes/stable/"
    "2024-01-01/connectedClusters.json",
    SPECS / "arc/specification/hybridkubernetes/resource-manager/Microsoft.Kubernetes/HybridKubernetes/stable/"
    "2026-05-01/connectedClusters.json",
    SPECS / "arc/specification/kubernetesconfiguration/resource-manager/Microsoft.KubernetesConfiguration/"
    "extensions/stable/2025-03-01/extensions.json",
    SPECS / "keyvault/specification/keyvault/data-plane/Microsoft.KeyVault/stable/7.5/keys.json",
]

# Examples that sit in a spec's examples folder but that its revision does not reference
# (tests/specs/README.md): replayed against the operation they exemplify.
UNREFERENCED = {
    "CreateExtensionWithIdentity.json": "Extensions_Create",
    "GetExtensionWithExtensionState.json": "Extensions_Get",
}


@dataclass
class Example:
    name: str
    path: Path
    spec: Path
    method: str
    template: str
    operation: dict
    parameters: dict
    responses: dict

    @property
    def operation_id(self) -> str:
        return self.operation["operationId"]


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _registry() -> Registry:
    resources = [(p.as_uri(), Resource.from_contents(_load(p), default_specification=DRAFT4))
                 for p in SPECS.rglob("*.json") if "examples" not in p.parts]
    return Registry().with_resources(resources)


_REGISTRY = None


def registry() -> Registry:
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = _registry()
    return _REGISTRY


def _find_example(spec: Path, ref: str) -> Path | None:
    candidate = (spec.parent / ref).resolve()
    if candidate.exists():
        return candidate
    # The IoT Hub spec keeps some of its examples in a sibling folder; the Arc specs keep theirs in
    # older or TypeSpec folders named by api-version. Look in the spec's own vendored tree, and when
    # the spec's api-version folder names several candidates, only at those.
    tree = SPECS / spec.relative_to(SPECS).parts[0]
    found = sorted(p for p in tree.rglob(Path(ref).name) if "examples" in p.parts)
    version = spec.parent.name
    if any(version in p.parts for p in found) or tree.name == "arc":
        found = [p for p in found if version in p.parts]
    return found[0] if found else None


def examples() -> list[Example]:
    """Every vendored example file, matched to the operation that references it."""
    out = []
    for spec_path in SPEC_FILES:
        spec = _load(spec_path)
        for template, ops in spec["paths"].items():
            for method, op in ops.items():
                if not isinstance(op, dict):
                    continue
                for title, ref in op.get("x-ms-examples", {}).items():
                    path = _find_example(spec_path, ref["$ref"])
                    if path is None:
                        continue
                    data = _load(path)
                    out.append(Example(title, path, spec_path, method.upper(), template, op,
                                       data["parameters"], data["responses"]))
                for name, operation_id in UNREFERENCED.items():
                    if op.get("operationId") != operation_id:
                        continue
                    path = spec_path.parent / "examples" / name
                    data = _load(path)
                    out.append(Example(name.removesuffix(".json"), path, spec_path, method.upper(), template, op,
                                       data["parameters"], data["responses"]))
    return sorted(out, key=lambda e: (e.path.name, str(e.spec)))


def example_id(example: Example, every: list[Example]) -> str:
    """The example's file name, with the spec's api-version when several specs share the name."""
    name = example.path.name.removesuffix(".json")
    if sum(e.path.name == example.path.name for e in every) > 1:
        name += "@" + example.spec.parent.name
    return name


def _resolve_param(spec_path: Path, param: dict) -> dict:
    if "$ref" not in param:
        return param
    resolver = registry().resolver(base_uri=spec_path.as_uri())
    return resolver.lookup(param["$ref"]).contents


def build_request(example: Example, subscription_id: str) -> tuple[str, str, dict, object]:
    """(method, path, query, json body) for an example, aimed at the sandbox's subscription."""
    params = json.loads(EXAMPLE_SUBSCRIPTION.sub(f"/subscriptions/{subscription_id}",
                                                  json.dumps(example.parameters)))
    params["subscriptionId"] = subscription_id
    path = example.template
    query: dict[str, str] = {}
    body = None
    for raw in example.operation.get("parameters", []):
        param = _resolve_param(example.spec, raw)
        name, where = param["name"], param["in"]
        if name not in params:
            continue
        if where == "path":
            path = path.replace("{" + name + "}", str(params[name]))
        elif where == "query":
            query[name] = params[name]
        elif where == "body":
            body = params[name]
    return example.method, path, query, body


def validate_response(example: Example, status: int, body: object) -> list[str]:
    """Schema errors for a response body, plus the nulls the specs forbid for read-only fields."""
    declared = example.operation["responses"].get(str(status)) or example.operation["responses"].get("default")
    schema = (declared or {}).get("schema")
    problems: list[str] = []
    if schema is not None:
        if body is None:
            return [f"{status}: the spec declares a body, none was sent"]
        wrapped = {"$ref": f"{example.spec.as_uri()}#/__response__"} if "$ref" not in schema else schema
        if "$ref" not in schema:
            # Inline schema: validate it in the spec file's context so its relative $refs resolve.
            contents = _load(example.spec) | {"__response__": schema}
            reg = registry().with_resource(example.spec.as_uri(),
                                           Resource.from_contents(contents, default_specification=DRAFT4))
        else:
            wrapped = {"$ref": _absolute_ref(example.spec, schema["$ref"])}
            reg = registry()
        validator = jsonschema.Draft4Validator(wrapped, registry=reg)
        problems += [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)]
    if body is not None:
        problems += [f"{p}: null" for p in _nulls(body)]
    return problems


def _absolute_ref(spec: Path, ref: str) -> str:
    file_part, _, pointer = ref.partition("#")
    base = (spec.parent / file_part).resolve() if file_part else spec
    return f"{base.as_uri()}#{pointer}"


def _nulls(node: object, path: str = "") -> list[str]:
    if node is None:
        return [path or "/"]
    if isinstance(node, dict):
        return [n for k, v in node.items() for n in _nulls(v, f"{path}/{k}")]
    if isinstance(node, list):
        return [n for i, v in enumerate(node) for n in _nulls(v, f"{path}/{i}")]
    return []
