# The two commands a newcomer needs: `make run` and `make test`.
# Both create .venv when it is missing and install the project into it first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
OUT    ?= out

export RAY_AUTH_MODE ?= disabled
export RAY_USAGE_STATS_ENABLED ?= 0
export MPLBACKEND ?= Agg

.PHONY: run test test-fast lint format bench venv clean proto

venv: $(STAMP)

# installs the project, then compiles greedy's slot loop once (numba caches it in __pycache__;
# every later process loads it from there)
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -c "from scheduler.policies.greedy import warm_up; warm_up()"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/greensched forecast --out $(OUT)/supply.csv --plot $(OUT)/supply.png
	$(BIN)/greensched demo --out $(OUT)/demo --speedup 720

# two workers (the machines have 2 cores; many end-to-end tests wait on a simulated clock or
# on Ray); the cluster tests share one Ray and stay on one worker
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup --durations=15

# the same suite without the end-to-end tests marked slow (they still run in `make test` and CI)
test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup -m "not slow" --durations=10

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache

# gRPC stubs of the load-cap service (committed; tests/service/test_stubs.py fails when stale).
# grpcio-tools stays < 1.82: newer stubs need protobuf 7 and fail at import with protobuf 6.33.
PROTO_DIR := scheduler/drivers/service/proto
PB_DIR    := scheduler/drivers/service/pb
proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I $(PROTO_DIR) --python_out=$(PB_DIR) --pyi_out=$(PB_DIR) \
		--grpc_python_out=$(PB_DIR) $(PROTO_DIR)/greensched/v1/loadcap.proto
	sed -i 's/^from greensched\.v1 import/from . import/' $(PB_DIR)/greensched/v1/loadcap_pb2_grpc.py
