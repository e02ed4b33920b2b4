# The two set-up commands: `make run` starts the proxy, `make test` runs the tests.
# Both create .venv/ at the repo root and install the project into it.

VENV := .venv
BIN := $(VENV)/bin
PYTHON ?= $(shell command -v python3.12 2>/dev/null || command -v python3)
# The Go oracle (tests/go_oracle) needs Go and Debian's yaml.v3 source.
GO_YAML := /usr/share/gocode/src/gopkg.in/yaml.v3/yaml.go

.PHONY: run test bench venv go-oracle-deps clean

run: $(BIN)/.installed
	$(BIN)/vcr-proxy start $(ARGS)

test: $(BIN)/.installed go-oracle-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(BIN)/.installed
	$(BIN)/python bench/run_all.py

venv: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 12))' || \
		{ echo "vcr-proxy needs Python 3.12 or newer; $(PYTHON) is older (set PYTHON=...)" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

go-oracle-deps:
	@if ! command -v go >/dev/null 2>&1 || [ ! -f $(GO_YAML) ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing golang-go and golang-gopkg-yaml.v3-dev for the Go oracle"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
				golang-go golang-gopkg-yaml.v3-dev >/dev/null; \
		else \
			echo "make test needs Go's YAML encoder: sudo apt-get install golang-go golang-gopkg-yaml.v3-dev" >&2; \
			exit 1; \
		fi; \
	fi

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
