#!/usr/bin/env bash
# `make lab`: the sandbox plus JupyterLab on 127.0.0.1, opened on the runbook's notebooks.
set -euo pipefail
cd "$(dirname "$0")/.."
export CRLIB_SANDBOX_DIR=${CRLIB_SANDBOX_DIR:-$PWD/.sandbox}
.venv/bin/crlib sandbox start --clock-speed 60
echo "The sandbox keeps running after JupyterLab stops: .venv/bin/crlib sandbox stop --state-dir $CRLIB_SANDBOX_DIR"
# JupyterLab refuses to start as root (containers, CI) without --allow-root.
root=()
if [ "$(id -u)" = 0 ]; then root=(--allow-root); fi
exec .venv/bin/jupyter lab --ip=127.0.0.1 --no-browser --notebook-dir=notebooks "${root[@]}" "$@"
