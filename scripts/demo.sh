#!/usr/bin/env bash
# `make demo`: the whole runbook, headless, against a sandbox started for it (and stopped after).
set -euo pipefail
cd "$(dirname "$0")/.."
crlib=.venv/bin/crlib
export CRLIB_SANDBOX_DIR=${CRLIB_SANDBOX_DIR:-$PWD/.sandbox}

"$crlib" sandbox start --clock-speed 60
trap '"$crlib" sandbox stop >/dev/null' EXIT

"$crlib" run parameters/sandbox.yaml
run_dir=$(find runs -mindepth 1 -maxdepth 1 -type d -name '*-sandbox-lab-*' | sort | tail -n 1)
"$crlib" archive verify "$run_dir"
echo
"$crlib" archive list
