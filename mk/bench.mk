# Benchmarks (bench/README.md), included by the main Makefile after its own targets.
# `make bench NAME...` runs `python -m bench NAME...`; the names are also goals of their own
# here, as no-ops, so that make accepts them on the command line.
BENCH_NAMES := overhead follow-up peers concurrency typing fallback fastpath prefill quality speculation shared open-files all
PEERS_STAMP := $(VENV)/.stamp-bench-peers

.PHONY: bench-peers $(BENCH_NAMES)

# The optional llama.cpp peer for `make bench peers`: llama-cpp-python built from source.
# GGML_NATIVE=OFF: a -march=native build can die of illegal instructions on another CPU of a
# shared pool; the portable build still enables AVX/AVX2/FMA/F16C.
bench-peers: $(PEERS_STAMP)

$(PEERS_STAMP): $(STAMP)
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(BIN)/python -m pip install -q --no-cache-dir "llama-cpp-python>=0.3"
	$(BIN)/python -c "import llama_cpp; print('llama-cpp-python', llama_cpp.__version__)"
	touch $@

$(BENCH_NAMES):
	@:
