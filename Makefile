# The two commands of the README: `make demo` and `make test`. Everything else is set up on demand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HARNESS := tests/interop/harness

.PHONY: demo serve test lint typecheck check clean services

$(BIN)/kurir: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

$(HARNESS)/node_modules/.stamp: $(HARNESS)/package.json $(HARNESS)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd $(HARNESS) && npm ci --silent --no-audit --no-fund && touch node_modules/.stamp; \
	else echo "npm not found: the libsignal interop tests will be skipped"; fi

demo: $(BIN)/kurir
	$(BIN)/kurir demo

serve: $(BIN)/kurir
	$(BIN)/kurir serve

lint: $(BIN)/kurir
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/kurir
	$(BIN)/mypy

test: $(BIN)/kurir $(HARNESS)/node_modules/.stamp
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest

# PostgreSQL and Redis on their local ports, started (or installed) if needed: .ci/services.sh
services:
	bash .ci/services.sh

clean:
	rm -rf $(VENV) $(HARNESS)/node_modules
