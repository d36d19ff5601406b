# Two commands a newcomer needs: `make run` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test setup cluster protos lint chaos clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

## Start a local three-replica cluster (gRPC 127.0.0.1:50051-50053) with the order demo; Ctrl-C stops it.
run: setup
	$(VENV)/bin/orchestrator local-cluster --demo

## Start the local cluster without the demo.
cluster: setup
	$(VENV)/bin/orchestrator local-cluster

## Run the whole test suite.
test: setup
	$(PY) -m pytest -q -p no:cacheprovider

## Regenerate the gRPC code in client/orchestrator_client/v1 from protos/.
protos: setup
	$(PY) scripts/gen_protos.py

clean:
	rm -rf $(VENV) .local-cluster build *.egg-info
