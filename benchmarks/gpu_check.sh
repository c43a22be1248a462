#!/usr/bin/env bash
# One command on a machine with NVIDIA GPUs: DDP/FSDP equality on nccl, bf16 ViT-S/16 and ViT-B/16 step
# throughput, MFU and peak memory, eager vs torch.compile; one table, benchmarks/results/gpu.json.
# Without a GPU: one sentence, exit 0. See benchmarks/gpu_check.py (--help) for the options.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
if [ ! -x "$PYTHON" ]; then PYTHON="$(command -v python3)"; fi
exec "$PYTHON" benchmarks/gpu_check.py "$@"
