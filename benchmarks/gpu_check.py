"""One command for a machine with NVIDIA GPUs (issue 22, item 4): does sslkit's GPU path work, and how fast is it?

Run ``bash benchmarks/gpu_check.sh`` (≤ 10 minutes on one node). It

1. lists the GPUs torch sees;
2. checks **DDP and FSDP equality on nccl** across all of them: the tiny DINOv2 recipe for a few steps on N GPUs
   (batch B per GPU) against the same run on one GPU (batch N·B) — every batch is a pure function of
   (seed, step), so the two runs see the same images; the largest weight difference of the exported
   backbones and both final losses are reported (fp32, so they should agree to ~1e-4);
3. measures a **bf16-mixed training step** of DINOv2 ViT-S/16 and ViT-B/16 at the reference's crops
   (2 × 224 + 8 × 96, 65 536 prototypes, batch 64 per GPU) on one GPU, eager and ``torch.compile``-d:
   images/s, MFU (the step's FLOPs from ``sslkit.engine.flops.step_flops`` over the time, against the
   GPU's dense bf16 peak from its datasheet) and peak memory (``torch.cuda.max_memory_allocated``);
4. prints one table and writes ``benchmarks/results/gpu.json``.

Without a GPU it prints one sentence and exits 0. ``--rehearse-on-cpu`` runs sections 3–4 on the CPU with a
tiny ViT (and section 2 with two gloo processes), so the code of the GPU path is exercised in CI
(``tests/benchmarks/test_gpu_check.py``); its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Dense (no sparsity) bf16 tensor-core peak, TFLOP/s, from the vendors' datasheets; matched by substring of
# torch.cuda.get_device_name. Unknown GPUs get no MFU.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L40": 181.0,
                    "A10G": 70.0, "A10": 125.0, "L4": 121.0, "RTX 4090": 165.0, "RTX 3090": 71.0, "A6000": 155.0}

SIZES = {"vits16": ("recipes/dinov2-vits16.yaml", {}),
         "vitb16": ("recipes/dinov2-vits16.yaml", {"model.arch": "vit_base"})}
TINY = {"model.embed_dim": 64, "model.depth": 2, "model.num_heads": 2, "model.patch_size": 8,
        "crops.global_size": 32, "crops.local_size": 16, "crops.n_local": 2, "dinov2.head_out_dim": 512,
        "dinov2.head_hidden_dim": 128, "dinov2.head_bottleneck_dim": 32}


def skip_reason() -> str | None:
    """Why there is nothing to check here (None: a GPU is visible)."""
    import torch

    if not torch.cuda.is_available():
        return "no NVIDIA GPU is visible to torch (torch.cuda.is_available() is False), so there is nothing to check"
    return None


def peak_tflops(name: str) -> float | None:
    for key, value in PEAK_BF16_TFLOPS.items():
        if key.lower() in name.lower():
            return value
    return None


def gpus() -> list[dict]:
    import torch

    return [{"index": i, "name": torch.cuda.get_device_name(i),
             "memory_gib": round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1),
             "peak_bf16_tflops": peak_tflops(torch.cuda.get_device_name(i))}
            for i in range(torch.cuda.device_count())]


# --------------------------------------------------------------------------- equality across devices

def _pretrain(out: Path, overrides: dict, timeout: float) -> dict:
    args = [sys.executable, "-m", "sslkit.cli", "pretrain", "--recipe", str(ROOT / "recipes" / "dinov2-tiny.yaml"),
            "--data", "shapes", "--out", str(out), *[f"{k}={v}" for k, v in overrides.items()]]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        return {"ok": False, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "no output"}
    return {"ok": True, "final_loss": json.loads((out / "report.json").read_text())["final_loss"]}


def equality(strategy: str, accelerator: str, devices: int, timeout: float = 300.0) -> dict:
    """``strategy`` on ``devices`` processes (batch 8 each) against one process (batch 8·devices)."""
    from safetensors.torch import load_file

    common = {"trainer.accelerator": accelerator, "trainer.precision": "32-true", "trainer.max_steps": 4,
              "optim.iters_per_epoch": 4, "optim.epochs": 1, "optim.warmup_epochs": 0.5, "trainer.seed": 0,
              "monitor.knn_every_n_steps": 0, "monitor.baselines": "false", "trainer.progress_bar": "false",
              "trainer.checkpoint_every_n_steps": 0, "model.depth": 2, "model.embed_dim": 64, "model.num_heads": 2}
    with tempfile.TemporaryDirectory() as tmp:
        one = _pretrain(Path(tmp) / "one", {**common, "trainer.devices": 1, "optim.batch_size": 8 * devices}, timeout)
        many = _pretrain(Path(tmp) / "many", {**common, "trainer.devices": devices, "trainer.strategy": strategy,
                                              "optim.batch_size": 8}, timeout)
        row = {"strategy": strategy, "backend": "nccl" if accelerator == "gpu" else "gloo", "devices": devices,
               "single": one, "distributed": many}
        if one["ok"] and many["ok"]:
            a, b = load_file(str(Path(tmp) / "one" / "backbone.safetensors")), load_file(
                str(Path(tmp) / "many" / "backbone.safetensors"))
            row["max_abs_weight_diff"] = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
            row["equal"] = row["max_abs_weight_diff"] < 1e-3
        else:
            row["equal"] = False
    return row


# --------------------------------------------------------------------------- step throughput

def _config(size: str, tiny: bool):
    from sslkit.config import load_config

    recipe, overrides = SIZES[size]
    overrides = {**overrides, **(TINY if tiny else {})}
    return load_config(str(ROOT / recipe), [f"{k}={v}" for k, v in overrides.items()])


def _batch(cfg, batch_size: int, device):
    """One collated batch of the recipe's views of random images (augmentation on the CPU, once)."""
    import torch

    from sslkit.engine.builders import build_views

    augmentation, collate = build_views(cfg, 3, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    g = torch.Generator().manual_seed(0)
    side = int(cfg.crops.global_size * 8 / 7)
    batch = collate([{"image": augmentation(torch.rand(3, side, side, generator=g)), "label": 0}
                     for _ in range(batch_size)])
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def step_speed(size: str, compiled: bool, device: str, steps: int, batch_size: int, tiny: bool) -> dict:
    """Images/s, TFLOP/s and peak memory of the bf16-mixed DINOv2 training step (student, teacher, heads, EMA)."""
    import torch

    from sslkit.engine.builders import build_method
    from sslkit.engine.flops import step_flops

    cfg = _config(size, tiny)
    cfg.optim.batch_size = batch_size
    torch.manual_seed(0)
    method = build_method(cfg, 3).to(device).train()
    params = [p for p in method.student.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, fused=device == "cuda")
    batch = _batch(cfg, batch_size, device)
    inputs = {"teacher_temp": 0.07} if "teacher_temp" in method.schedule_inputs else {}
    forward = torch.compile(method) if compiled else method
    dtype = torch.bfloat16

    def step() -> None:
        with torch.autocast(device_type=device, dtype=dtype):
            loss = forward(batch, **inputs)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        method.update_teacher(0.996)

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    warm_start = time.perf_counter()
    for _ in range(2):  # warm-up (and compilation)
        step()
    sync()
    warmup_s = time.perf_counter() - warm_start
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    seconds = (time.perf_counter() - start) / steps
    flops = step_flops(cfg, (cfg.crops.global_size, cfg.crops.local_size))["total"]
    row = {"size": size, "compiled": compiled, "batch": batch_size, "steps": steps, "step_s": seconds,
           "images_per_s": batch_size / seconds, "tflops_per_s": flops / seconds / 1e12, "step_tflop": flops / 1e12,
           "warmup_and_compile_s": warmup_s}
    if device == "cuda":
        row["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
        peak = peak_tflops(torch.cuda.get_device_name(0))
        row["mfu"] = row["tflops_per_s"] / peak if peak else None
    return row


def table(record: dict) -> str:
    lines = [f"GPUs: {', '.join(g['name'] for g in record['gpus']) or 'none (CPU rehearsal)'}", "",
             "equality across devices (exported backbone vs one device):"]
    for row in record["equality"]:
        detail = (f"max |Δw| {row['max_abs_weight_diff']:.2e}; last loss {row['single']['final_loss']:.4f} on the "
                  f"whole batch, {row['distributed']['final_loss']:.4f} on rank 0's share" if "max_abs_weight_diff" in row
                  else row.get("skipped") or f"failed: {row['single'].get('error') or row['distributed'].get('error')}")
        lines.append(f"  {row['strategy']:<5} {row.get('backend', ''):<5} × {row['devices']}: "
                     f"{'EQUAL' if row.get('equal') else 'NOT EQUAL' if 'skipped' not in row else 'skipped'} ({detail})")
    lines += ["", f"{'model':<8} {'mode':<9} {'img/s':>8} {'TFLOP/s':>8} {'MFU':>6} {'peak GiB':>9}"]
    for row in record["throughput"]:
        mfu = f"{100 * row['mfu']:.1f}%" if row.get("mfu") is not None else "–"
        mem = f"{row['peak_memory_gib']:.1f}" if row.get("peak_memory_gib") is not None else "–"
        lines.append(f"{row['size']:<8} {'compiled' if row['compiled'] else 'eager':<9} {row['images_per_s']:>8.1f} "
                     f"{row['tflops_per_s']:>8.2f} {mfu:>6} {mem:>9}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "gpu.json")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per measurement (default 10)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per GPU (default 64, the reference's)")
    parser.add_argument("--no-compile", action="store_true", help="measure the eager step only")
    parser.add_argument("--rehearse-on-cpu", action="store_true",
                        help="run every section on the CPU with a tiny ViT (two gloo processes for equality)")
    args = parser.parse_args(argv)
    import torch

    reason = None if args.rehearse_on_cpu else skip_reason()
    if reason:
        print(f"gpu_check: {reason}; run it on a machine with NVIDIA GPUs (exit 0, nothing written).")
        return 0
    device = "cpu" if args.rehearse_on_cpu else "cuda"
    count = 2 if args.rehearse_on_cpu else torch.cuda.device_count()
    accelerator = "cpu" if args.rehearse_on_cpu else "gpu"
    record = {"date": time.strftime("%Y-%m-%d %H:%M"), "torch": torch.__version__, "rehearsal": args.rehearse_on_cpu,
              "gpus": [] if args.rehearse_on_cpu else gpus(), "equality": [], "throughput": []}
    for strategy in ("ddp", "fsdp"):
        if count < 2:
            record["equality"].append({"strategy": strategy, "devices": count, "skipped": "needs at least 2 GPUs"})
        elif strategy == "fsdp" and args.rehearse_on_cpu:
            record["equality"].append({"strategy": strategy, "devices": count,
                                       "skipped": "FSDP on the CPU is covered by tests/engine/test_fsdp_strategy.py"})
        else:
            record["equality"].append(equality(strategy, accelerator, count))
    for size in (["vits16"] if args.rehearse_on_cpu else ["vits16", "vitb16"]):
        for compiled in ([False] if args.no_compile else [False, True]):
            record["throughput"].append(step_speed(size, compiled, device, args.steps, args.batch_size,
                                                   tiny=args.rehearse_on_cpu))
            print(json.dumps(record["throughput"][-1]), flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    from sslkit.atomic_files import write_json_atomic
    from sslkit.json_values import json_ready

    write_json_atomic(args.json, json_ready(record))
    print(table(record))
    print(f"written: {args.json}")
    return 0 if all(row.get("equal", True) for row in record["equality"]) else 1


if __name__ == "__main__":
    sys.exit(main())
