"""The cluster agent: runs each connected registry extension's pod (a ConnectedRegistryModule from
edge_devices, fed the protected `connectionString`) and the operator's `kubectl port-forward` to its
service, and settles the extension as Helm's wait does.

- The extension stays Creating/Updating until the pod is ready (the module activated): with a bad
  password the pod logs UNAUTHORIZED and the extension is "stuck in running state"
  (troubleshoot-connected-registry-arc.md), `statuses` carrying the module's error.
- ALREADY_ACTIVATED: "Extension created, but connected registry is not in 'Online' state" (same doc):
  the extension Succeeds, its `statuses` carry the error, the connected registry's statusDetails too.
- The cluster Offline: the connected registry turns Offline and the forward closes (as a device that
  goes offline); when it is back, the forward reopens and the registry syncs at once.
- The release record gone (extension deleted): the module stops (Offline) and the forward closes.

The forward listens on 127.0.0.1 only; the service's clusterIP is data and is never connected to.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import TYPE_CHECKING

from ..arm_containerregistry.connected import set_runtime_status
from ..arm_kubernetes import models as clusters
from ..arm_kubernetesconfiguration import models as extensions
from ..core.errors import SandboxError
from ..edge_devices.connected import CONNECTION_STRING_ENV, ConnectedRegistryModule, ModuleFailure
from ..registry_dataplane.urls import ROUTER as REGISTRY_HOST
from . import certs, releases
from .install import status

if TYPE_CHECKING:
    from ..runtime import Sandbox

log = logging.getLogger("crlib.sandbox.arc_clusters")
STEP_SECONDS = 0.1
PRE_READY = ("Creating", "Updating")
_AGENTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class Release:
    """One extension's pod and forward."""

    def __init__(self, sandbox: Sandbox, record: dict):
        self.sandbox = sandbox
        self.record = record
        self.ext_id: str = record["extensionId"]
        self.module: ModuleConnected | None = None
        self.failure: ModuleFailure | None = None
        self.offline = False
        self.reported: str | None = None
        if record.get("phase") == "PvcPending":
            return
        protected = extensions.protected_settings(sandbox.store, self.ext_id)
        try:
            self.module = ModuleConnected(sandbox, f"{self.ext_id.lower()}/{record['instance']}",
                                          {CONNECTION_STRING_ENV: protected.get("connectionString", "")},
                                          lambda: str(sandbox.ca_bundle))
        except ModuleFailure as failure:
            self.failure = failure

    # -- the extension document -----------------------------------------------------------------
    def _settle(self, provisioning: str | None, statuses: list[dict], key: str) -> None:
        if self.reported == key:
            return
        with self.sandbox.store.transaction():
            doc = self.sandbox.store.get(self.ext_id)
            if doc is None or doc["properties"].get("provisioningState") == "Deleting":
                return
            settles = provisioning and doc["properties"].get("provisioningState") in PRE_READY
            if settles:
                doc["properties"]["provisioningState"] = provisioning
            doc["properties"]["statuses"] = statuses
            extensions.save(self.sandbox.store, doc, self.record["clusterId"])
            if settles:
                self.sandbox.operations.follow_resource(self.ext_id)  # the create/update operation ends
        self.reported = key

    # -- the forward ----------------------------------------------------------------------------
    def open_forward(self) -> None:
        if self.sandbox.listener_port(self.ext_id, releases.FORWARD_ROLE):
            return
        context = certs.server_context(self.record["chain"], self.record["key"])
        wanted = self.record["forwardPort"]
        port = self.sandbox.open_listener(REGISTRY_HOST, self.ext_id, wanted, role=releases.FORWARD_ROLE,
                                          ssl_context=context)
        if port != wanted:
            log.warning("extension %s: forward port %s is taken", self.ext_id, wanted)
            self.sandbox.close_listener(port)

    def close_forward(self) -> None:
        port = self.sandbox.listener_port(self.ext_id, releases.FORWARD_ROLE)
        if port:
            self.sandbox.close_listener(port)
            self.sandbox.drop_connections(port)

    # -- stepping -------------------------------------------------------------------------------
    async def step(self) -> None:
        if self.module is None:
            if self.failure is not None:
                self._settle(None, [status(self.failure.code, self.failure.description, display="CrashLoopBackOff",
                                           now=self.sandbox.clock.time())], self.failure.code)
            return
        cluster = self.sandbox.store.get(self.record["clusterId"])
        now = self.sandbox.clock.time()
        if cluster is None or clusters.connectivity(cluster, now) != "Connected":
            if not self.offline:
                self.offline = True
                self.module.go_offline()
                self.close_forward()
            return
        if self.offline:
            self.offline = False
            self.module.cut_off = False
            self.module.next_sync = None  # back online: sync at once, which reports Online
        try:
            await self.module.step(now)
        except ModuleFailure as failure:
            self.close_forward()
            if failure.code == "ACTIVATING":
                return
            entry = status(failure.code, failure.description, display="CrashLoopBackOff", now=now)
            if failure.code == "ALREADY_ACTIVATED":
                self._settle("Succeeded", [entry], failure.code)
            else:
                self._settle(None, [entry], failure.code)
            return
        self.open_forward()
        self._settle("Succeeded", [], "ready")

    def stop(self) -> None:
        if self.module is not None:
            self.module.stop()
        self.close_forward()


class ModuleConnected(ConnectedRegistryModule):
    """The connected registry pod: the device module, plus what a cluster cut off does to it."""

    def go_offline(self) -> None:
        self.cut_off = True
        if self.active and self.cr_id and self.sandbox.store.get(self.cr_id) is not None:
            with self.sandbox.store.transaction():
                set_runtime_status(self.sandbox, self.cr_id, connection_state="Offline")


class ArcAgents:
    """The agents of every simulated cluster of one sandbox."""

    def __init__(self, sandbox: Sandbox):
        self.sandbox = sandbox
        self.releases: dict[str, Release] = {}
        self._task: asyncio.Task | None = None
        # The store revisions of the release records and of the clusters last reconciled (None: not
        # yet), so an idle agent neither scans the store nor touches the disk on its ticks.
        self._releases_seen: tuple[int, int] | None = None
        self._clusters_seen: tuple[int, int] | None = None

    def reconcile(self) -> None:
        """Start, restart and stop releases as their records say, and remove the certificate folders
        of clusters that are gone; each only when what it reads has changed since last time."""
        store = self.sandbox.store
        revision = store.revision(releases.RELEASE)
        if revision != self._releases_seen:
            self._reconcile_releases()
            self._releases_seen = revision
        revision = store.revision(clusters.CLUSTER_TYPE)
        if revision != self._clusters_seen:
            keep = {certs.cluster_directory(self.sandbox.state_dir, d["id"])
                    for d in store.by_type(clusters.CLUSTER_TYPE)}
            certs.prune(self.sandbox.state_dir, keep)
            self._clusters_seen = revision

    def _reconcile_releases(self) -> None:
        records = {r["extensionId"].lower(): r for r in releases.records(self.sandbox)}
        for key in [k for k in self.releases if k not in records]:
            release = self.releases.pop(key)
            release.stop()
            with self.sandbox.store.transaction():
                self.sandbox.operations.follow_resource(release.ext_id)  # a delete operation ends
        for key, record in records.items():
            current = self.releases.get(key)
            if current is not None and current.record.get("generation") == record.get("generation"):
                continue
            if current is not None:
                current.stop()
            self.releases[key] = Release(self.sandbox, record)

    def running(self, ext_id: str) -> bool:
        """Whether the extension's release still runs (its pod, its forward)."""
        return ext_id.lower() in self.releases

    async def _run(self) -> None:
        while True:
            try:
                self.reconcile()
                for release in list(self.releases.values()):
                    await release.step()
            except asyncio.CancelledError:
                raise
            except Exception:  # a sandbox bug must not stop every cluster: log it and go on
                log.exception("cluster agent step failed")
            await asyncio.sleep(STEP_SECONDS)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        for release in self.releases.values():
            if release.module is not None:
                release.module.active = False  # the sandbox stops, the cluster does not: keep ARM's view

    def module_for(self, ext_id: str) -> ConnectedRegistryModule:
        release = self.releases.get(ext_id.lower())
        module = release.module if release else None
        if module is None or not module.active or module.cr_id is None or (release and release.offline):
            raise SandboxError(503, "UNAVAILABLE", "The connected registry pod is not ready.")
        return module


def agents(sandbox: Sandbox) -> ArcAgents:
    found = _AGENTS.get(sandbox)
    if found is None:
        found = _AGENTS[sandbox] = ArcAgents(sandbox)
    return found
