PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
AZ_VENV := .azcli

.PHONY: test test-azcli lint venv azcli clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

venv: $(PY)
	$(PY) -m pip install -q -e '.[test]'

lint: venv
	$(VENV)/bin/ruff check crlib tests

test: venv lint
	$(PY) -m pytest

# The official Azure CLI pins its own SDK versions, so it lives in a venv of its own.
$(AZ_VENV)/bin/az:
	$(PYTHON) -m venv $(AZ_VENV)
	$(AZ_VENV)/bin/pip install -q 'azure-cli==2.91.0'

azcli: $(AZ_VENV)/bin/az

test-azcli: venv azcli
	CRLIB_AZ=$(CURDIR)/$(AZ_VENV)/bin/az $(PY) -m pytest -m azcli

clean:
	rm -rf $(VENV) $(AZ_VENV) build *.egg-info
