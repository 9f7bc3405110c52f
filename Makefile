PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
AZ_VENV := .azcli

.PHONY: test test-long test-azcli test-browser test-wheel lint venv azcli demo lab clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

venv: $(PY)
	$(PY) -m pip install -q -e '.[test,lab]'

lint: venv
	$(VENV)/bin/ruff check crlib tests setup.py
	$(VENV)/bin/mypy
	bash -n scripts/*.sh

test: venv lint
	$(PY) -m pytest

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
	rm -rf $(VENV) $(AZ_VENV) .sandbox build dist *.egg-info crlib/_bundled

# Benchmarks: each starts its own sandbox in a temporary directory, prints a table and a RESULT line,
# and writes benchmarks/results/<name>.json (see benchmarks/README.md).
.PHONY: bench bench-scheduling bench-arm bench-headless bench-datapath

bench: venv bench-scheduling bench-arm bench-headless bench-datapath

bench-scheduling: venv
	$(PY) benchmarks/scheduling.py

bench-arm: venv
	$(PY) benchmarks/arm_economy.py

bench-headless: venv
	$(PY) benchmarks/headless_overhead.py

bench-datapath: venv
	$(PY) benchmarks/datapath.py
