PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
AZ_VENV := .azcli

.PHONY: lock test test-stress test-long test-azcli test-browser test-wheel lint venv azcli demo lab clean

# The hashed lock of everything .venv holds: crlib's dependencies with the sandbox, test and lab extras,
# pip and the build backend (see docs/installing.md). pyproject.toml keeps ranges for library users;
# make and CI install the lock, then crlib itself without dependencies. `make lock` regenerates it.
LOCK := requirements/dev.lock
LOCK_PYTHON := 3.11.5
UV_VERSION := 0.13.9

$(PY):
	$(PYTHON) -m venv $(VENV)

venv: $(PY)
	$(PY) -m pip install -q --require-hashes -r $(LOCK)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .

# Re-resolves the lock after a change to pyproject.toml's dependencies or requirements/build.in, keeping
# every pin that still fits; `make lock UPGRADE=1` moves every pin to the newest release in range.
# uv runs from a throwaway venv. The lock is resolved for Linux x86_64 and checked to pin the same
# versions on aarch64 (each pin carries the hashes of all its wheels and its sdist).
lock:
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PYTHON) -m venv "$$tmp/venv"; "$$tmp/venv/bin/pip" install -q 'uv==$(UV_VERSION)'; \
	compile() { "$$tmp/venv/bin/uv" pip compile -q pyproject.toml requirements/build.in \
		--extra sandbox --extra test --extra lab --generate-hashes --python-version $(LOCK_PYTHON) \
		--custom-compile-command 'make lock' "$$@"; }; \
	compile --python-platform x86_64-unknown-linux-gnu $(if $(UPGRADE),--upgrade) -o $(LOCK); \
	cp $(LOCK) "$$tmp/aarch64.lock"; \
	compile --python-platform aarch64-unknown-linux-gnu -o "$$tmp/aarch64.lock"; \
	grep -E '^[a-z0-9]' $(LOCK) >"$$tmp/x86_64.pins"; grep -E '^[a-z0-9]' "$$tmp/aarch64.lock" >"$$tmp/aarch64.pins"; \
	if ! diff "$$tmp/x86_64.pins" "$$tmp/aarch64.pins"; then \
		echo 'make lock: the pins differ between x86_64 and aarch64 (see above)' >&2; exit 1; fi; \
	echo "make lock: $(LOCK) pins $$(grep -cE '^[a-z0-9]' $(LOCK)) packages"

lint: venv
	$(VENV)/bin/ruff check crlib tests setup.py
	$(VENV)/bin/mypy
	bash -n scripts/*.sh

test: venv lint
	$(PY) -m pytest

# `make test` while Debian's stress-ng (installed when missing) keeps four CPU workers busy beside it:
# catches tests that race a wall-clock timer. Prints the suite's wall time.
test-stress: venv
	bash scripts/test-stress.sh

# The official Azure CLI pins its own SDK versions, so it lives in a venv of its own.
$(AZ_VENV)/bin/az:
	$(PYTHON) -m venv $(AZ_VENV)
	$(AZ_VENV)/bin/pip install -q 'azure-cli==2.91.0'

azcli: $(AZ_VENV)/bin/az

# The long part of the reliability suite: every kill point, ten faulted runs.
test-long: venv
	$(PY) -m pytest -m long

# The sdist and wheel built from this tree, installed into fresh venvs outside it (with and without the
# sandbox extra), used from a folder outside it: the runbook runs against the sandbox and its archive verifies.
test-wheel: venv
	$(PY) -m pytest -m wheel tests/test_wheel.py

test-azcli: venv azcli
	CRLIB_AZ=$(CURDIR)/$(AZ_VENV)/bin/az $(PY) -m pytest -m azcli

# The notebooks in JupyterLab, driven like a user in headless Chromium (Debian's package) by Playwright
# (from the test extra; it downloads no browser). Screenshots: tests/browser/artifacts/ or $CRLIB_ARTIFACTS.
test-browser: venv
	@test -x /usr/bin/chromium || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
		|| { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	$(PY) -m pytest -m browser tests/browser

# The whole runbook headless against a sandbox it starts and stops; leaves an archive in runs/.
demo: venv
	bash scripts/demo.sh

# The sandbox and JupyterLab (with the widgets extension) for stepping through by hand.
lab: venv
	bash scripts/lab.sh

clean:
	rm -rf $(VENV) $(AZ_VENV) .sandbox .sandbox-demo build dist *.egg-info crlib/_bundled

# Benchmarks: each starts its own sandbox in a temporary directory, prints a table and a RESULT line,
# and writes benchmarks/results/<name>.json (see benchmarks/README.md).
.PHONY: bench bench-scheduling bench-arm bench-headless bench-datapath bench-plan bench-fleet bench-redirect

bench: venv bench-scheduling bench-arm bench-headless bench-datapath bench-plan bench-fleet bench-redirect

bench-scheduling: venv
	$(PY) benchmarks/scheduling.py

bench-arm: venv
	$(PY) benchmarks/arm_economy.py

bench-headless: venv
	$(PY) benchmarks/headless_overhead.py

bench-datapath: venv
	$(PY) benchmarks/datapath.py

bench-plan: venv
	$(PY) benchmarks/plan_overhead.py

bench-fleet: venv
	$(PY) benchmarks/fleet.py

bench-redirect: venv
	$(PY) benchmarks/redirect.py
