# Two commands on a fresh machine with Python 3.11: `make run` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The pinned versions tested together; pip installs exactly these.
CONSTRAINTS := constraints.txt

.PHONY: run test test-fast lint format hooks install clean bench bench-quality bench-serving bench-ui bench-soak docs chromium

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=24"

$(STAMP): $(BIN)/python pyproject.toml $(CONSTRAINTS)
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## chromium: Debian's chromium for the page's browser tests (Playwright drives it; its own
## browser download does not work here)
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing Debian's chromium for the browser tests"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

## run: simulate a retailer and run the main job on it
run: $(STAMP)
	$(BIN)/kizuna run

## test: the whole test suite, browser tests included (tests needing ../shared/data skip
## without it)
test: $(STAMP) chromium
	$(BIN)/python -m pytest -q

## test-fast: the code-level tests only (no slow, real-data or service tests)
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not shared and not browser"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## hooks: check every commit with ruff, as `make lint` does (.pre-commit-config.yaml)
hooks: $(STAMP)
	$(BIN)/pre-commit install

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

docs: $(STAMP)
	$(BIN)/kizuna contracts --markdown > docs/data.md.new && mv docs/data.md.new docs/data.md

bench: $(STAMP)
	$(BIN)/python benchmarks/simulate_ingest.py
	$(BIN)/python benchmarks/features_build.py
	$(BIN)/python benchmarks/online_features.py

## bench-serving: the API against feast serve, then batch scoring and the score book at 1,000,000
bench-serving: $(STAMP)
	$(BIN)/python benchmarks/serving.py --repeat 3
	$(BIN)/python benchmarks/batch_score.py --customers 1000000 --repeat 3
	$(BIN)/python benchmarks/score_book.py --customers 1000000

## bench-quality: `kizuna ingest` + `kizuna backtest` on the real datasets, beside BG/NBD,
## Pareto/NBD and Gamma-Gamma from the same run (the product's own path)
bench-quality: $(STAMP)
	$(BIN)/python benchmarks/quality_cdnow.py
	$(BIN)/python benchmarks/quality_cdnow.py --sample
	$(BIN)/python benchmarks/quality_online_retail.py
	$(BIN)/python benchmarks/quality_hillstrom.py

## bench-ui: every page's server time and the planner at 100,000 customers
bench-ui: $(STAMP)
	$(BIN)/python benchmarks/ui.py --customers 100000

## bench-soak: 10 minutes of mixed API and page traffic at 8 clients against one
## `kizuna serve` (10,000 customers): errors, latency per route, memory growth
bench-soak: $(STAMP)
	$(BIN)/python benchmarks/soak.py --minutes 10 --clients 8

clean:
	rm -rf $(VENV) data .pytest_cache
