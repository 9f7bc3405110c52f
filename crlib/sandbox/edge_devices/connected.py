"""The connected registry module on a simulated device, and the authority of its device endpoint.

It reads ACR_REGISTRY_CONNECTION_STRING, authenticates with its sync token against
ParentGatewayEndpoint over HTTPS, activates once (a second instance gets ALREADY_ACTIVATED until
the connected registry is deactivated), then syncs on its cron schedule in simulated time:
ReadOnly pulls the repositories in its sync token's scope; ReadWrite also sends local pushes
upstream. Client tokens and log level take effect at the next sync.

On a child device (one in a lower network layer) the device's firewall lets the module reach only
the parent device's address: a ParentGatewayEndpoint anywhere else (the cloud registry's login
server or data endpoint, any other host) fails activation, and sync, with PARENT_UNREACHABLE
naming the blocked host in statusDetails (device.py, "Network layers"; the nested tutorial:
"A device in the lower layer communicates with its connected registry parent in the top layer").
Its requests carry the device's User-Agent (device.user_agent).

It reports no `loginServer` host to ARM: the module does not know the address its host is reached
at (Microsoft's samples and spec examples of a connected registry show none), so clients find the
device the way its operator does, by the address of the host they provisioned.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import isodate
from croniter import croniter

from ..arm_containerregistry.connected import set_runtime_status
from ..arm_containerregistry.tokens import verify_token_password
from ..clock import iso
from ..core.errors import SandboxError
from ..registry_dataplane.auth import REFUSALS, Principal, permitted_by_rules, rules_from_actions
from ..registry_dataplane.cloud import token_rules
from ..registry_dataplane.models import Namespace
from . import oci_client
from .models import ENDPOINT_ROLE, parse_connection_string

if TYPE_CHECKING:
    from ..runtime import Sandbox

CONNECTION_STRING_ENV = "ACR_REGISTRY_CONNECTION_STRING"
MODULE_VERSION = "0.11.1"
RETRY_SECONDS = 30  # simulated seconds between activation attempts
READ_ONLY_REFUSAL = "This operation is not allowed on this registry."
SYNC_STATE = "edge.syncstate"
ACTIVATION = "edge.activation"


class ModuleFailure(Exception):
    """The module cannot run; the agent shows it in backoff with this description."""

    def __init__(self, code: str, description: str):
        super().__init__(description)
        self.code = code
        self.description = description


@dataclass
class Effective:
    """Configuration the running module applied at its last sync."""

    client_token_ids: list[str] = field(default_factory=list)
    log_level: str = "Information"


def _detail(code: str, description: str, now: float) -> dict:
    return {"type": "ConnectedRegistry", "code": code, "description": description, "timestamp": iso(now),
            "correlationId": str(uuid.uuid4())}


class ConnectedRegistryModule:
    def __init__(self, sandbox: Sandbox, instance_id: str, env: dict[str, str], trust: Callable[[], str], *,
                 blocked: Callable[[str], str | None] = lambda _: None, user_agent: str | None = None,
                 resolve: Callable[[str], str] = lambda host: host):
        self.sandbox = sandbox
        self.instance_id = instance_id
        self.trust = trust  # () -> the CA bundle the device's modules verify servers with
        self.blocked = blocked  # host -> why the device's network refuses it, or None
        self.user_agent = user_agent
        self.resolve = resolve  # ParentGatewayEndpoint -> host[:port], `$IOTEDGE_PARENTHOSTNAME` resolved
        self.active = False
        # Set while the host's network is cut (device or cluster offline): a sync already under way
        # when it went does not report afterwards, as its requests would have failed.
        self.cut_off = False
        self.stopped_reason: str | None = None
        self.next_attempt = 0.0
        self.next_sync: float | None = None
        self._last_heartbeat = 0.0
        self.effective = Effective()
        raw = env.get(CONNECTION_STRING_ENV)
        if not raw:
            raise ModuleFailure("MISSING_CONNECTION_STRING", f"{CONNECTION_STRING_ENV} is not set")
        try:
            parts = parse_connection_string(raw, required=("ConnectedRegistryName", "SyncTokenName",
                                                           "SyncTokenPassword", "ParentGatewayEndpoint"))
        except SandboxError as exc:
            raise ModuleFailure("INVALID_CONNECTION_STRING", exc.message) from exc
        self.name = parts["ConnectedRegistryName"]
        self.sync_token = parts["SyncTokenName"]
        self.credentials = oci_client.Credentials(self.sync_token, parts["SyncTokenPassword"])
        self.gateway = parts["ParentGatewayEndpoint"]  # as written, maybe `$IOTEDGE_PARENTHOSTNAME:8000`
        self.parent_host = self.gateway
        self.protocol = parts.get("ParentEndpointProtocol", "https").lower()
        self.cr_id: str | None = None

    # -- where the parent is ---------------------------------------------------------------------
    def _registry_behind(self, host: str) -> str:
        """The cloud registry id this connected registry belongs to, found through its parent."""
        address, _, port = host.rpartition(":")
        listener = self.sandbox.hosts.get(int(port)) if port.isdigit() and address == "127.0.0.1" else None
        if listener is None:
            for registry in self.sandbox.store.by_type("microsoft.containerregistry/registries"):
                if port.isdigit() and registry.get("_sandbox", {}).get("dataPort") == int(port):
                    raise ModuleFailure("DATA_ENDPOINT_DISABLED",
                                        f"The parent gateway {host} is the dedicated data endpoint of registry "
                                        f"'{registry['name']}', which is disabled. Enable it and retry.")
            raise ModuleFailure("PARENT_UNREACHABLE", f"Could not connect to the parent gateway {host}.")
        if listener.role == "data" and listener.key:
            return listener.key
        if listener.role == ENDPOINT_ROLE and listener.key:
            try:
                parent = self.sandbox.edge.routed_registry(listener.key)
            except SandboxError as exc:
                raise ModuleFailure("PARENT_NOT_READY", f"The parent gateway {host} answers "
                                                        f"{exc.status}: {exc.message}") from exc
            return parent.cr_id.rsplit("/connectedregistries/", 1)[0] if parent.cr_id else ""
        if listener.role == "login":
            raise ModuleFailure("DATA_ENDPOINT_REQUIRED", f"{host} is a login server; connected registries sync "
                                                          "through the registry's dedicated data endpoint.")
        raise ModuleFailure("PARENT_UNREACHABLE", f"{host} is not a registry.")

    def _check_route(self) -> None:
        reason = self.blocked(self.parent_host)
        if reason:
            raise ModuleFailure("PARENT_UNREACHABLE", f"Could not connect to the parent gateway {self.parent_host}: "
                                                      f"{reason}.")

    @property
    def _id(self) -> str:
        """The connected registry's id, known once activation has found it."""
        if self.cr_id is None:
            raise ModuleFailure("ACTIVATING", "the connected registry has not been found yet")
        return self.cr_id

    def _resource(self) -> dict:
        doc = self.sandbox.store.get(self._id)
        if doc is None:
            raise ModuleFailure("NOT_FOUND", f"Connected registry '{self.name}' no longer exists.")
        return doc

    # -- lifecycle ---------------------------------------------------------------------------------
    async def step(self, now: float) -> None:
        """Advance the module; raises ModuleFailure while it cannot run."""
        if self.stopped_reason:
            raise ModuleFailure("DEACTIVATED", self.stopped_reason)
        if not self.active:
            if now < self.next_attempt:
                raise ModuleFailure("ACTIVATING", "waiting to retry activation")
            self.next_attempt = now + RETRY_SECONDS
            await self._activate(now)
        doc = self._resource()
        owner = self.sandbox.store.get(f"{self.cr_id}/edge-activation")
        if doc["properties"]["activation"]["status"] != "Active" or not owner or owner["instance"] != self.instance_id:
            self.active = False
            self.stopped_reason = "The connected registry was deactivated; redeploy to activate it again."
            raise ModuleFailure("DEACTIVATED", self.stopped_reason)
        if self.next_sync is None or now >= self.next_sync:
            await self._sync(now, doc)
        elif now - self._last_heartbeat >= 60:
            self._heartbeat(now)

    def _record_failure(self, code: str, description: str, now: float, *, state: str = "Offline") -> None:
        if self.cr_id and self.sandbox.store.get(self.cr_id) is not None:
            with self.sandbox.store.transaction():
                set_runtime_status(self.sandbox, self.cr_id, connection_state=state,
                                   status_details=[_detail(code, description, now)])

    def _named_resource(self) -> str | None:
        """The connected registry this module names, found without its parent: used only to show
        why it cannot reach the parent, which real Azure learns from the module's diagnostics."""
        matches = [d["id"].lower() for d in self.sandbox.store.by_type(
            "microsoft.containerregistry/registries/connectedregistries") if d["name"].lower() == self.name.lower()
            and d["properties"]["parent"]["syncProperties"]["tokenId"].lower().endswith(
                "/tokens/" + self.sync_token.lower())]
        return matches[0] if len(matches) == 1 else None

    async def _activate(self, now: float) -> None:
        try:
            try:
                self.parent_host = self.resolve(self.gateway)
            except oci_client.PullError as exc:
                raise ModuleFailure("PARENT_UNREACHABLE", f"Could not resolve the parent gateway {self.gateway}: "
                                                          f"{exc}.") from exc
            self._check_route()
            if self.protocol != "https":
                raise ModuleFailure("PROTOCOL_REFUSED", f"The parent gateway {self.parent_host} accepts https only.")
            registry_id = self._registry_behind(self.parent_host)
        except ModuleFailure as failure:
            self.cr_id = self.cr_id or self._named_resource()
            self._record_failure(failure.code, failure.description, now)
            raise
        self.cr_id = f"{registry_id}/connectedRegistries/{self.name}".lower()
        doc = self._resource()
        try:
            await oci_client.check_credentials(self.parent_host, self.credentials, ca_bundle=self.trust(),
                                               user_agent=self.user_agent)
        except oci_client.PullError as exc:
            if not str(exc).startswith("unauthorized"):  # TLS or the network, not the token
                self._record_failure("PARENT_UNREACHABLE", f"Could not sign in at the parent gateway "
                                                           f"{self.parent_host}: {exc}", now)
                raise ModuleFailure("PARENT_UNREACHABLE", str(exc)) from exc
            self._record_failure("UNAUTHORIZED", f"Sync token '{self.sync_token}' was refused by "
                                                 f"{self.parent_host}: {exc}", now)
            raise ModuleFailure("UNAUTHORIZED", str(exc)) from exc
        sync_token = doc["properties"]["parent"]["syncProperties"]["tokenId"].rsplit("/", 1)[-1]
        if sync_token.lower() != self.sync_token.lower():
            self._record_failure("SYNC_TOKEN_MISMATCH", f"'{self.sync_token}' is not the sync token of "
                                                        f"'{self.name}' ('{sync_token}' is).", now)
            raise ModuleFailure("SYNC_TOKEN_MISMATCH", "wrong sync token")
        owner = self.sandbox.store.get(f"{self.cr_id}/edge-activation")
        if doc["properties"]["activation"]["status"] == "Active" and owner and owner["instance"] != self.instance_id:
            description = (f"Connected registry '{self.name}' is already activated by another instance; deactivate "
                           "it before activating a new one.")
            with self.sandbox.store.transaction():
                details = [*doc["properties"].get("statusDetails", []), _detail("ALREADY_ACTIVATED", description, now)]
                set_runtime_status(self.sandbox, self.cr_id, status_details=details[-5:])
            raise ModuleFailure("ALREADY_ACTIVATED", description)
        with self.sandbox.store.transaction():
            self.sandbox.store.put(f"{self.cr_id}/edge-activation", ACTIVATION,
                                   {"instance": self.instance_id, "activatedAt": iso(now)}, parent=self.cr_id)
            set_runtime_status(self.sandbox, self.cr_id, activation_status="Active", connection_state="Online",
                               status_details=[], last_activity_time=now, version=MODULE_VERSION)
        self.active = True
        self._last_heartbeat = now
        self.next_sync = None  # sync right away

    def _heartbeat(self, now: float) -> None:
        self._last_heartbeat = now
        with self.sandbox.store.transaction():
            set_runtime_status(self.sandbox, self._id, last_activity_time=now)

    # -- sync ----------------------------------------------------------------------------------------
    def _schedule_next(self, doc: dict, now: float) -> None:
        """Sync at each cron fire; inside a sync window that follows a fire, keep syncing every minute."""
        sync = doc["properties"]["parent"]["syncProperties"]
        schedule = sync.get("schedule") or "* * * * *"
        next_fire = croniter(schedule, now).get_next(float)
        window = sync.get("syncWindow")
        if window:
            window_end = croniter(schedule, now).get_prev(float) + isodate.parse_duration(window).total_seconds()
            if now + 60 < window_end:
                next_fire = min(next_fire, now + 60)
        self.next_sync = next_fire

    def _sync_repositories(self) -> tuple[list[str], bool]:
        """Repositories in the sync token's scope (exact names), and whether it may write."""
        token = self.sandbox.store.get(self._id.rsplit("/connectedregistries/", 1)[0] + "/tokens/"
                                       + self.sync_token)
        scope_map = self.sandbox.store.get(token["properties"]["scopeMapId"]) if token else None
        rules = rules_from_actions(scope_map["properties"]["actions"]) if scope_map else []
        return sorted(p for p, acts in rules if "pull" in acts and "*" not in p), any("push" in a for _, a in rules)

    async def _sync(self, now: float, doc: dict) -> None:
        with self.sandbox.store.transaction():
            set_runtime_status(self.sandbox, self._id, connection_state="Syncing")
        self.effective = Effective(list(doc["properties"].get("clientTokenIds") or []),
                                   doc["properties"].get("logging", {}).get("logLevel", "Information"))
        namespace = Namespace(self.sandbox, self._id)
        repositories, may_push = self._sync_repositories()
        blocked = self.blocked(self.parent_host)
        if blocked:  # the parent address changed under a running module: as good as unreachable
            self._record_failure("PARENT_UNREACHABLE", f"Sync with {self.parent_host} failed: {blocked}", now)
            self._schedule_next(doc, now)
            return
        try:
            for repo in repositories:
                await self._pull_repository(namespace, repo)
            if doc["properties"]["mode"] == "ReadWrite" and may_push:
                await self._push_local_changes(namespace)
        except oci_client.PullError as exc:
            reason, state = str(exc), "Unhealthy"
            if "unauthorized" in reason:
                state = "Offline"  # the parent no longer accepts it: as good as unreachable
                try:
                    await oci_client.check_credentials(self.parent_host, self.credentials,
                                                       ca_bundle=self.trust(), user_agent=self.user_agent)
                except oci_client.PullError as refusal:
                    reason = str(refusal)
            self._record_failure("SYNC_FAILED", f"Sync with {self.parent_host} failed: {reason}", now, state=state)
            self._schedule_next(doc, now)
            return
        if self.cut_off:
            return  # cut off mid-sync: nothing reaches the cloud; the sync runs again once back
        self._last_heartbeat = now
        with self.sandbox.store.transaction():
            set_runtime_status(self.sandbox, self._id, connection_state="Online", status_details=[],
                               last_activity_time=now, last_sync_time=now)
        self._schedule_next(doc, now)

    def _synced(self, repo: str) -> dict:
        return self.sandbox.store.get(f"{self.cr_id}/edge-sync/{repo}") or {"tags": {}}

    def _save_synced(self, repo: str, state: dict) -> None:
        self.sandbox.store.put(f"{self.cr_id}/edge-sync/{repo}", SYNC_STATE, state, parent=self.cr_id)

    async def _pull_repository(self, namespace: Namespace, repo: str) -> None:
        ca = self.trust()
        synced = self._synced(repo)
        for tag in await oci_client.tags(self.parent_host, repo, self.credentials, ca_bundle=ca,
                                                user_agent=self.user_agent):
            remote = await oci_client.digest_of(self.parent_host, repo, tag, self.credentials, ca_bundle=ca,
                                                 user_agent=self.user_agent)
            local = namespace.resolve(repo, tag)
            if remote is None:
                continue
            if remote != local:
                if local is not None and local != synced["tags"].get(tag):
                    continue  # a local push not yet sent upstream wins until it is
                pulled = await oci_client.pull(self.parent_host, repo, tag, self.credentials, ca_bundle=ca,
                                               blobs=self.sandbox.blobs, keep=True, user_agent=self.user_agent)
                with self.sandbox.store.transaction():
                    _record(namespace, repo, pulled, tag)
                    synced["tags"][tag] = pulled.digest
                    self._save_synced(repo, synced)
            await self._pull_referrers(namespace, repo, remote, seen=set())

    async def _pull_referrers(self, namespace: Namespace, repo: str, subject: str, *, seen: set[str]) -> None:
        """Artifacts attached to a synced image (signatures, SBOMs), and theirs in turn: "connected
        registries sync artifacts as well as images" (Microsoft Learn, intro-connected-registry.md), and
        an OCI 1.1 registry keeps a referrer with its subject. New ones arrive at the next sync even
        when the image's tag has not moved."""
        ca = self.trust()
        seen.add(subject)
        for descriptor in await oci_client.referrers(self.parent_host, repo, subject, self.credentials,
                                                     ca_bundle=ca, user_agent=self.user_agent):
            digest = descriptor.get("digest", "")
            if not digest or digest in seen:
                continue
            if namespace.manifest(repo, digest) is None:
                pulled = await oci_client.pull(self.parent_host, repo, digest, self.credentials, ca_bundle=ca,
                                               blobs=self.sandbox.blobs, keep=True, user_agent=self.user_agent)
                with self.sandbox.store.transaction():
                    _record(namespace, repo, pulled, None)
            await self._pull_referrers(namespace, repo, digest, seen=seen)

    async def _push_local_changes(self, namespace: Namespace) -> None:
        ca = self.trust()
        for repo, tags in namespace.images().items():
            synced = self._synced(repo)
            for tag, digest in tags.items():
                if synced["tags"].get(tag) == digest:
                    continue
                await oci_client.push(self.parent_host, repo, tag, _manifests(namespace, repo, digest),
                                      self.credentials, ca_bundle=ca, blobs=self.sandbox.blobs,
                                      user_agent=self.user_agent)
                with self.sandbox.store.transaction():
                    synced["tags"][tag] = digest
                    self._save_synced(repo, synced)

    def stop(self) -> None:
        """The module is removed from the deployment: the resource goes Offline."""
        if self.active and self.cr_id and self.sandbox.store.get(self.cr_id) is not None:
            with self.sandbox.store.transaction():
                set_runtime_status(self.sandbox, self.cr_id, connection_state="Offline")
        self.active = False


def _record(namespace: Namespace, repo: str, pulled: oci_client.PulledManifest, tag: str | None) -> None:
    for child in pulled.children:
        _record(namespace, repo, child, None)
    for digest, size in pulled.blobs:
        namespace.link_blob(repo, digest, size or namespace.blobs.size(digest))
    namespace.put_manifest(repo, tag or pulled.digest, pulled.body, pulled.media_type)


def _manifests(namespace: Namespace, repo: str, digest: str) -> list[tuple[bytes, list[str]]]:
    """An image as (manifest bytes, blob digests) pairs, children before their index."""
    manifest = namespace.manifest(repo, digest)
    if manifest is None:
        raise oci_client.PullError(f"{repo}@{digest} is not in the connected registry")
    body = namespace.blobs.read(digest)
    if manifest["mediaType"].endswith("index.v1+json") or manifest["mediaType"].endswith("list.v2+json"):
        out = []
        for child in manifest["references"]:
            out += _manifests(namespace, repo, child)
        return [*out, (body, [])]
    return [(body, manifest["references"])]


class DeviceEndpointAuthority:
    """Who may use a connected registry through its device endpoint: the client tokens attached
    to it (as of its last sync), and the sync tokens of its child connected registries."""

    def __init__(self, sandbox: Sandbox, module: ConnectedRegistryModule, service: str):
        self.sandbox = sandbox
        self.module = module
        if module.cr_id is None:
            raise SandboxError(503, "UNAVAILABLE", "The connected registry on this device is not active.")
        self.namespace: str = module.cr_id
        self.service = service
        self.registry_id = module.cr_id.rsplit("/connectedregistries/", 1)[0]
        doc = sandbox.store.get(module.cr_id) or {"properties": {"mode": "ReadOnly"}}
        self.write_refusal = READ_ONLY_REFUSAL if doc["properties"]["mode"] == "ReadOnly" else None

    def _allowed_tokens(self) -> set[str]:
        allowed = {t.lower() for t in self.module.effective.client_token_ids}
        for child in self.sandbox.store.children(self.registry_id, "microsoft.containerregistry/registries/"
                                                                     "connectedregistries"):
            if (child["properties"]["parent"].get("id") or "").lower() == self.module.cr_id:
                allowed.add(child["properties"]["parent"]["syncProperties"]["tokenId"].lower())
        return allowed

    def check_password(self, username: str, password: str) -> Principal:
        token_id = f"{self.registry_id}/tokens/{username}".lower()
        if token_id not in self._allowed_tokens():
            raise SandboxError(401, "UNAUTHORIZED", f"The token '{username}' is not attached to this connected "
                                                    "registry.")
        ok, reason = verify_token_password(self.sandbox, self.registry_id, username, password)
        if not ok:
            raise SandboxError(401, "UNAUTHORIZED", REFUSALS[reason or "wrong"])
        return Principal("token", username)

    def repository_rules(self, principal: Principal) -> list[tuple[str, set[str]]]:
        return token_rules(self.sandbox, self.registry_id, principal.name)

    def permitted(self, principal: Principal, repository: str) -> set[str]:
        return permitted_by_rules(self.repository_rules(principal), repository)
