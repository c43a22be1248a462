"""Pretraining throughput, model-FLOPs utilisation and peak memory of the DINOv2 step on CPU.

Three step types are measured side by side, in one run, on the same pre-built synthetic batches
(random crops from ``MultiCropCollate`` with its iBOT masks, built once before timing, so data
loading is not measured). All run in fp32 on the CPU, whatever precision the recipe names.

full
    Exactly the engine's training step (``sslkit.engine.module.PretrainModule.training_step``
    without Lightning's logging): set lr/wd on the engine's AdamW param groups
    (``dinov2_param_groups``) → ``DINOv2.forward`` (teacher backbone + head + centering, student
    backbone on masked globals and locals, student head, DINO + iBOT + KoLeo losses) → finite-loss
    check → backward → ``clip_grad_norm_`` per student sub-module at ``optim.clip_grad`` (3.0) →
    AdamW step → EMA teacher update.
bare
    The backbone work the method cannot avoid: set lr/wd → teacher backbone forward (no grad) on
    the global crops → student backbone forward on the global crops (masked patches replaced by
    the mask token) and on the local crops → backward of a trivial sum of the student's global
    CLS, masked patch and local CLS tokens → AdamW step over the backbone's engine param groups.
student
    A stricter upper bound: ``bare`` without the teacher forward (a single-network step).

Figures: images/s = B / median step time (B images per step, not crops), after warm-up steps;
the three step types are interleaved round-robin so background load hits them alike.
MFU = FLOPs counted by ``torch.utils.flop_counter.FlopCounterMode`` over one step / median step
time / peak, where peak is the median rate of a 2048² fp32 ``torch.mm`` timed in this run.
Peak memory: each (setting, step type) runs in its own subprocess (this script re-invoked with
``--memory-child``) and reports (a) peak RSS minus the RSS just before the model is built (the
peak is ``VmHWM`` after resetting it at that point through ``/proc/self/clear_refs``; plain
``ru_maxrss`` is the fallback, but it cannot be reset and the imports peak above a small model), and (b) the peak bytes of live tensor storages seen by a ``TorchDispatchMode`` (model,
gradients, optimiser state, activations; not allocator slack or kernel-internal scratch).

Usage::

    python benchmarks/pretrain_throughput.py [--quick] [--settings tiny,vits16] [--steps N]
                                             [--breakdown]

``--quick`` runs the tiny setting only unless ``--settings`` names others (both: ~65 s).
``--breakdown`` also times the pieces of the full step (heads, centering, losses, backward,
clip, optimiser, EMA) next to the bare step, to show where the extra time goes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

from sslkit.config import load_config
from sslkit.data.collate import MultiCropCollate
from sslkit.engine.module import PretrainModule
from sslkit.engine.param_groups import dinov2_param_groups
from sslkit.engine.builders import build_backbone, build_method, build_schedules
from sslkit.nn.ema import make_teacher

ROOT = Path(__file__).resolve().parents[1]
IN_CHANS = 3
STEP_KINDS = ("full", "bare", "student")


@dataclass(frozen=True)
class Setting:
    name: str
    recipe: str
    batch_size: int
    quick_batch_size: int


SETTINGS = {
    "tiny": Setting("tiny", "recipes/dinov2-tiny.yaml", batch_size=64, quick_batch_size=16),
    "vits16": Setting("vits16", "recipes/dinov2-vits16.yaml", batch_size=8, quick_batch_size=2),
}


# ------------------------------------------------------------------------------------- setup


def load_setting(setting: Setting, batch_size: int):
    return load_config(ROOT / setting.recipe, [f"optim.batch_size={batch_size}", "trainer.precision=32-true"])


def make_batches(cfg, n_batches: int, seed: int = 0) -> list[dict]:
    """Synthetic multi-crop batches: ``global_crops`` (n_g*B,C,G,G), ``local_crops``, ``masks``."""
    c, d = cfg.crops, cfg.dinov2
    gen = torch.Generator().manual_seed(seed)
    collate = MultiCropCollate(cfg.model.patch_size, mask_probability=d.mask_probability,
                               mask_ratio=d.mask_ratio, seed=seed)
    batches = []
    for b in range(n_batches):
        items = [{"image": {"global": [torch.randn(IN_CHANS, c.global_size, c.global_size, generator=gen)
                                       for _ in range(c.n_global)],
                            "local": [torch.randn(IN_CHANS, c.local_size, c.local_size, generator=gen)
                                      for _ in range(c.n_local)]},
                  "position": b * cfg.optim.batch_size + i}
                 for i in range(cfg.optim.batch_size)]
        batches.append(collate(items))
    return batches


def make_schedules(cfg):
    iters = cfg.optim.iters_per_epoch or 100  # the tiny recipe sizes epochs from the dataset
    return build_schedules(cfg, iters, cfg.optim.batch_size)


class FullStep:
    """The engine's DINOv2 training step (engine/module.py ``training_step``), without Lightning."""

    def __init__(self, cfg):
        torch.manual_seed(0)
        self.method = build_method(cfg, IN_CHANS).train()
        self.schedules = make_schedules(cfg)
        groups = dinov2_param_groups(self.method.student, cfg.optim.layer_decay, cfg.optim.patch_embed_lr_mult)
        # The engine's module, used for its optimiser and its lr/wd rule; its step is replayed below.
        self.engine = PretrainModule(self.method, self.schedules, groups, clip_grad=cfg.optim.clip_grad,
                                     betas=cfg.optim.betas)
        self.optimizer = self.engine.configure_optimizers()
        self.clip_grad = cfg.optim.clip_grad
        self.it = self.schedules.lr_warmup_iters  # a mid-run step: momentum < 1, so the EMA runs

    def __call__(self, batch: dict) -> None:
        values = self.schedules.at(self.it)
        self.engine._apply_schedules(self.optimizer, values)
        out = self.method(batch, teacher_temp=values["teacher_temp"])
        loss = out["loss"]
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss.item()}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for module in self.method.student.values():
            torch.nn.utils.clip_grad_norm_(module.parameters(), self.clip_grad)
        self.optimizer.step()
        self.method.update_teacher(values["momentum"])
        self.it += 1


class BackboneStep:
    """Student backbone fwd+bwd on the same crops [+ teacher backbone fwd] + AdamW over the backbone."""

    def __init__(self, cfg, with_teacher: bool):
        torch.manual_seed(0)
        self.backbone = build_backbone(cfg, IN_CHANS).train()
        self.teacher = make_teacher(self.backbone) if with_teacher else None
        self.schedules = make_schedules(cfg)
        groups = dinov2_param_groups(torch.nn.ModuleDict({"backbone": self.backbone}),
                                     cfg.optim.layer_decay, cfg.optim.patch_embed_lr_mult)
        self.engine = PretrainModule(self.backbone, self.schedules, groups, betas=cfg.optim.betas)
        self.optimizer = self.engine.configure_optimizers()
        self.it = self.schedules.lr_warmup_iters

    def __call__(self, batch: dict) -> None:
        values = self.schedules.at(self.it)
        self.engine._apply_schedules(self.optimizer, values)
        if self.teacher is not None:
            with torch.no_grad():
                self.teacher.forward_features(batch["global_crops"])
        masks = batch["masks"]
        g = self.backbone.forward_features(batch["global_crops"], masks=masks)
        loc = self.backbone.forward_features(batch["local_crops"])
        loss = g["cls"].sum() + g["patch"].flatten(0, 1)[masks.flatten()].sum() + loc["cls"].sum()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.it += 1


def make_step(kind: str, cfg):
    if kind == "full":
        return FullStep(cfg)
    return BackboneStep(cfg, with_teacher=(kind == "bare"))


# ------------------------------------------------------------------------------ measurements


def measure_peak_gflops(n: int = 2048, repeats: int = 7) -> float:
    """fp32 matmul rate (GFLOP/s) of an n×n @ n×n ``torch.mm``, median of timed repeats after warm-up."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        torch.mm(a, b)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times) / 1e9


def count_flops(step, batch: dict) -> int:
    with FlopCounterMode(display=False) as counter:
        step(batch)
    return counter.get_total_flops()


def time_steps(steps: dict, batches: list[dict], warmup: int, timed: int) -> dict[str, list[float]]:
    """Round-robin over the step types: warm-up steps, then ``timed`` timed steps each."""
    times = {kind: [] for kind in steps}
    for i in range(warmup + timed):
        batch = batches[i % len(batches)]
        for kind, step in steps.items():
            t = time.perf_counter()
            step(batch)
            dt = time.perf_counter() - t
            if i >= warmup:
                times[kind].append(dt)
    return times


class LiveTensorBytes(TorchDispatchMode):
    """Peak bytes of live tensor storages created under this mode (CPU has no allocator stats)."""

    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0
        self._seen: set[int] = set()

    def _release(self, key: int, nbytes: int) -> None:
        self._seen.discard(key)
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.device.type == "cpu":
                storage = t.untyped_storage()
                key = id(storage)
                if key in self._seen:
                    continue
                nbytes = storage.nbytes()
                self._seen.add(key)
                self.live += nbytes
                self.peak = max(self.peak, self.live)
                weakref.finalize(storage, self._release, key, nbytes)
        return out


def proc_status_kib(field: str) -> int:
    """``VmRSS`` (current) or ``VmHWM`` (peak) of this process, in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0). ``ru_maxrss`` cannot be reset, and the
    import of torch + Lightning peaks higher than a small model, so it would mask the step."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory_child(setting_name: str, kind: str, batch_size: int, steps: int, track_tensors: bool = True) -> dict:
    """Run in a fresh process: build batches, then model, then ``steps`` steps; report peaks (MiB)."""
    cfg = load_setting(SETTINGS[setting_name], batch_size)
    batches = make_batches(cfg, 1)
    base_rss = proc_status_kib("VmRSS")
    peak_is_reset = reset_peak_rss()
    step = make_step(kind, cfg)
    for _ in range(steps):
        step(batches[0])
    peak = proc_status_kib("VmHWM") if peak_is_reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss = (peak - base_rss) / 1024
    if not track_tensors:
        return {"rss_mib": rss, "tensor_mib": float("nan")}
    # Tensor-level measure, in a second model instance under the tracking mode.
    del step
    tracker = LiveTensorBytes()
    with tracker:
        step = make_step(kind, cfg)
        for _ in range(steps):
            step(batches[0])
    return {"rss_mib": rss, "tensor_mib": tracker.peak / 2**20}


def measure_memory(setting_name: str, kind: str, batch_size: int, steps: int, track_tensors: bool) -> dict:
    spec = f"{setting_name}:{kind}:{batch_size}:{steps}:{int(track_tensors)}"
    cmd = [sys.executable, __file__, "--memory-child", spec]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------ breakdown


class Marks:
    """Timestamps from module hooks, to split one full step into pieces."""

    def __init__(self):
        self.t: dict[str, float] = {}

    def mark(self, name: str, first: bool = False):
        def hook(*_):
            if not (first and name in self.t):
                self.t[name] = time.perf_counter()
        return hook


def instrument_full(step: FullStep) -> Marks:
    m, marks = step.method, Marks()
    tb, sb = m.teacher["backbone"], m.student["backbone"]
    tb.patch_embed.register_forward_pre_hook(marks.mark("teacher_bb_start", first=True))
    tb.norm.register_forward_hook(marks.mark("teacher_bb_end"))
    m.teacher["dino_head"].register_forward_pre_hook(marks.mark("teacher_head_start"))
    m.teacher["dino_head"].register_forward_hook(marks.mark("teacher_head_end"))
    sb.patch_embed.register_forward_pre_hook(marks.mark("student_bb_start", first=True))
    sb.norm.register_forward_hook(marks.mark("student_bb_end"))
    m.student["dino_head"].register_forward_pre_hook(marks.mark("student_head_start"))
    m.student["dino_head"].register_forward_hook(marks.mark("student_head_end"))
    m.student["dino_head"].register_full_backward_pre_hook(marks.mark("head_bwd_start"))
    m.student["dino_head"].register_full_backward_hook(marks.mark("head_bwd_end"))
    return marks


def timed_full_pieces(step: FullStep, marks: Marks, batch: dict) -> dict[str, float]:
    """The full step, replayed with a clock between its phases (same order as ``FullStep``)."""
    marks.t.clear()
    t = {"start": time.perf_counter()}
    values = step.schedules.at(step.it)
    step.engine._apply_schedules(step.optimizer, values)
    out = step.method(batch, teacher_temp=values["teacher_temp"])
    t["fwd_end"] = time.perf_counter()
    loss = out["loss"]
    assert torch.isfinite(loss)
    step.optimizer.zero_grad(set_to_none=True)
    t["bwd_start"] = time.perf_counter()
    loss.backward()
    t["bwd_end"] = time.perf_counter()
    clip = {}
    for name, module in step.method.student.items():
        c0 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(module.parameters(), step.clip_grad)
        clip[name] = time.perf_counter() - c0
    t["opt_start"] = time.perf_counter()
    step.optimizer.step()
    t["ema_start"] = time.perf_counter()
    step.method.update_teacher(values["momentum"])
    t["end"] = time.perf_counter()
    step.it += 1
    k = {**marks.t, **t}
    return {
        "teacher backbone fwd": k["teacher_bb_end"] - k["teacher_bb_start"],
        "teacher head fwd": k["teacher_head_end"] - k["teacher_head_start"],
        "teacher centering (softmax, centre update)": k["student_bb_start"] - k["teacher_head_end"],
        "student backbone fwd": k["student_bb_end"] - k["student_bb_start"],
        "student head fwd": k["student_head_end"] - k["student_head_start"],
        "losses fwd (DINO, iBOT, KoLeo)": k["fwd_end"] - k["student_head_end"],
        "other fwd (schedules, masking, gather)": (k["teacher_bb_start"] - k["start"])
        + (k["teacher_head_start"] - k["teacher_bb_end"]) + (k["student_head_start"] - k["student_bb_end"]),
        "losses bwd": k["head_bwd_start"] - k["bwd_start"],
        "student head bwd": k["head_bwd_end"] - k["head_bwd_start"],
        "student backbone bwd": k["bwd_end"] - k["head_bwd_end"],
        "clip backbone": clip["backbone"],
        "clip heads": sum(v for n, v in clip.items() if n != "backbone"),
        "AdamW step": k["ema_start"] - k["opt_start"],
        "EMA update": k["end"] - k["ema_start"],
        "total": k["end"] - k["start"],
    }


def timed_bare_pieces(step: BackboneStep, batch: dict) -> dict[str, float]:
    t0 = time.perf_counter()
    values = step.schedules.at(step.it)
    step.engine._apply_schedules(step.optimizer, values)
    with torch.no_grad():
        step.teacher.forward_features(batch["global_crops"])
    t1 = time.perf_counter()
    masks = batch["masks"]
    g = step.backbone.forward_features(batch["global_crops"], masks=masks)
    loc = step.backbone.forward_features(batch["local_crops"])
    loss = g["cls"].sum() + g["patch"].flatten(0, 1)[masks.flatten()].sum() + loc["cls"].sum()
    t2 = time.perf_counter()
    step.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    t3 = time.perf_counter()
    step.optimizer.step()
    t4 = time.perf_counter()
    step.it += 1
    return {"teacher backbone fwd": t1 - t0, "student backbone fwd": t2 - t1, "student backbone bwd": t3 - t2,
            "AdamW step": t4 - t3, "total": t4 - t0}


def breakdown(cfg, batches: list[dict], warmup: int, timed: int) -> list[tuple[str, float, float]]:
    """Median seconds per piece: [(piece, full, bare)]; bare is 0 where it has no such piece."""
    full, bare = FullStep(cfg), BackboneStep(cfg, with_teacher=True)
    marks = instrument_full(full)
    f_rows, b_rows = [], []
    for i in range(warmup + timed):
        batch = batches[i % len(batches)]
        f, b = timed_full_pieces(full, marks, batch), timed_bare_pieces(bare, batch)
        if i >= warmup:
            f_rows.append(f)
            b_rows.append(b)
    med = lambda rows, key: statistics.median(r.get(key, 0.0) for r in rows)  # noqa: E731
    return [(key, med(f_rows, key), med(b_rows, key)) for key in f_rows[0]]


# ------------------------------------------------------------------------------------ report


def fmt_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = lambda cells: "| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def describe(cfg) -> str:
    c, m, d = cfg.crops, cfg.model, cfg.dinov2
    return (f"{m.arch} depth {m.depth or 'preset'} patch {m.patch_size}, B={cfg.optim.batch_size}, "
            f"{c.n_global}×{c.global_size}px + {c.n_local}×{c.local_size}px, K={d.head_out_dim}")


def run_setting(setting: Setting, args, peak_gflops: float) -> dict:
    batch_size = setting.quick_batch_size if args.quick else setting.batch_size
    cfg = load_setting(setting, batch_size)
    warmup, timed = (1, 2) if args.quick else (2, args.steps)
    print(f"\n== {setting.name}: {describe(cfg)}; {warmup} warm-up + {timed} timed steps per type", flush=True)
    batches = make_batches(cfg, n_batches=max(2, min(timed, 4)))
    steps = {kind: make_step(kind, cfg) for kind in STEP_KINDS}
    times = time_steps(steps, batches, warmup, timed)
    flops = {kind: count_flops(step, batches[0]) for kind, step in steps.items()}
    del steps
    mem = {kind: measure_memory(setting.name, kind, batch_size, steps=1 if args.quick else 2,
                                track_tensors=not args.quick) for kind in STEP_KINDS}
    result = {"setting": setting.name, "description": describe(cfg), "batch_size": batch_size, "kinds": {}}
    for kind in STEP_KINDS:
        t = statistics.median(times[kind])
        result["kinds"][kind] = {"step_s": t, "step_s_all": times[kind], "images_per_s": batch_size / t,
                                 "gflop": flops[kind] / 1e9, "mfu": flops[kind] / t / (peak_gflops * 1e9), **mem[kind]}
    if args.breakdown:
        result["breakdown"] = breakdown(cfg, batches, warmup=1, timed=timed)
    return result


def print_result(res: dict) -> None:
    k = res["kinds"]
    rows = []
    for kind in STEP_KINDS:
        r = k[kind]
        rows.append([kind, f"{r['step_s'] * 1e3:.0f}", f"{r['images_per_s']:.1f}", f"{r['gflop']:.1f}",
                     f"{100 * r['mfu']:.1f}%", f"{r['rss_mib']:.0f}", f"{r['tensor_mib']:.0f}"])
    print(f"\n{res['setting']}: {res['description']}")
    print(fmt_table(["step", "median ms", "images/s", "GFLOP/step", "MFU", "peak RSS MiB", "peak tensors MiB"], rows))
    f, b, s = k["full"], k["bare"], k["student"]
    print(f"throughput full/bare    = {f['images_per_s'] / b['images_per_s']:.3f}  (target >= 0.90)")
    print(f"throughput full/student = {f['images_per_s'] / s['images_per_s']:.3f}")
    print(f"peak RSS   full/bare    = {f['rss_mib'] / b['rss_mib']:.3f}  (target <= 1.30)")
    print(f"peak tensors full/bare  = {f['tensor_mib'] / b['tensor_mib']:.3f}")
    if "breakdown" in res:
        rows = [[name, f"{fv * 1e3:.1f}", f"{bv * 1e3:.1f}", f"{(fv - bv) * 1e3:+.1f}"]
                for name, fv, bv in res["breakdown"]]
        print(fmt_table(["piece (median)", "full ms", "bare ms", "extra ms"], rows))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run (< 1 min): small batches, 1+2 steps, RSS only (no tensor-level memory)")
    parser.add_argument("--settings", help="comma-separated subset of: " + ",".join(SETTINGS)
                        + " (default: all; with --quick: tiny)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per step type (default 5)")
    parser.add_argument("--breakdown", action="store_true", help="also time the pieces of the full step")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.memory_child:
        name, kind, batch_size, steps, track = args.memory_child.split(":")
        print(json.dumps(memory_child(name, kind, int(batch_size), int(steps), bool(int(track)))))
        return

    settings = args.settings or ("tiny" if args.quick else ",".join(SETTINGS))
    names = [n.strip() for n in settings.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        parser.error(f"unknown setting(s) {unknown}; choose from {sorted(SETTINGS)}")
    random.seed(0)
    peak = measure_peak_gflops()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32 matmul peak {peak:.1f} GFLOP/s "
          f"(2048² torch.mm, median)", flush=True)
    results = []
    for name in names:
        res = run_setting(SETTINGS[name], args, peak)
        print_result(res)
        results.append(res)
    if args.json:
        args.json.write_text(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                                         "peak_gflops": peak, "results": results}, indent=2))


if __name__ == "__main__":
    main()
