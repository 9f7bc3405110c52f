"""The forward's resolver on the registry router, and the admin route that tells the operator where
the forward answers (`kubectl port-forward svc/connected-registry` in the sandbox)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from ..arm_kubernetes import models as clusters
from ..arm_kubernetesconfiguration import models as extensions
from ..core.errors import SandboxError
from ..core.http import Call, json_response
from ..edge_devices.connected import DeviceEndpointAuthority
from . import releases
from .agent import agents

if TYPE_CHECKING:
    from ..registry_dataplane.auth import Authority


def forward_endpoint(call: Call) -> tuple[str, Authority]:
    """The connected registry behind a forward: the clients attached to it, as at a device."""
    module = agents(call.sandbox).module_for(call.host_key)
    authority = DeviceEndpointAuthority(call.sandbox, module, call.request.host)
    return authority.namespace, authority


def forward(call: Call) -> web.Response:
    sandbox = call.sandbox
    name, ext_name = call.params["name"], call.params["extension"]
    group = call.query.get("resource_group")
    found = [d for d in sandbox.store.by_type(clusters.CLUSTER_TYPE) if d["name"].lower() == name.lower()
             and (not group or d["id"].split("/")[4].lower() == group.lower())]
    if not found:
        raise SandboxError(404, "NotFound", f"No connected cluster '{name}'.")
    if len(found) > 1:
        raise SandboxError(400, "InvalidParameter", f"Several connected clusters are called '{name}': name the group.")
    ext_id = extensions.extension_id(found[0]["id"], ext_name)
    record = sandbox.store.get(releases.release_key(ext_id))
    if record is None:
        raise SandboxError(404, "NotFound", f'Error from server (NotFound): services "connected-registry" not found '
                                            f"(no connected registry extension '{ext_name}' on cluster '{name}').")
    if sandbox.listener_port(ext_id, releases.FORWARD_ROLE) is None:
        raise SandboxError(409, "PodNotRunning", "error: unable to forward port because pod is not running "
                                                 "(the connected registry is not active, or the cluster is offline).")
    return json_response({"address": f"127.0.0.1:{record['forwardPort']}", "ca_cert": record["caCert"],
                          "clusterIP": record["clusterIP"], "tls": record["tls"]})
