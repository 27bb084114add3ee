# flashclaim: `make run` starts the whole system locally, `make test` checks everything.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

# Demo secrets for a local run; set your own in the environment for anything else.
export FLASHCLAIM_JWT_SECRET ?= local-demo-jwt-secret-not-for-production
export FLASHCLAIM_ADMIN_TOKEN ?= local-demo-admin-token-not-for-production
export FLASHCLAIM_CREDIT_PAYMENT_SECRET ?= local-demo-credit-payment-secret-not-for-production

.PHONY: install tools lint types test test-cluster run bench loadtest clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install flashclaim with its dev tools

# Debian's prometheus package brings the server and promtool the deploy tests run;
# its chromium, the headless browser the H5 page tests drive (never `playwright install`).
tools: ## system tools the tests need (apt, as root): prometheus/promtool, chromium
	@command -v promtool >/dev/null || { echo "installing prometheus + promtool (apt)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends prometheus >/dev/null; }
	@command -v chromium >/dev/null || { echo "installing chromium (apt)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends chromium >/dev/null; }

lint: install ## ruff: lint and formatting
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: install ## mypy, strict
	$(BIN)/mypy

# The claim and hand-off suites run a second time on a local Redis Cluster (3 masters +
# 3 replicas) in `make test`; `make test-cluster` adds the fault, load-test and shard suites.
CLUSTER_QUICK := tests/claim tests/handoff/test_handoff.py
# The load tests go last: their `flashclaim up` stack lives to the session's end on the same
# cluster, and its relay would carry (and its replayer settle) later tests' outboxes.
CLUSTER_ALL := tests/claim tests/handoff tests/cluster tests/shards tests/loadtests

test: tools lint types ## lint, types, the whole suite, then claim and hand-off tests on a Redis Cluster
	$(BIN)/pytest
	TEST_REDIS_CLUSTER=1 $(BIN)/pytest -q $(CLUSTER_QUICK) --deselect tests/claim/test_model.py

test-cluster: tools install ## the claim, hand-off, fault, load-test and stock-shard suites on a local Redis Cluster
	TEST_REDIS_CLUSTER=1 $(BIN)/pytest -q $(CLUSTER_ALL)

run: install ## the whole stack: Redis, Kafka, PostgreSQL if none answer, gateway, relay, consumer
	$(BIN)/flashclaim up

# Load tests: a scenario of loadtests/ against the stack `make run` started (its addresses
# are in var/stack.env), then the verdict. Reports go to reports/<scenario>.{html,csv}.
SCENARIO ?= seckill
USERS ?= 200
DURATION ?= 60s
SPAWN_RATE ?= $(USERS)
LOCUST_ARGS ?=
loadtest: install ## make loadtest SCENARIO=seckill|skydrop|skydrop_open|bind_herd|retry_storm|abuse|checkout|codes|double11 USERS=.. DURATION=..
	@mkdir -p reports
	@set -a; [ ! -f var/stack.env ] || . ./var/stack.env; set +a; \
	$(BIN)/python -m locust -f loadtests/$(SCENARIO).py --headless \
	  -u $(USERS) -r $(SPAWN_RATE) -t $(DURATION) \
	  --host http://$${FLASHCLAIM_HOST:-127.0.0.1}:$${FLASHCLAIM_PORT:-8080} \
	  --csv reports/$(SCENARIO) --html reports/$(SCENARIO).html $(LOCUST_ARGS)

# Also: p99 at half the peak, RSS after a 100k-user herd (PROFILE=1: a flame graph; BENCH_WORKERS=2).
bench: install ## claims/s vs a hello-world (wrk); hand-off vs COPY; end to end; consumer A/B; rejoin; H5 herd; channels; use; funnel; credit; shards; Redis Cluster and WAIT
	@command -v wrk >/dev/null || { echo "installing wrk (apt)"; \
	  apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
	$(BIN)/python -m bench.claim_bench
	$(BIN)/python -m bench.e2e_bench
	$(BIN)/python -m bench.handoff_ab
	$(BIN)/python -m bench.rejoin_bench
	$(BIN)/python -m bench.public_bench
	$(BIN)/python -m bench.channels_bench
	$(BIN)/python -m bench.redemption_bench
	$(BIN)/python -m bench.stats_bench
	$(BIN)/python -m bench.credit_bench
	$(BIN)/python -m bench.shards_bench
	$(BIN)/python -m bench.cluster_bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache var bench/out reports
