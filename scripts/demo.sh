#!/usr/bin/env bash
# `make demo`: the whole runbook, headless, against a sandbox started for it (and stopped after), on
# both hosts: an Arc-enabled Kubernetes cluster (parameters/sandbox-arc.yaml), the supported host,
# and an IoT Edge device (parameters/sandbox.yaml). Each run's archive is verified.
set -euo pipefail
cd "$(dirname "$0")/.."
crlib=.venv/bin/crlib
python=.venv/bin/python
# A sandbox of its own (not make lab's .sandbox): what is done by hand in the lab never breaks a demo.
export CRLIB_SANDBOX_DIR=${CRLIB_DEMO_SANDBOX_DIR:-$PWD/.sandbox-demo}
arc_params=parameters/sandbox-arc.yaml
iotedge_params=parameters/sandbox.yaml

"$crlib" sandbox start --clock-speed 60
trap '"$crlib" sandbox stop >/dev/null' EXIT

# The newest run folder of a site (run folders are named <UTC>-<site>-<id>).
latest_run() {
    find runs -mindepth 1 -maxdepth 1 -type d -name "*-$1-*" | sort | tail -n 1
}

# A value of the Arc site's parameters, e.g. `arc_param host.arc.cluster`.
arc_param() {
    "$python" - "$arc_params" "$1" <<'PY'
import sys
from crlib import params
value = params.load_file(sys.argv[1])
for part in sys.argv[2].split("."):
    value = getattr(value, part)
print(value)
PY
}

# --- Arc: connect the cluster first, as the operator runs `az connectedk8s connect` on Azure. ---
# Its resource group is created first, as `az group create` would (--create-group).
cluster=$(arc_param host.arc.cluster)
cluster_group=$(arc_param host.arc.cluster_resource_group)
if ! connect_out=$("$crlib" sandbox cluster connect "$cluster" -g "$cluster_group" \
        --create-group --service-cidr 10.0.0.0/16 --storage-class standard 2>&1); then
    # A sandbox kept from an earlier demo has the cluster already.
    grep -q "already exists" <<<"$connect_out" || { echo "$connect_out" >&2; exit 1; }
    echo "Arc cluster '$cluster' is connected already"
else
    echo "$connect_out"
fi

start=$SECONDS
"$crlib" run --yes "$arc_params"   # --yes: no question, even from a terminal
arc_run=$(latest_run "$(arc_param site)")
"$crlib" archive verify "$arc_run"
echo "Arc site: $((SECONDS - start))s"
echo

# --- IoT Edge (Microsoft no longer supports connected registries on IoT Edge; Arc is the supported host). ---
start=$SECONDS
"$crlib" run --yes "$iotedge_params"
iotedge_run=$(latest_run sandbox-lab)
"$crlib" archive verify "$iotedge_run"
echo "IoT Edge site: $((SECONDS - start))s"
echo
"$crlib" archive list
