"""The on-device check script, for `checks.mode: on-device`: an engineer runs it as root on the device
host, and it does with the Docker CLI what the checks step does from afar.

It logs in to the connected registry's device endpoint as a client token, with the password read
from a root-only file and handed over on stdin (`docker login --password-stdin`, Docker's "docker
login" reference: docs.docker.com/reference/cli/docker/login), pulls the check image, and pushes a
tagged copy of it. A ReadWrite connected registry must accept the push; a ReadOnly one must refuse it
(Microsoft's "What is a connected registry?": a ReadOnly connected registry allows pulls only).

The device's IoT Edge root CA is trusted the way Docker documents for a registry with its own CA
("Verify repository client with certificates", docs.docker.com/engine/security/certificates):
`/etc/docker/certs.d/<host:port>/ca.crt`, read by the Docker daemon.

`shell_assignment` and `shell_comment` are the quoting helpers both generated scripts use (the host
provisioning script imports them).
"""

from __future__ import annotations

import re
import shlex

from ..errors import ParameterError

MODES = ("ReadWrite", "ReadOnly")
DEFAULT_TOKEN_FILE = "/etc/crlib/client-token"
_HOST_PORT = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$")
_ABSOLUTE_PATH = re.compile(r"^/[A-Za-z0-9._/-]+$")


def shell_assignment(name: str, value: str) -> str:
    """`readonly NAME=value`, the value single-quoted by shlex so the shell takes it literally."""
    line = f"readonly {name}={shlex.quote(value)}"
    # A value may hold '$' or '`' (device ids may); single-quoted it stays literal, which SC2016 asks about.
    return f"# shellcheck disable=SC2016\n{line}" if any(c in value for c in "$`") else line


def shell_comment(text: str) -> str:
    """Text for a comment line: control characters (a newline would end the comment) removed."""
    return "# " + "".join(c for c in text if c.isprintable())


# The body is constant; the values above it are shell-quoted assignments.
_BODY = r"""
results=()
failures=0

stop() {
    echo "error: $*" >&2
    exit 2
}

# record PASS|FAIL "what was checked"
record() {
    results+=("$1  $2")
    if [[ $1 != PASS ]]; then
        failures=$((failures + 1))
    fi
}

summary() {
    echo
    echo "On-device checks of site $SITE_NAME, device $DEVICE_ID ($MODE connected registry at $ENDPOINT):"
    printf '  %s\n' "${results[@]}"
    if ((failures > 0)); then
        echo "FAIL: $failures check(s) failed"
        exit 1
    fi
    echo "PASS: every check passed"
}

[[ $(id -u) -eq 0 ]] || stop "run this script as root: sudo bash $0"
command -v docker >/dev/null 2>&1 || stop "docker is not installed on this host"

# The token's password stays in a root-only file: never in this script, a command line or shell history.
[[ -f $TOKEN_FILE && ! -L $TOKEN_FILE ]] ||
    stop "$TOKEN_FILE is missing; put client token $TOKEN_NAME's password there first (see the top of this script)"
owner_mode=$(stat -c '%U:%G %a' -- "$TOKEN_FILE")
[[ $owner_mode == "root:root 600" ]] ||
    stop "$TOKEN_FILE must be owned by root:root with mode 600, not $owner_mode:" \
        "chown root:root $TOKEN_FILE && chmod 600 $TOKEN_FILE"

# Docker trusts a registry's own CA from /etc/docker/certs.d/<host:port>/ca.crt (Docker's "Verify
# repository client with certificates"); without it only the system's CAs count.
ca_file=/etc/docker/certs.d/$ENDPOINT/ca.crt
if [[ ! -f $ca_file ]]; then
    echo "note: $ca_file is missing: Docker trusts $ENDPOINT only if a system CA signed its certificate;" \
        "copy the device's IoT Edge root CA there if the pull fails with a certificate error" >&2
fi

# A throwaway client configuration: docker login keeps the password in config.json, which must not
# outlive this script or touch root's own.
DOCKER_CONFIG=$(mktemp -d)
export DOCKER_CONFIG
trap 'rm -rf "$DOCKER_CONFIG"' EXIT

pulled=$ENDPOINT/$PULL_IMAGE
pushed=$ENDPOINT/$PUSH_REPOSITORY:$PUSH_TAG

if ! docker login --username "$TOKEN_NAME" --password-stdin "$ENDPOINT" <"$TOKEN_FILE"; then
    record FAIL "log in to $ENDPOINT as $TOKEN_NAME"
    summary
fi
record PASS "log in to $ENDPOINT as $TOKEN_NAME"

if ! docker pull "$pulled"; then
    record FAIL "pull $pulled"
    summary
fi
record PASS "pull $pulled"

if ! docker tag "$pulled" "$pushed"; then
    record FAIL "tag $pulled as $pushed"
    summary
fi
if push_output=$(docker push "$pushed" 2>&1); then
    push_accepted=true
else
    push_accepted=false
fi
printf '%s\n' "$push_output"
docker image rm "$pushed" >/dev/null 2>&1 || true

# A refusal is the registry's answer (denied, unauthorized, not allowed); a network or TLS error is not one.
refused_by_registry=false
if grep -Eqi 'denied|unauthorized|not allowed' <<<"$push_output"; then
    refused_by_registry=true
fi
last_line=${push_output##*$'\n'}
if [[ $MODE == ReadWrite ]]; then
    if $push_accepted; then
        record PASS "push $pushed accepted (ReadWrite)"
    else
        record FAIL "push $pushed failed, but a ReadWrite connected registry must accept it: $last_line"
    fi
elif $push_accepted; then
    record FAIL "push $pushed accepted, but a ReadOnly connected registry must refuse it"
elif $refused_by_registry; then
    record PASS "push $pushed refused (ReadOnly): $last_line"
else
    record FAIL "push $pushed failed without the registry refusing it: $last_line"
fi
summary
"""


def on_device_check_script(*, site_name: str, device_id: str, endpoint: str, pull_image: str,
                           push_repository: str, push_tag: str, mode: str, token_name: str,
                           token_file: str = DEFAULT_TOKEN_FILE) -> str:
    """The bash script that checks the connected registry from the device host: log in as
    `token_name`, pull `endpoint/pull_image`, push `endpoint/push_repository:push_tag`; ReadWrite
    must accept the push, ReadOnly must refuse it. It exits non-zero when a check fails."""
    if mode not in MODES:
        raise ParameterError("connected_registry.mode", f"'{mode}' is not one of {', '.join(MODES)}")
    if not _HOST_PORT.match(endpoint):
        raise ParameterError("device.address", f"'{endpoint}' is not host[:port] of the device's registry endpoint; "
                                               "on-device checks need it")
    if not _ABSOLUTE_PATH.match(token_file):
        raise ParameterError("token_file", f"'{token_file}' is not an absolute path")
    header = [
        "#!/usr/bin/env bash",
        shell_comment(f"Checks the {mode} connected registry of site '{site_name}' on device '{device_id}' from "
                      "the device host,"),
        shell_comment(f"through its endpoint {endpoint}. Generated by crlib; it contains no secret."),
        "#",
        shell_comment(f"Before running it, put client token '{token_name}''s password into a file only root can "
                      "read:"),
        f"#   sudo install -d -m 700 {token_file.rsplit('/', 1)[0] or '/'}",
        f"#   sudo bash -c 'umask 077; cat > {token_file}'   # paste it, then Ctrl-D",
        shell_comment(f"and the device's IoT Edge root CA into /etc/docker/certs.d/{endpoint}/ca.crt, then run:"),
        "#   sudo bash <this script>",
        "set -euo pipefail",
        "",
        shell_assignment("SITE_NAME", site_name),
        shell_assignment("DEVICE_ID", device_id),
        shell_assignment("ENDPOINT", endpoint),
        shell_assignment("PULL_IMAGE", pull_image),
        shell_assignment("PUSH_REPOSITORY", push_repository),
        shell_assignment("PUSH_TAG", push_tag),
        shell_assignment("MODE", mode),
        shell_assignment("TOKEN_NAME", token_name),
        shell_assignment("TOKEN_FILE", token_file),
    ]
    return "\n".join(header) + "\n" + _BODY
