# Two commands a newcomer needs: `make run` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test setup system-deps cluster protos lint-protos proto-baseline clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

## Debian packages, installed when missing: iptables and iproute2 for the network-partition tests,
## libseccomp2 for the script sandbox (its workers refuse to run scripts without seccomp),
## nats-server for the NATS bridge's tests (tests/bridge), and for the deploy/ tests yq (YAML to
## JSON), kubectl (kubernetes-client: renders the kustomization) and systemd-analyze (systemd);
## node and npm for the Node.js example's test (tests/examples; npm installs its pinned packages);
## chromium and chromedriver (chromium-driver) for the web UI's browser tests (tests/web).
system-deps:
	@if ! command -v iptables >/dev/null 2>&1 || ! command -v ip >/dev/null 2>&1 \
		|| ! { ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null; } | grep -q 'libseccomp\.so\.2'; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			(apt-get install -y -q iptables iproute2 libseccomp2 || (apt-get update -q && apt-get install -y -q iptables iproute2 libseccomp2)) >/dev/null; \
		else echo "note: iptables/iproute2/libseccomp2 missing and cannot be installed here; partition tests will say why, scripts fail with 'seccomp unavailable'"; fi; \
	fi
	@if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			(apt-get install -y -q nats-server || (apt-get update -q && apt-get install -y -q nats-server)) >/dev/null; \
		else echo "note: nats-server missing and cannot be installed here; the NATS bridge tests will say why"; fi; \
	fi
	@for pair in yq:yq kubectl:kubernetes-client systemd-analyze:systemd node:nodejs npm:npm chromium:chromium chromedriver:chromium-driver; do \
		cmd=$${pair%%:*}; pkg=$${pair#*:}; \
		if ! command -v $$cmd >/dev/null 2>&1; then \
			if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
				(apt-get install -y -q $$pkg || (apt-get update -q && apt-get install -y -q $$pkg)) >/dev/null; \
			else echo "note: $$cmd missing and cannot be installed here; the deploy/ tests will say why"; fi; \
		fi; \
	done

## Start a local three-replica cluster (gRPC 127.0.0.1:50051-50053) with the order demo; Ctrl-C stops it.
run: setup system-deps
	$(VENV)/bin/orchestrator local-cluster --demo

## Start the local cluster without the demo.
cluster: setup system-deps
	$(VENV)/bin/orchestrator local-cluster

## Run the whole test suite.
test: setup system-deps
	$(PY) -m pytest -q -p no:cacheprovider

## Regenerate the gRPC code in client/orchestrator_client/v1 from protos/.
protos: setup
	$(PY) scripts/gen_protos.py

## buf lint over protos/ (STANDARD rules, buf.yaml; the buf pinned in tools/buf/, needs node and npm).
lint-protos: setup
	$(PY) -m pytest -q -p no:cacheprovider tests/test_buf_lint.py

## Record the protos as released (tools/buf/wire-baseline.json), which `buf breaking` in
## tests/test_buf_lint.py holds every later change to. Only for a deliberate, versioned break.
proto-baseline: setup
	$(PY) scripts/proto_baseline.py

clean:
	rm -rf $(VENV) .local-cluster build *.egg-info
