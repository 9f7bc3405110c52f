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
# No "Would you like to get notified about official Jupyter news?" prompt: JupyterLab 4 asks while its
# notification setting fetchNews is "none", whatever news_url says, so scripts/lab-config (a Jupyter
# config dir, read after the user's own) sets it to "false" by default; news_url=None and the update
# check class keep the server from fetching anything. A choice made in Settings still wins.
export JUPYTER_CONFIG_PATH="$PWD/scripts/lab-config${JUPYTER_CONFIG_PATH:+:$JUPYTER_CONFIG_PATH}"
exec .venv/bin/jupyter lab --ip=127.0.0.1 --no-browser --notebook-dir=notebooks \
    --LabApp.news_url=None --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate "${root[@]}" "$@"
