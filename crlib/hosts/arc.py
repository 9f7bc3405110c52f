"""An Azure Arc-enabled Kubernetes cluster as a deployment host: the connected registry is the
cluster extension `Microsoft.ContainerRegistry.ConnectedRegistry`, made and changed with
azure-mgmt-kubernetesconfiguration-extensions (api 2025-03-01), the cluster read with
azure-mgmt-hybridkubernetes. No ARM call here is hand-written.

Sources (MicrosoftDocs/azure-management-docs): container-registry/quickstart-connected-registry-
arc-cli.md (the settings: `service.clusterIP`, `pvc.*`, `cert-manager.*`, `trustDistribution.*`,
the protected `connectionString`), tutorial-connected-registry-arc.md (your own certificate:
`tls.secret`, or the protected `tls.crt`/`tls.key`/`tls.cacrt`, base64, with cert-manager off),
troubleshoot-connected-registry-arc.md (what each failure looks like), azure-arc/kubernetes/
extensions.md (protected settings are never returned, and an update that omits them deletes them;
a pinned `version` needs `autoUpgradeMinorVersion` false).

The deployment is the extension's properties: type, upgrade policy, configuration settings and
protected settings. Protected settings cannot be read back, so `current` stands in their sha256 as
crlib last sent them (kept in the secret store, `names.ARC_PROTECTED_DIGEST_SECRET`, never in a
record): a re-run that would send the same ones writes nothing. An update sends every protected
setting again, as the docs require.

`apply` starts the create or update and returns: the deploy step's wait reads the extension (and
the connected registry) until it runs. A Failed extension, or one whose statuses carry an error
that no wait cures, fails the wait at once with the cause named (`diagnose`).

Teardown deletes the extension first; the connected registry goes afterwards (the quickstart's
order), which `crlib.steps.teardown` arranges for this host.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..azure import names, readers
from ..azure.errors import get_or_none, map_exceptions
from ..azure.removal import deletion, secret_deletions
from ..errors import ManifestInvalid, PreconditionFailed, StepFailed
from . import HostStatus

if TYPE_CHECKING:
    from ..context import RunContext
    from ..params import Arc
    from ..plans import Change

EXTENSION_TYPE = "Microsoft.ContainerRegistry.ConnectedRegistry"
CLUSTER_RP, CLUSTER_TYPE = "Microsoft.Kubernetes", "connectedClusters"
POD = "connected-registry"  # the chart's deployment and service
PROTECTED_DIGEST = "configurationProtectedSettings"  # the key `current` carries their digest under
NO_EXTENSION = "no extension yet"
SETTINGS = "configurationSettings"
PROTECTED = "configurationProtectedSettings"

# Causes read from the extension's statuses and errorInfo (troubleshoot-connected-registry-arc.md),
# each naming what to change. Matched on the code or, for Helm's and Kubernetes' own errors, on
# their wording.
_CAUSES: list[tuple[tuple[str, ...], str]] = [
    (("not in the valid range",), "host.arc.service_cluster_ip: {ip} is outside the cluster's service IP range; "
                                  "give a free address inside it (kubectl cluster-info dump | grep "
                                  "service-cluster-ip-range)"),
    (("already allocated",), "host.arc.service_cluster_ip: {ip} is already used by another service on the "
                             "cluster; give a free address in its service IP range"),
    (("PersistentVolumeClaimPending", "storageclass"), "host.arc.storage_class: the cluster has no storage class "
                                                       "'{storage}'; the connected registry's volume claim stays "
                                                       "Pending (kubectl get storageclass lists them)"),
    (("UNAUTHORIZED",), "the connected registry refused its connection string (UNAUTHORIZED): the sync token's "
                        "password is wrong or was regenerated; run the settings step, or rotate"),
    (("ALREADY_ACTIVATED",), "the connected registry is already activated by another installation (ALREADY_"
                             "ACTIVATED); deactivate it (az acr connected-registry deactivate) or remove that "
                             "installation, then deploy again"),
    (("is Offline",), "host.arc.cluster: Arc cluster '{cluster}' is Offline: its agents must reach Azure for the "
                      "extension to install (extensions fail when it stays offline for 48 hours)"),
    (("node affinity", "linux/amd64"), "host.arc.cluster: the cluster has no linux/amd64 node; the connected "
                                       "registry's images run on amd64 only"),
]
# Findings no waiting cures: the wait stops at once on these.
_FINAL = ("not in the valid range", "already allocated", "ALREADY_ACTIVATED", "UNAUTHORIZED", "node affinity",
          "linux/amd64")


def _b64(path: str) -> str:
    """The tutorial's protected TLS settings hold base64 of the PEM file."""
    return base64.b64encode(Path(path).expanduser().read_bytes()).decode()


def protected_digest(protected: dict[str, str]) -> str:
    """sha256 of protected settings as sent, compared on re-runs instead of the values."""
    return "sha256:" + hashlib.sha256(json.dumps(protected, sort_keys=True).encode()).hexdigest()


def _text(value: Any) -> str:
    return readers.text(value) if value is not None else ""


class ArcHost:
    def __init__(self, ctx: RunContext, *, step: str):
        arc = ctx.site.host.arc
        assert arc is not None  # Host validation: host.kind arc has its block
        self._ctx = ctx
        self.arc: Arc = arc
        self.step = step
        self.name = f"extension '{arc.extension_name}'"
        self.label = f"connected registry extension '{arc.extension_name}' on Arc cluster '{arc.cluster}'"

    # -- the cluster --------------------------------------------------------------------------------
    def _args(self) -> tuple[str, str, str, str]:
        return self.arc.cluster_resource_group, CLUSTER_RP, CLUSTER_TYPE, self.arc.cluster

    @property
    def resource_id(self) -> str:
        return (f"/subscriptions/{self._ctx.profile.subscription_id}/resourceGroups/{self.arc.cluster_resource_group}"
                f"/providers/{CLUSTER_RP}/{CLUSTER_TYPE}/{self.arc.cluster}/providers/"
                f"Microsoft.KubernetesConfiguration/extensions/{self.arc.extension_name}")

    def cluster(self) -> Any:
        """The connectedClusters resource, or None."""
        with map_exceptions(self.step, f"reading Arc cluster '{self.arc.cluster}'"):
            return get_or_none(lambda: self._ctx.clients.connected_clusters.connected_cluster.get(
                self.arc.cluster_resource_group, self.arc.cluster))

    def check(self) -> None:
        """The cluster must exist: crlib does not connect clusters (`az connectedk8s connect` does)."""
        if self.cluster() is None:
            raise PreconditionFailed("host.arc.cluster", f"Arc cluster '{self.arc.cluster}' does not exist in resource "
                                                         f"group '{self.arc.cluster_resource_group}'; connect it "
                                                         "with az connectedk8s connect first")

    def cluster_findings(self, cluster: Any) -> list[str]:
        """What keeps the cluster from running an extension now (empty when nothing does)."""
        if cluster is None:
            return [f"Arc cluster '{self.arc.cluster}' does not exist in resource group "
                    f"'{self.arc.cluster_resource_group}'"]
        state = _text(cluster.connectivity_status)
        if state != "Connected":
            return [f"host.arc.cluster: Arc cluster '{self.arc.cluster}' is {state or 'not connected'} (last "
                    f"connectivity {cluster.last_connectivity_time}); its agents must reach Azure for the extension "
                    "to install, and extensions fail when it stays offline for 48 hours"]
        return []

    # -- the deployment -------------------------------------------------------------------------------
    def settings(self) -> dict[str, str]:
        """The extension's configuration settings, as the quickstart and tutorial name them."""
        arc = self.arc
        tls = arc.tls
        found = {"service.clusterIP": arc.service_cluster_ip, "pvc.storageRequest": arc.storage_request,
                 "cert-manager.enabled": str(tls.mode == "cert-manager").lower(),
                 "cert-manager.install": str(tls.cert_manager_install).lower(),
                 "trustDistribution.enabled": str(arc.trust_distribution).lower(),
                 "trustDistribution.useNodeSelector": str(arc.trust_distribution_node_selector).lower()}
        if arc.storage_class:
            found["pvc.storageClassName"] = arc.storage_class
        if tls.mode == "secret" and tls.secret:
            found["tls.secret"] = tls.secret
        return found

    def _protected(self, *, record: bool) -> dict[str, str]:
        purpose = names.CONNECTION_STRING_SECRET
        if record:
            protected = {"connectionString": self._ctx.secret_reference(purpose)}
        else:
            value = self._ctx.get_secret(purpose)
            if value is None:
                raise PreconditionFailed("settings", f"no value is stored as secret '{self._ctx.secret_name(purpose)}'; "
                                                     "run the settings step")
            protected = {"connectionString": value}
        tls = self.arc.tls
        if tls.mode == "files":
            for key, path in (("tls.crt", tls.cert), ("tls.key", tls.key), ("tls.cacrt", tls.ca_cert)):
                if path is not None:
                    protected[key] = f"file:{Path(path).name}" if record else _b64(path)
        return protected

    def desired(self, *, record: bool = False) -> dict:
        body: dict[str, Any] = {"extensionType": EXTENSION_TYPE,
                                "autoUpgradeMinorVersion": self.arc.auto_upgrade_minor_version,
                                SETTINGS: self.settings(), PROTECTED: self._protected(record=record)}
        if self.arc.version:
            body["version"] = self.arc.version
        return body

    def validate(self, deployment: dict) -> None:
        problems = []
        if (deployment.get("extensionType") or "").lower() != EXTENSION_TYPE.lower():
            problems.append(f"extensionType must be {EXTENSION_TYPE}")
        if not (deployment.get(PROTECTED) or {}).get("connectionString"):
            problems.append("configurationProtectedSettings.connectionString is required")
        if not (deployment.get(SETTINGS) or {}).get("service.clusterIP"):
            problems.append("configurationSettings.service.clusterIP is required")
        if deployment.get("version") and deployment.get("autoUpgradeMinorVersion", True):
            problems.append("version can be pinned only with autoUpgradeMinorVersion false")
        if problems:
            raise ManifestInvalid(problems)

    def modules(self, deployment: dict) -> list[str]:
        return [POD]

    def images(self, deployment: dict) -> dict[str, str | None]:
        # The chart picks its images (from MCR); the version is what the extension pins, if anything.
        return {POD: f"{EXTENSION_TYPE} {deployment.get('version') or '(latest of the stable train)'}"}

    def extension(self) -> Any:
        """The extension as ARM shows it, or None."""
        with map_exceptions(self.step, f"reading {self.label}"):
            return get_or_none(lambda: self._ctx.clients.extensions.extensions.get(*self._args(),
                                                                                  self.arc.extension_name))

    def current(self, parts: Iterable[str] | None = None) -> dict | None:
        found = self.extension()
        if found is None:
            return None
        props = found.properties
        body: dict[str, Any] = {"extensionType": props.extension_type,
                                "autoUpgradeMinorVersion": props.auto_upgrade_minor_version,
                                SETTINGS: dict(props.configuration_settings or {}),
                                PROTECTED_DIGEST: self._ctx.get_secret(names.ARC_PROTECTED_DIGEST_SECRET),
                                "provisioningState": _text(props.provisioning_state)}
        if props.version:
            body["version"] = props.version
        return body

    def differences(self, current: dict | None, desired: dict) -> list[str]:
        if not current:
            return [NO_EXTENSION]
        found = []
        if (current.get("extensionType") or "").lower() != desired["extensionType"].lower():
            found.append("extensionType")
        if current.get("autoUpgradeMinorVersion") != desired["autoUpgradeMinorVersion"]:
            found.append("autoUpgradeMinorVersion")
        if desired.get("version") != current.get("version") and (desired.get("version") or
                                                                 not desired["autoUpgradeMinorVersion"]):
            found.append("version")
        have, want = current.get(SETTINGS) or {}, desired[SETTINGS]
        found += [f"{SETTINGS}.{key}" for key in sorted(set(have) | set(want)) if have.get(key) != want.get(key)]
        if current.get(PROTECTED_DIGEST) != protected_digest(desired[PROTECTED]):
            found.append(PROTECTED)
        if current.get("provisioningState") == "Failed":
            found.append("provisioningState Failed")
        return found

    def starts_new_registry(self, differences: list[str]) -> bool:
        # Any change is a Helm upgrade, which rolls the connected registry's pod.
        return bool(differences)

    def apply(self, deployment: dict) -> None:
        from azure.mgmt.kubernetesconfiguration.extensions.models import (
            Extension,
            ExtensionProperties,
            PatchExtension,
            PatchExtensionProperties,
        )

        current = self.extension()
        operations = self._ctx.clients.extensions.extensions
        if current is not None and _text(current.properties.extension_type).lower() != EXTENSION_TYPE.lower():
            raise StepFailed(self.step, f"extension '{self.arc.extension_name}' on cluster '{self.arc.cluster}' is "
                                        f"a {current.properties.extension_type}; choose another host.arc.extension_name")
        if current is None or _text(current.properties.provisioning_state) == "Failed":
            with map_exceptions(self.step, f"creating {self.label}"):
                # No poller thread: the deploy step's wait follows the extension itself, with its
                # timeout and diagnosis (an install stuck Creating never ends the operation).
                operations.begin_create(*self._args(), self.arc.extension_name, Extension(properties=ExtensionProperties(
                    extension_type=EXTENSION_TYPE, auto_upgrade_minor_version=deployment["autoUpgradeMinorVersion"],
                    version=deployment.get("version"), configuration_settings=deployment[SETTINGS],
                    configuration_protected_settings=deployment[PROTECTED])), polling=False)
        else:
            # A PATCH merges configuration settings (null removes one) and replaces protected ones whole.
            have = dict(current.properties.configuration_settings or {})
            settings: dict[str, Any] = {k: None for k in have if k not in deployment[SETTINGS]}
            settings |= deployment[SETTINGS]
            with map_exceptions(self.step, f"updating {self.label}"):
                operations.begin_update(*self._args(), self.arc.extension_name, PatchExtension(
                    properties=PatchExtensionProperties(
                        auto_upgrade_minor_version=deployment["autoUpgradeMinorVersion"],
                        version=deployment.get("version"), configuration_settings=settings,
                        configuration_protected_settings=deployment[PROTECTED])), polling=False)
        self._ctx.keep_secret(names.ARC_PROTECTED_DIGEST_SECRET, protected_digest(deployment[PROTECTED]))

    # -- what the cluster reports ---------------------------------------------------------------------
    def _statuses(self, extension: Any) -> list[tuple[str, str, str]]:
        """(code, level, message) of each status, and the errorInfo as one more."""
        props = extension.properties
        found = [(s.code or "", _text(s.level), s.message or "") for s in props.statuses or []]
        if props.error_info is not None:
            found.append((props.error_info.code or "", "Error", props.error_info.message or ""))
        return found

    def _causes(self, statuses: list[tuple[str, str, str]]) -> list[str]:
        causes = []
        for code, level, message in statuses:
            if level not in ("Error", "Warning") and code != "PersistentVolumeClaimPending":
                continue
            text = f"{code} {message}"
            for needles, cause in _CAUSES:
                if any(n.lower() in text.lower() for n in needles):
                    causes.append(cause.format(ip=self.arc.service_cluster_ip, cluster=self.arc.cluster,
                                               storage=self.arc.storage_class or "(the default)"))
                    break
        return list(dict.fromkeys(causes))

    def status(self) -> HostStatus:
        extension = self.extension()
        if extension is None:
            return HostStatus(False, NO_EXTENSION)
        props = extension.properties
        state = _text(props.provisioning_state)
        statuses = self._statuses(extension)
        modules = {POD: state}
        errors = [(c, m) for c, level, m in statuses if level == "Error"]
        final = [f"{c}: {m}" for c, m in errors if any(n.lower() in f"{c} {m}".lower() for n in _FINAL)]
        if state == "Failed" or final:
            raise StepFailed(self.step, f"{self.label} is {state}: " + "; ".join(
                self._causes(statuses) + [f"{c}: {m}" for c, m in errors] or ["no error reported"]))
        cluster_problems = self.cluster_findings(self.cluster())
        if cluster_problems:
            return HostStatus(False, cluster_problems[0], None, modules)
        if state != "Succeeded" or errors:
            detail = "; ".join(f"{c}: {m}" for c, _, m in statuses) or "no status yet"
            return HostStatus(False, f"the extension is {state} ({detail})", None, modules)
        return HostStatus(True, f"extension {state}, version {props.current_version or props.version}", None, modules)

    def diagnose(self) -> list[str]:
        findings = self.cluster_findings(self.cluster())
        extension = self.extension()
        if extension is None:
            return [*findings, f"{self.label} does not exist"]
        statuses = self._statuses(extension)
        findings += self._causes(statuses)
        findings.append(f"extension provisioningState {_text(extension.properties.provisioning_state)}")
        return findings + [f"extension status {code} ({level}): {message}" for code, level, message in statuses]

    def view(self) -> dict[str, Any] | None:
        """The extension as an operator reads it (no protected setting: ARM never shows them)."""
        extension = self.extension()
        if extension is None:
            return None
        props = extension.properties
        return {"name": extension.name, "cluster": self.arc.cluster, "extension_type": props.extension_type,
                "provisioning_state": _text(props.provisioning_state), "version": props.version,
                "current_version": props.current_version,
                "auto_upgrade_minor_version": props.auto_upgrade_minor_version,
                "configuration_settings": dict(props.configuration_settings or {}),
                "statuses": [{"code": c, "level": level, "message": m} for c, level, m in self._statuses(extension)]}

    # -- teardown ---------------------------------------------------------------------------------------
    def removal(self) -> list[Change]:
        """The extension (Helm uninstalls the connected registry's pod with it) and the digest of
        what crlib sent it."""
        changes = []
        if self.cluster() is not None and self.extension() is not None:
            operations = self._ctx.clients.extensions.extensions
            changes.append(deletion(self.step, "extension", self.arc.extension_name,
                                    f"delete {self.label}",
                                    lambda: operations.begin_delete(*self._args(), self.arc.extension_name).result()))
        return changes + secret_deletions(self._ctx, [names.ARC_PROTECTED_DIGEST_SECRET])
