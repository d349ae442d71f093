# medimg: two commands do the main jobs (see README.md).
#   make demo   create .venv, write synthetic data where real data is absent, execute every
#               notebook under the demo profile, write reports/ and print the results table
#   make test   create or update .venv, run the test suite (notebooks under the smoke profile)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.medimg-installed
# make demo PROFILE=full, or MEDIMG_PROFILE=full make demo
PROFILE ?= $(or $(MEDIMG_PROFILE),demo)

.PHONY: venv test demo bench bench-quick lint format clean-data clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/medimg demo --profile $(PROFILE)

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

bench-quick: $(STAMP)
	$(BIN)/python benchmarks/run.py --quick

lint: $(STAMP)
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks

clean-data:
	rm -rf data/synthetic reports

clean: clean-data
	rm -rf $(VENV) .pytest_cache .ruff_cache
