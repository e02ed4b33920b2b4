# The two set-up commands: `make run` starts the proxy, `make test` runs the tests.
# Both create .venv/ at the repo root and install the project into it.

VENV := .venv
BIN := $(VENV)/bin
PYTHON ?= $(shell command -v python3.12 2>/dev/null || command -v python3)
# The tests need Go and Debian's yaml.v3 source (the Go oracle, a Go client), curl, and Node
# with npm (an undici client); run as root, `make test` installs what is missing.
GO_YAML := /usr/share/gocode/src/gopkg.in/yaml.v3/yaml.go

.PHONY: run test reliability bench venv go-oracle-deps clean

run: $(BIN)/.installed
	$(BIN)/vcr-proxy start $(ARGS)

test: $(BIN)/.installed go-oracle-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The reliability suite five times larger (5,000 broken cassettes, 100 kills, 1,000 streams)
# with a new seed, and the differential tests against Go with 4x the examples. Any run can
# be repeated with the seed it prints: make reliability SEED=...
SCALE ?= 5
SEED ?= $(shell date +%s)
reliability: $(BIN)/.installed go-oracle-deps
	VCR_RELIABILITY_SCALE=$(SCALE) VCR_RELIABILITY_SEED=$(SEED) VCR_EXAMPLES=1000 \
		$(BIN)/python -m pytest tests/reliability tests/test_go_oracle.py tests/test_roundtrip.py $(PYTEST_ARGS)

bench: $(BIN)/.installed go-oracle-deps
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
	@missing=""; \
	command -v go >/dev/null 2>&1 || missing="$$missing golang-go"; \
	[ -f $(GO_YAML) ] || missing="$$missing golang-gopkg-yaml.v3-dev"; \
	command -v curl >/dev/null 2>&1 || missing="$$missing curl"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing nodejs npm"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing$$missing for the tests"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else \
			echo "make test needs:$$missing (sudo apt-get install$$missing)" >&2; \
			exit 1; \
		fi; \
	fi

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
