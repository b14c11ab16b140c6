# Conveyor — every set-up and check goes through these targets (README, CI and the hook alike).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# constraints.txt pins the whole dependency tree so a fresh clone installs what CI tested.
PIP_INSTALL := $(BIN)/pip install --disable-pip-version-check -q -c constraints.txt

.PHONY: venv browser run demo bench test check lint fmt typecheck emulator docs clean

$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)  ## create or update the virtual environment

# The browser tests (tests/browser) and the console's screenshots drive Debian's chromium
# through Playwright (its own browser download is not available everywhere). As root on a
# machine with apt-get and no chromium, it is installed (about 50 s); otherwise one line
# says what to install. Without it the browser tests skip, and fail under CI=true.
CHROMIUM_LOG := $(VENV)/chromium-install.log
browser: $(STAMP)  ## the browser the browser tests drive: Debian's chromium
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's chromium for the browser tests (apt-get, about a minute)"; \
	  ( export DEBIAN_FRONTEND=noninteractive; apt-get update -qq \
	    && apt-get install -y -qq --no-install-recommends chromium ) >$(CHROMIUM_LOG) 2>&1 \
	  || echo "apt-get install chromium failed (see $(CHROMIUM_LOG)): the browser tests will not run"; \
	else \
	  echo "the browser tests need Debian's chromium: sudo apt-get install chromium (without it they skip; under CI=true they fail)"; \
	fi

run: $(STAMP)  ## start the whole system on the embedded emulator and submit the sample workload once
	$(BIN)/conveyor up --sample-workload

demo: $(STAMP)  ## the same, headless: submit the sample workload, wait, print a summary, exit
	$(BIN)/conveyor demo

bench: $(STAMP)  ## Celery vs the raw boto3 floor vs Conveyor (concurrency 2 and 8; 100 ms I/O per pool) on one emulator, with issue 17's targets: JSON on stdout, tables on stderr
	$(BIN)/python -m benchmarks --out .conveyor/bench/results.json --results-md .conveyor/bench/RESULTS.md

.PHONY: soak
SOAK_JOBS  ?= 50000
SOAK_POOLS ?= prefork,threads,solo
# Not a test: figures only. 50,000 jobs of 50 ms take ~15-30 min per pool kind on 2 cores.
soak: $(STAMP)  ## memory of one node per pool kind over SOAK_JOBS jobs (default 50000): JSON on stdout
	$(BIN)/python -m benchmarks.soak --jobs $(SOAK_JOBS) --pools $(SOAK_POOLS) --out .conveyor/soak/results.json

emulator: $(STAMP)  ## run the embedded emulator in the foreground
	$(BIN)/conveyor emulator

test: $(STAMP) browser  ## the test suite (unit, integration against a real moto server, end to end, browser)
	$(BIN)/pytest

.PHONY: faults
# -n 0: one full-size scenario at a time (each loads the machine on its own), unlike make test.
faults: $(STAMP)  ## the fault suite at full size (~15 min): kill -9, SIGTERM, outage, poison, duplicates, load, fuzzing
	CONVEYOR_FAULTS=full $(BIN)/pytest tests/faults tests/fuzz --timeout=1200 -q -n 0

docs: $(STAMP) browser  ## regenerate docs/cli.md (the CLI's --help), docs/settings.md (infra/settings.py) and the console's screenshots; tests fail when the first two are stale
	$(BIN)/python docs/generate_cli.py
	$(BIN)/python docs/generate_settings.py
	$(BIN)/python docs/console_screenshots.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/hadolint Dockerfile

fmt: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test  ## everything CI and the pre-stop hook expect to be clean

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .conveyor *.egg-info
