"""The host provisioning script for a real edge device (Ubuntu 22.04 or 24.04).

It follows Microsoft's IoT Edge 1.5 documents: "Install IoT Edge" (Microsoft's package repository,
the Moby engine, the `local` log driver of the production checklist, aziot-edge) and "Create and
provision an IoT Edge device on Linux using symmetric keys" (manual provisioning with the device's
connection string, `iotedge config apply`, `iotedge system status`, `iotedge check`).

The script holds no secret, and puts none on a command line (`ps` shows every process's arguments to
every local user): it reads the connection string from a root-only staging file placed on the device
beforehand, writes the `[provisioning]` section of /etc/aziot/config.toml from it with shell
builtins (the "Manual provisioning with connection string" block of Microsoft's config.toml
template; `iotedge config mp` takes the string as an argument only), and removes the staging file
once `iotedge config apply` has taken the configuration.

`iotedge check` reports one error on every device that has no deployment yet: "production
readiness: Edge Hub's storage directory is persisted on the host filesystem - Error / Could not check
current state of edgeHub container" (check id `edge-hub-storage-mounted-from-host`). Microsoft's
provisioning documents (how-to-provision-single-device-linux-symmetric, and the x509 and DPS
variants) call it expected on a newly provisioned device, since edgeHub does not run yet, and say
that deploying the modules resolves it. The script reads the check's JSON report
(`iotedge check --output json`), shows that finding as waiting for the deployment, and fails on any
other error.

**Nested IoT Edge** (IoT Edge 1.5 docs "Connect Azure IoT Edge devices to create a hierarchy"
(how-to-connect-downstream-iot-edge-device), "Tutorial: Create a hierarchy of IoT Edge devices"
(tutorial-nested-iot-edge), "Configure IoT Edge device settings" (configure-device) and the
config.toml template, edgelet/contrib/config/linux/template.toml in Azure/iotedge; and the connected
registry tutorial tutorial-deploy-connected-registry-nested-iot-edge-cli.md, removed from
MicrosoftDocs/azure-management-docs in May 2025). The global parameters come first, before any
table, as configure-device requires:

- a **gateway** (`device.gateway: true`, any device with children) gets `hostname`, the FQDN or IP
  address its children use as their `parent_hostname` (edgeHub's server certificate carries it), and
  its own edge CA: `[edge_ca]` `cert` and `pk`;
- a **child** (`device.parent_device`) gets `parent_hostname`, `trust_bundle_cert` (the root CA that
  signed its parent's edge CA; required) and `[agent.config] image`: the edgeAgent the device starts
  with, pulled through its parent as `$upstream:<API proxy port>/<images.edge_agent>`, from the same
  place the deployment manifest points its modules (crlib.hosts.iotedge_manifest). The port is the
  connected registry tutorial's: its API proxy listens on 8000 and its `iotedge_config.yaml` sets
  `default_edge_agent: "$upstream:8000/azureiotedge-agent:..."`, while edgeHub publishes 443 (the
  IoT Edge docs' `$upstream:443` is their layout, whose API proxy takes 443). The parent's connected
  registry admits only tokens, so that first pull needs `[agent.config.auth]` (`serveraddress`,
  `username`, `password`: the template's "Default Edge Agent" block; the tutorial's lower layer
  `container_auth` with `serveraddress: "$upstream:8000"`): the child's module pull token
  `<connected registry>-pull`, the one its deployment manifest pulls with. Its password is a secret
  and takes the connection string's way: a root-only staging file (PULL_PASSWORD_FILE), written
  into config.toml with builtins, removed after `iotedge config apply`. `parent_hostname` is the
  parent's host alone (configure-device: an FQDN or IP address, no port), while
  `device.parent_address` is the parent's API proxy as host[:port];
- a **middle layer** is both. `trust_bundle_cert` and `[edge_ca]` are written for any device that
  names them (the how-to gives every device of a hierarchy its own edge CA).

Certificates and keys stay where the engineer put them on the device (the how-to's /var/aziot/certs
and /var/aziot/secrets): config.toml references them as `file://` URIs and the script only checks
that they are regular files, so no key passes through crlib or a command line.
"""

from __future__ import annotations

import ipaddress
import re

from ..azure.devices import parent_device_endpoint
from ..azure.names import DEVICE_SECRET, PULL_SECRET, pull_token_name
from ..context import RunContext
from ..errors import ParameterError
from ..hosts.check_script import shell_assignment, shell_comment
from ..hosts.iotedge_manifest import API_PROXY_PORT

CONNECTION_STRING_FILE = "/etc/aziot/device-connection-string"
# A child's module pull token password, for its first edgeAgent pull through the parent.
PULL_PASSWORD_FILE = "/etc/aziot/upstream-pull-password"
CONFIG_FILE = "/etc/aziot/config.toml"
UBUNTU_VERSIONS = {"ubuntu22.04": "22.04", "ubuntu24.04": "24.04"}
# The `iotedge check --output json` finding Microsoft calls expected until edgeHub runs: (check id, first detail).
EXPECTED_BEFORE_DEPLOYMENT = (("edge-hub-storage-mounted-from-host", "Could not check current state of edgeHub container"),)
# host[:port] or [IPv6 address][:port], as device.parent_address takes it.
_NAME_PORT = re.compile(r"^([A-Za-z0-9.-]+)(?::\d{1,5})?$")
_IPV6_PORT = re.compile(r"^\[([0-9A-Fa-f:.]+)\](?::\d{1,5})?$")
_IPV6 = re.compile(r"^[0-9A-Fa-f:.]+$")

# Reads `iotedge check --output json` (`iotedge check --help`: --output text|json); argv: the report
# file, the check's exit code. The script runs it from a quoted here-document. JSON rather than the
# text: the report keys each finding by its stable check id, with its result and details
# ({"checks": {id: {"result": "ok"|"warning"|"error"|"fatal"|..., "details": [...]}}}), where the text
# is worded for people. python3 comes with every Ubuntu 22.04/24.04 server and cloud image (the
# script installs it anyway); the program needs nothing beyond its standard library.
_READ_CHECK_REPORT = r"""
import json
import sys

EXPECTED = @EXPECTED@
try:
    with open(sys.argv[1]) as report:
        checks = json.load(report)["checks"]
    findings = sorted(checks.items())
except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
    sys.exit(f"error: could not read the report of iotedge check --output json: {exc!r}")
passed, warnings, waiting, errors = [], [], [], []
for check_id, outcome in findings:
    if not isinstance(outcome, dict):
        outcome = {"result": "error", "details": [f"unreadable finding {outcome!r}"]}
    result = outcome.get("result")
    details = [str(d) for d in outcome.get("details") or []]
    first = details[0] if details else ""
    if result == "ok":
        passed.append(check_id)
    elif result == "warning":
        warnings.append(check_id)
        print(f"warning: {check_id}: {' / caused by: '.join(details)}")
    elif result in ("error", "fatal") and (check_id, first) in EXPECTED:
        waiting.append(check_id)
        print(f"waiting for the deployment: {check_id}: {first} (expected until the runbook deploys edgeHub)")
    elif result in ("error", "fatal"):
        errors.append(check_id)
        print(f"error: {check_id}: {' / caused by: '.join(details) or result}")
if int(sys.argv[2]) != 0 and not errors and not waiting:
    errors.append("(exit code)")
    print(f"error: iotedge check exited with {sys.argv[2]} without naming a failed check")
if errors:
    print(f"iotedge check: {len(errors)} error(s); run sudo iotedge check --verbose for the descriptions")
    sys.exit(1)
if waiting:
    print(f"iotedge check: {len(passed)} passed, {len(warnings)} warning(s), waiting for the deployment: "
          f"{', '.join(waiting)}")
elif warnings:
    print(f"iotedge check: no errors; {len(passed)} passed, {len(warnings)} warning(s) (above)")
else:
    print(f"iotedge check: every check passed ({len(passed)})")
"""

# The body is constant; the values above it are shell-quoted assignments.
_BODY = r"""
fail() {
    echo "error: $*" >&2
    exit 1
}

# Tests run this script against a scratch directory standing for the host's root: HOST_ROOT prefixes
# the host's own files (os-release, /etc/aziot, /etc/docker). On a device it is unset, and sudo's
# env_reset keeps a caller's value out.
readonly ROOT=${HOST_ROOT:-}
readonly STAGED=$ROOT$CONNECTION_STRING_FILE
readonly PULL_STAGED=${PULL_PASSWORD_FILE:+$ROOT$PULL_PASSWORD_FILE}
readonly CONFIG=$ROOT$CONFIG_FILE
# Azure IoT Hub's device connection string; the device id is the one this script is for.
readonly CONNECTION_STRING_FORMAT='^HostName=[A-Za-z0-9.-]+;DeviceId=([^;"\]+);SharedAccessKey=[A-Za-z0-9+/=]+$'
# A token password: one line that a TOML basic string holds as it is (no quote, backslash, space or
# control character).
readonly PULL_PASSWORD_FORMAT='^[^"\[:space:][:cntrl:]]+$'

[[ $(id -u) -eq 0 ]] || fail "run this script as root: sudo bash $0"

# shellcheck source=/dev/null
. "$ROOT/etc/os-release"
[[ ${ID:-} == ubuntu && ${VERSION_ID:-} == "$UBUNTU_VERSION" ]] ||
    fail "this script is for Ubuntu $UBUNTU_VERSION; this host runs ${PRETTY_NAME:-an unknown system}"

# The nested IoT Edge certificates: placed on the device beforehand, referenced by config.toml.
for device_file in "$TRUST_BUNDLE_CERT" "$EDGE_CA_CERT" "$EDGE_CA_KEY"; do
    if [[ -n $device_file && ! -f $ROOT$device_file ]]; then
        fail "$device_file is missing: copy it onto the device first (see the top of this script)"
    fi
done

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT

# A staging file holds a secret: a regular file that only root can read.
check_staging_file() {
    local file=$1 owner_mode
    [[ -f $file && ! -L $file ]] || fail "$file must be a regular file, not a link or a directory"
    owner_mode=$(stat -c '%U:%G %a' -- "$file")
    [[ $owner_mode == "root:root 600" ]] ||
        fail "$file must be owned by root:root with mode 600, not $owner_mode:" \
            "chown root:root $file && chmod 600 $file"
}

# The connection string stays in a root-only file: never in this script, shell history or a command
# line. A second run, after the staging file is gone, keeps the configuration that holds it.
connection_string=
if [[ -e $STAGED || -L $STAGED ]]; then
    check_staging_file "$STAGED"
    IFS= read -r connection_string <"$STAGED" || true
    connection_string=${connection_string%$'\r'} # pasted from a Windows clipboard
    if ! [[ $connection_string =~ $CONNECTION_STRING_FORMAT && ${BASH_REMATCH[1]} == "$DEVICE_ID" ]]; then
        fail "$STAGED does not hold the connection string of device $DEVICE_ID"
    fi
elif [[ -f $CONFIG ]] && grep -Fqs -- ";DeviceId=$DEVICE_ID;" "$CONFIG"; then
    echo "$STAGED is gone and $CONFIG provisions device $DEVICE_ID already: keeping it"
else
    fail "$STAGED is missing; create it first (see the top of this script)"
fi

# A child pulls its first edgeAgent from its parent's connected registry, which admits tokens only:
# the module pull token's password takes the connection string's way (root-only staging file,
# builtins, removed once applied). It is needed whenever config.toml is written.
pull_password=
if [[ -n $PULL_STAGED ]]; then
    if [[ -e $PULL_STAGED || -L $PULL_STAGED ]]; then
        check_staging_file "$PULL_STAGED"
        IFS= read -r pull_password <"$PULL_STAGED" || true
        pull_password=${pull_password%$'\r'} # pasted from a Windows clipboard
        [[ $pull_password =~ $PULL_PASSWORD_FORMAT ]] ||
            fail "$PULL_STAGED does not hold a token password (one line without quotes, backslashes or spaces)"
        [[ -n $connection_string ]] ||
            fail "$PULL_STAGED is there but $STAGED is not: this run keeps $CONFIG as it is and would not" \
                "take the password; stage the device connection string as well to write $CONFIG anew"
    elif [[ -n $connection_string ]]; then
        fail "$PULL_STAGED is missing; create it first (see the top of this script)"
    fi
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y ca-certificates wget python3

# Microsoft's package repository and signing key.
if ! dpkg -s packages-microsoft-prod >/dev/null 2>&1; then
    wget -q "https://packages.microsoft.com/config/ubuntu/$UBUNTU_VERSION/packages-microsoft-prod.deb" \
        -O "$workdir/packages-microsoft-prod.deb"
    dpkg -i "$workdir/packages-microsoft-prod.deb"
    apt-get update
fi

# The Moby container engine, unless a container engine is installed already.
if ! command -v dockerd >/dev/null 2>&1; then
    apt-get install -y moby-engine
fi
# Container logs rotate with the "local" driver (the production checklist); an existing daemon
# configuration is left as it is.
if [[ ! -e $ROOT/etc/docker/daemon.json ]]; then
    mkdir -p "$ROOT/etc/docker"
    printf '{\n    "log-driver": "local"\n}\n' >"$ROOT/etc/docker/daemon.json"
    systemctl restart docker
fi

# IoT Edge and the IoT identity service, both of the same release line: Microsoft's install
# documents pin a version with apt's package=version form, the same for both packages.
apt-get install -y aziot-edge="$IOTEDGE_VERSION.*" aziot-identity-service="$IOTEDGE_VERSION.*"

# Manual provisioning with the connection string (the "Manual provisioning with connection string"
# block of Microsoft's config.toml template). echo and printf are builtins: the string is on no
# command line. Like `iotedge config mp --force`, this replaces an existing config.toml.
write_config() {
    local staging=$CONFIG.crlib-new
    rm -f -- "$staging"
    (
        umask 077
        {
            echo "# Written by crlib's provisioning script for device $DEVICE_ID."
            # The global parameters, before any table.
            if [[ -n $EDGE_HOSTNAME ]]; then
                # A gateway: the name its children reach it by.
                printf 'hostname = "%s"\n' "$EDGE_HOSTNAME"
            fi
            if [[ -n $PARENT_HOSTNAME ]]; then
                # A nested device reaches IoT Hub and its registry through its parent.
                printf 'parent_hostname = "%s"\n' "$PARENT_HOSTNAME"
            fi
            if [[ -n $TRUST_BUNDLE_CERT ]]; then
                printf 'trust_bundle_cert = "file://%s"\n' "$TRUST_BUNDLE_CERT"
            fi
            echo
            echo '[provisioning]'
            echo 'source = "manual"'
            printf 'connection_string = "%s"\n' "$connection_string"
            if [[ -n $EDGE_CA_CERT ]]; then
                printf '\n[edge_ca]\ncert = "file://%s"\npk = "file://%s"\n' "$EDGE_CA_CERT" "$EDGE_CA_KEY"
            fi
            if [[ -n $AGENT_IMAGE ]]; then
                # The edgeAgent a child starts with, pulled through its parent.
                printf '\n[agent]\nname = "edgeAgent"\ntype = "docker"\n'
                printf '\n[agent.config]\nimage = "%s"\n' "$AGENT_IMAGE"
            fi
            if [[ -n $pull_password ]]; then
                # The parent's connected registry admits the child's module pull token.
                printf '\n[agent.config.auth]\nserveraddress = "%s"\nusername = "%s"\npassword = "%s"\n' \
                    "$AGENT_AUTH_SERVER" "$AGENT_AUTH_USER" "$pull_password"
            fi
        } >"$staging"
    )
    mv -f -- "$staging" "$CONFIG"
}

if [[ -n $connection_string ]]; then
    mkdir -p "${CONFIG%/*}"
    write_config
    iotedge config apply -c "$CONFIG"
    if [[ -n $pull_password ]]; then
        rm -f -- "$PULL_STAGED"
        echo "removed $PULL_STAGED: $CONFIG (root only) holds the pull token password now"
    fi
    rm -f -- "$STAGED"
    echo "removed $STAGED: $CONFIG (root only) holds the connection string now"
fi

iotedge system status

# iotedge check exits non-zero on a device without a deployment (edgeHub does not run yet); its JSON
# report says which checks failed.
echo "running iotedge check (about a minute)..."
check_status=0
iotedge check --output json >"$workdir/check.json" || check_status=$?
if ! python3 - "$workdir/check.json" "$check_status" <<'READ_CHECK_REPORT'
@READ_CHECK_REPORT@
READ_CHECK_REPORT
then
    fail "iotedge check found problems (above); fix them and run: sudo iotedge check --verbose"
fi
echo "device $DEVICE_ID is provisioned; modules start once the runbook deploys them"
"""
_BODY = _BODY.replace("@READ_CHECK_REPORT@", _READ_CHECK_REPORT.strip().replace(
    "@EXPECTED@", repr(set(EXPECTED_BEFORE_DEPLOYMENT))))


def provisioning_script(ctx: RunContext, *, parent_hostname: str | None = None) -> str:
    """The bash script that installs IoT Edge on the device and provisions it. A nested device's
    parent host defaults to the parent connected registry's device endpoint; a child must name the
    root CA it trusts its parent by (device.trust_bundle_cert)."""
    site = ctx.site
    device = site.device
    version = UBUNTU_VERSIONS[device.host_os]
    field = "parent_hostname"
    if device.parent_device and parent_hostname is None:
        parent_hostname, field = parent_device_endpoint(ctx), "device.parent_address"
    if parent_hostname:
        parent_hostname = bare_host(parent_hostname, field)
    child = device.parent_device is not None
    if child and device.trust_bundle_cert is None:
        raise ParameterError("device.trust_bundle_cert", f"nested device '{device.id}' must trust the root CA that "
                                                         "signed its parent's edge CA; give the certificate's path on "
                                                         "the device")
    agent_image = f"$upstream:{API_PROXY_PORT}/{site.images.edge_agent}" if child else ""
    # The child's module pull token, as the tutorial's lower layer container_auth names its registry.
    agent_auth_server = f"$upstream:{API_PROXY_PORT}" if child else ""
    agent_auth_user = pull_token_name(site.connected_registry.name) if child else ""
    store = ctx.secrets_location
    runtime = site.device.iotedge_version
    header = [
        "#!/usr/bin/env bash",
        shell_comment(f"Installs Azure IoT Edge {runtime} on Ubuntu {version} and provisions it as device "
                      f"'{site.device.id}'"),
        shell_comment(f"of IoT hub '{site.hub.name}' (site '{site.site}'). Generated by crlib; it contains no secret."),
        "#",
        shell_comment(f"Before running it, put the device connection string (secret '{ctx.secret_name(DEVICE_SECRET)}'"),
        shell_comment(f"in {store}) into a file only root can read:"),
        f"#   sudo install -d -m 755 {CONNECTION_STRING_FILE.rsplit('/', 1)[0]}",
        f"#   sudo bash -c 'umask 077; cat > {CONNECTION_STRING_FILE}'   # paste it, then Ctrl-D",
        *(_pull_password_comment(ctx, store, agent_auth_user) if child else []),
        "# then run: sudo bash provision-iotedge.sh",
        f"# The script moves {'them' if child else 'it'} into {CONFIG_FILE} (root only) and removes the "
        f"file{'s' if child else ''}.",
        *_certificate_comment(device.trust_bundle_cert, device.edge_ca_cert, device.edge_ca_key),
        "set -euo pipefail",
        "",
        shell_assignment("UBUNTU_VERSION", version),
        shell_assignment("IOTEDGE_VERSION", runtime),
        shell_assignment("DEVICE_ID", site.device.id),
        shell_assignment("CONNECTION_STRING_FILE", CONNECTION_STRING_FILE),
        shell_assignment("PULL_PASSWORD_FILE", PULL_PASSWORD_FILE if child else ""),
        shell_assignment("CONFIG_FILE", CONFIG_FILE),
        shell_assignment("PARENT_HOSTNAME", parent_hostname or ""),
        shell_assignment("EDGE_HOSTNAME", device.hostname or ""),
        shell_assignment("TRUST_BUNDLE_CERT", device.trust_bundle_cert or ""),
        shell_assignment("EDGE_CA_CERT", device.edge_ca_cert or ""),
        shell_assignment("EDGE_CA_KEY", device.edge_ca_key or ""),
        shell_assignment("AGENT_IMAGE", agent_image),
        shell_assignment("AGENT_AUTH_SERVER", agent_auth_server),
        shell_assignment("AGENT_AUTH_USER", agent_auth_user),
    ]
    return "\n".join(header) + "\n" + _BODY


def _certificate_comment(trust_bundle: str | None, edge_ca_cert: str | None, edge_ca_key: str | None) -> list[str]:
    """What the engineer copies onto the device first (how-to-connect-downstream-iot-edge-device)."""
    files = [(trust_bundle, "the root CA certificate (PEM) that signed the parent's edge CA"),
             (edge_ca_cert, "this device's edge CA certificate (PEM), signed by the same root CA"),
             (edge_ca_key, "its private key (PEM); keep it readable by root only")]
    listed = [f"#   {path}: {shell_comment(what).removeprefix('# ')}" for path, what in files if path]
    return ["# Copy these onto the device first as well (config.toml references them as file URIs):", *listed] \
        if listed else []


def bare_host(address: str, field: str = "parent_hostname") -> str:
    """The host of host[:port] or [IPv6 address][:port]: config.toml's parent_hostname is an FQDN or
    IP address without a port (configure-device), while device.parent_address names the parent's API
    proxy with its port. A bare host, IPv6 address included, comes back as it is."""
    if match := _NAME_PORT.match(address):
        return match.group(1)
    bracketed = _IPV6_PORT.match(address)
    host = bracketed.group(1) if bracketed else address
    try:
        if _IPV6.match(host):  # no zone id: a link-local address's %interface means nothing to the parent
            ipaddress.IPv6Address(host)
            return host
    except ValueError:
        pass
    raise ParameterError(field, f"'{address}' is not a host name or IP address with an optional port")


def _pull_password_comment(ctx: RunContext, store: str, user: str) -> list[str]:
    """A child's second staging file: the module pull token's password, for the first edgeAgent pull."""
    secret = ctx.secret_name(PULL_SECRET)
    return [
        shell_comment(f"This device is nested: it pulls edgeAgent through its parent as token '{user}'."),
        shell_comment(f"Put that token's password (secret '{secret}'"),
        shell_comment(f"in {store}, created by notebook 04's manifest step) into a file only root can read:"),
        f"#   sudo sh -c 'umask 077; cat > {PULL_PASSWORD_FILE}'   # paste it, then Ctrl-D",
    ]
