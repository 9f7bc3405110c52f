"""The host provisioning script for a real edge device (Ubuntu 22.04 or 24.04).

It follows Microsoft's "Install IoT Edge for Linux" and "provision with symmetric keys" steps:
Microsoft's package repository configuration, the Moby engine, aziot-edge, then `iotedge config mp`
and `iotedge config apply`, `iotedge system status` and `iotedge check`. The script holds no
secret: it reads the device connection string from a root-only file placed on the device
beforehand, and refuses to run when that file is readable by anyone but root.
"""

from __future__ import annotations

import re
import shlex

from ..azure.devices import parent_device_endpoint
from ..azure.names import DEVICE_SECRET
from ..context import RunContext
from ..errors import ParameterError

CONNECTION_STRING_FILE = "/etc/aziot/device-connection-string"
UBUNTU_VERSIONS = {"ubuntu22.04": "22.04", "ubuntu24.04": "24.04"}
_HOST = re.compile(r"^[A-Za-z0-9.-]+(:\d{1,5})?$")

# The body is constant; the values above it are shell-quoted assignments.
_BODY = r"""
fail() {
    echo "error: $*" >&2
    exit 1
}

[[ $(id -u) -eq 0 ]] || fail "run this script as root: sudo bash $0"

# shellcheck source=/dev/null
. /etc/os-release
[[ ${ID:-} == ubuntu && ${VERSION_ID:-} == "$UBUNTU_VERSION" ]] ||
    fail "this script is for Ubuntu $UBUNTU_VERSION; this host runs ${PRETTY_NAME:-an unknown system}"

# The connection string stays in a root-only file: never in this script, never in shell history.
[[ -f $CONNECTION_STRING_FILE && ! -L $CONNECTION_STRING_FILE ]] ||
    fail "$CONNECTION_STRING_FILE is missing; create it first (see the top of this script)"
owner_mode=$(stat -c '%U:%G %a' "$CONNECTION_STRING_FILE")
[[ $owner_mode == "root:root 600" ]] ||
    fail "$CONNECTION_STRING_FILE must be owned by root:root with mode 600, not $owner_mode:" \
        "chown root:root $CONNECTION_STRING_FILE && chmod 600 $CONNECTION_STRING_FILE"
if ! grep -Eq '^HostName=[^;]+;DeviceId=[^;]+;SharedAccessKey=[^;]+$' "$CONNECTION_STRING_FILE" ||
    ! grep -Fq ";DeviceId=$DEVICE_ID;" "$CONNECTION_STRING_FILE"; then
    fail "$CONNECTION_STRING_FILE does not hold the connection string of device $DEVICE_ID"
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y ca-certificates wget

# Microsoft's package repository and signing key.
if ! dpkg -s packages-microsoft-prod >/dev/null 2>&1; then
    workdir=$(mktemp -d)
    trap 'rm -rf "$workdir"' EXIT
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
if [[ ! -e /etc/docker/daemon.json ]]; then
    mkdir -p /etc/docker
    printf '{\n    "log-driver": "local"\n}\n' >/etc/docker/daemon.json
    systemctl restart docker
fi

# IoT Edge and the IoT identity service.
apt-get install -y aziot-edge

# Manual provisioning with the device's connection string, read from the root-only file.
iotedge config mp --connection-string "$(cat "$CONNECTION_STRING_FILE")" --force
if [[ -n $PARENT_HOSTNAME ]]; then
    # A nested device reaches IoT Hub and its registry through its parent.
    sed -i "1i parent_hostname = \"$PARENT_HOSTNAME\"" /etc/aziot/config.toml
fi
iotedge config apply

iotedge system status
if ! iotedge check; then
    fail "iotedge check found problems (above); fix them and run: sudo iotedge check"
fi
echo "device $DEVICE_ID is provisioned; modules start once the runbook deploys them"
"""


def _assign(name: str, value: str) -> str:
    line = f"readonly {name}={shlex.quote(value)}"
    # A device id may hold '$' or '`'; single-quoted it stays literal, which SC2016 asks about.
    return f"# shellcheck disable=SC2016\n{line}" if any(c in value for c in "$`") else line


def _comment(text: str) -> str:
    """Text for a comment line: control characters (a newline would end the comment) removed."""
    return "# " + "".join(c for c in text if c.isprintable())


def provisioning_script(ctx: RunContext, *, parent_hostname: str | None = None) -> str:
    """The bash script that installs IoT Edge on the device and provisions it. A nested device's
    parent host defaults to the parent connected registry's device endpoint."""
    site = ctx.site
    version = UBUNTU_VERSIONS[site.device.host_os]
    if site.device.parent_device and parent_hostname is None:
        parent_hostname = parent_device_endpoint(ctx)
    if parent_hostname and not _HOST.match(parent_hostname):
        raise ParameterError("parent_hostname", f"'{parent_hostname}' is not a host name")
    store = f"Key Vault {site.secrets.vault_url}" if site.secrets.store == "keyvault" else site.secrets.local_dir
    header = [
        "#!/usr/bin/env bash",
        _comment(f"Installs Azure IoT Edge on Ubuntu {version} and provisions it as device '{site.device.id}'"),
        _comment(f"of IoT hub '{site.hub.name}' (site '{site.site}'). Generated by crlib; it contains no secret."),
        "#",
        _comment(f"Before running it, put the device connection string (secret '{ctx.secret_name(DEVICE_SECRET)}'"),
        _comment(f"in {store}) into a file only root can read:"),
        f"#   sudo install -d -m 755 {CONNECTION_STRING_FILE.rsplit('/', 1)[0]}",
        f"#   sudo bash -c 'umask 077; cat > {CONNECTION_STRING_FILE}'   # paste it, then Ctrl-D",
        "# then run: sudo bash provision-iotedge.sh",
        "set -euo pipefail",
        "",
        _assign("UBUNTU_VERSION", version),
        _assign("DEVICE_ID", site.device.id),
        _assign("CONNECTION_STRING_FILE", CONNECTION_STRING_FILE),
        _assign("PARENT_HOSTNAME", parent_hostname or ""),
    ]
    return "\n".join(header) + "\n" + _BODY
