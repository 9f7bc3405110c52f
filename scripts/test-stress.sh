#!/usr/bin/env bash
# `make test-stress`: the default suite (`make test`: lint, then pytest) while Debian's stress-ng keeps
# four CPU workers busy beside it, to catch tests that race a wall-clock timer on a loaded machine.
# stress-ng runs in a session of its own and is stopped when the suite ends, however it ends (passed,
# failed, interrupted, terminated); the suite's wall time is printed then. Exits with the suite's status.
#   STRESS_CPU=8 make test-stress                        # more workers
#   bash scripts/test-stress.sh -x tests/notebooks       # lint, then pytest with these arguments
set -euo pipefail
cd "$(dirname "$0")/.."
cpu_workers=${STRESS_CPU:-4}
make_cmd=${MAKE:-make}

if ! command -v stress-ng >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq stress-ng >/dev/null 2>&1 \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq stress-ng >/dev/null; }
fi

stress_pid=
start=
stop_stress() {
    if [[ -n $stress_pid ]]; then
        # The whole group: stress-ng's parent and its workers.
        kill -TERM -- "-$stress_pid" 2>/dev/null || true
        wait "$stress_pid" 2>/dev/null || true
        stress_pid=
    fi
}
on_exit() {
    local status=$?
    stop_stress
    if [[ -n $start ]]; then
        local elapsed=$(($(date +%s) - start))
        printf 'test-stress: suite exited %d after %dm%02ds wall time (stress-ng --cpu %s beside it)\n' \
            "$status" $((elapsed / 60)) $((elapsed % 60)) "$cpu_workers"
    fi
    exit "$status"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A safety net: stress-ng stops by itself after two hours even if this script is SIGKILLed.
setsid stress-ng --cpu "$cpu_workers" --timeout 2h --quiet >/dev/null 2>&1 &
stress_pid=$!
sleep 1
kill -0 "$stress_pid" 2>/dev/null || { echo "test-stress: stress-ng did not start" >&2; exit 1; }
echo "test-stress: stress-ng --cpu $cpu_workers running (pid $stress_pid)"

start=$(date +%s)
if [[ $# -gt 0 ]]; then
    "$make_cmd" --no-print-directory lint
    .venv/bin/python -m pytest "$@"
else
    "$make_cmd" --no-print-directory test
fi
