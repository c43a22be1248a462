"""Task priors at scale: exact streamed closed forms vs the dense formula, pair sampling, probes.

Measured side by side in one run (each part in its own subprocess, so that its peak resident memory
is its own; peak = ``VmHWM`` of the child process, i.e. everything: Python, torch, data, work):

streamed
    Exact ``E[S]`` and ``Var[S]`` (:func:`sslkit.functional.taskprior.expectation_variance_blockwise`)
    for ``n`` samples × ``d`` dims: cosine model kernel, label prior (10 classes), T = 1, float32
    tiles with float64 accumulation. Checked against the exact ``O(n·d²)`` label-prior identity
    (:func:`label_prior_moments_lowrank`, float64). ``--model-prior`` also times the harder case of a
    second model's cosine kernel as the prior (two ``d``-wide products per tile).
dense
    The dense formula (:func:`expectation_variance`, float64 n×n matrices) at the largest ``n`` whose
    estimated footprint (six n×n float64 matrices) fits ``--dense-budget-gb``, and the streamed
    computation at that same ``n``: time, peak memory, relative difference.
sampled
    The pair-sampling estimator with its 95 % interval at the big ``n`` (checked against the exact
    value) and at ``--sampled-n`` samples (default 10⁶), where no exact value is affordable.
median
    (``--median``) The RBF bandwidth at the big ``n``: exact streaming selection vs 10⁶ sampled pairs.
probes
    ``--tasks`` binary tasks drawn with the Potts prefix sampler on ``--probe-n`` × d features, from the
    label prior (factors r = 10) and from a cosine model prior (r = d; float64 as the reference, and
    float32), then one linear probe per model-prior task, all tasks as one batched layer (30 epochs,
    batch 64, Adam): time of each stage.

Usage::

    OMP_NUM_THREADS=2 python benchmarks/taskprior_scale.py [--n 100000] [--d 384] [--threads 2]
        [--dense-budget-gb 4] [--model-prior] [--median] [--tasks 1000] [--probe-n 10000]

Targets (issue #6): n = 100 000, d = 384 in ≤ 120 s on 2 cores with ≤ 2 GB peak; 1000 sampled-task
probes on 10k × 384 in ≤ 60 s.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path


def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        pass


def _peak_gb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _cpu_seconds() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _clustered_features(n: int, d: int, classes: int, seed: int):
    """Features with class structure: class means plus isotropic noise; labels (n,)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    means = torch.randn(classes, d, generator=g)
    x = means[labels] + 1.5 * torch.randn(n, d, generator=g)
    return x, labels


def child(part: str, args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    from sslkit.functional import taskprior as tp

    out: dict = {"part": part, "threads": torch.get_num_threads()}
    if part in ("streamed", "streamed-model"):
        x, y = _clustered_features(args.n, args.d, 10, 0)
        model = tp.block_kernel_from_features(x)
        if part == "streamed":
            prior = tp.label_block_kernel(y)
        else:
            z, _ = _clustered_features(args.n, args.d, 10, 1)
            prior = tp.block_kernel_from_features(0.5 * x + z)
            del z
        _reset_peak()
        start, cpu = time.perf_counter(), _cpu_seconds()
        e, v = tp.expectation_variance_blockwise(model, prior, 1.0, block_size=args.block)
        out.update(seconds=time.perf_counter() - start, cpu_seconds=_cpu_seconds() - cpu, peak_gb=_peak_gb(), n=args.n, d=args.d,
                   expectation=float(e), variance=float(v))
        if part == "streamed":
            e2, v2 = tp.label_prior_moments_lowrank(tp.model_kernel_factors(x, "cosine"), y, 1.0)
            out.update(rel_diff_expectation=abs(float(e / e2) - 1), rel_diff_variance=abs(float(v / v2) - 1))
    elif part == "dense":
        n = args.dense_n
        x, y = _clustered_features(n, args.d, 10, 0)
        _reset_peak()
        start, cpu = time.perf_counter(), _cpu_seconds()
        e, v = tp.expectation_variance(model_kernel=tp.cosine_kernel(x), prior_kernel=tp.label_kernel(y), temperature=1.0)
        out.update(seconds=time.perf_counter() - start, cpu_seconds=_cpu_seconds() - cpu, peak_gb=_peak_gb(), n=n, expectation=float(e), variance=float(v))
    elif part == "streamed-at-dense-n":
        n = args.dense_n
        x, y = _clustered_features(n, args.d, 10, 0)
        _reset_peak()
        start, cpu = time.perf_counter(), _cpu_seconds()
        e, v = tp.expectation_variance_blockwise(tp.block_kernel_from_features(x), tp.label_block_kernel(y), 1.0,
                                                 block_size=args.block)
        out.update(seconds=time.perf_counter() - start, cpu_seconds=_cpu_seconds() - cpu, peak_gb=_peak_gb(), n=n, expectation=float(e), variance=float(v))
    elif part == "sampled":
        x, y = _clustered_features(args.n, args.d, 10, 0)
        start, cpu = time.perf_counter(), _cpu_seconds()
        se, sv = tp.expectation_variance_sampled(tp.block_kernel_from_features(x), tp.label_block_kernel(y), 1.0,
                                                 num_pairs=args.pairs, seed=0)
        out.update(seconds=time.perf_counter() - start, cpu_seconds=_cpu_seconds() - cpu, n=args.n, num_pairs=args.pairs,
                   expectation=[se.estimate, se.low, se.high], variance=[sv.estimate, sv.low, sv.high])
        e, v = tp.label_prior_moments_lowrank(tp.model_kernel_factors(x, "cosine"), y, 1.0)
        out.update(exact_expectation=float(e), exact_variance=float(v), covers=[se.covers(float(e)), sv.covers(float(v))])
    elif part == "sampled-big":
        x, y = _clustered_features(args.sampled_n, args.sampled_d, 10, 0)
        _reset_peak()
        start, cpu = time.perf_counter(), _cpu_seconds()
        se, sv = tp.expectation_variance_sampled(tp.block_kernel_from_features(x), tp.label_block_kernel(y), 1.0,
                                                 num_pairs=args.pairs, seed=0)
        out.update(seconds=time.perf_counter() - start, cpu_seconds=_cpu_seconds() - cpu, peak_gb=_peak_gb(), n=args.sampled_n, d=args.sampled_d,
                   num_pairs=args.pairs, expectation=[se.estimate, se.low, se.high],
                   variance=[sv.estimate, sv.low, sv.high])
        e, v = tp.label_prior_moments_lowrank(tp.model_kernel_factors(x, "cosine"), y, 1.0)
        out.update(exact_expectation=float(e), exact_variance=float(v), covers=[se.covers(float(e)), sv.covers(float(v))])
    elif part == "median":
        x, _ = _clustered_features(args.n, args.d, 10, 0)
        _reset_peak()
        start, cpu = time.perf_counter(), _cpu_seconds()
        exact = tp.median_pairwise_distance(x, "exact", block_size=args.block)
        exact_seconds, exact_cpu = time.perf_counter() - start, _cpu_seconds() - cpu
        start = time.perf_counter()
        sampled = tp.median_pairwise_distance(x, "sampled", num_pairs=1_000_000)
        out.update(n=args.n, exact=exact, exact_seconds=exact_seconds, exact_cpu_seconds=exact_cpu, sampled=sampled,
                   sampled_seconds=time.perf_counter() - start, peak_gb=_peak_gb())
    elif part == "probes":
        from sslkit.eval.taskprior import probe_tasks
        from sslkit.functional.potts_sampler import potts_prefix_sample

        x, y = _clustered_features(args.probe_n, args.d, 10, 0)
        _reset_peak()
        timings = {}
        for name, factors, dtype in (
                ("label prior, r = 10", torch.nn.functional.one_hot(y).double(), torch.float64),
                (f"cosine model prior, r = {args.d}", torch.nn.functional.normalize(x.double(), dim=1), torch.float64),
                (f"cosine model prior, r = {args.d}, float32", torch.nn.functional.normalize(x.double(), dim=1),
                 torch.float32)):
            start, cpu = time.perf_counter(), _cpu_seconds()
            tasks = potts_prefix_sample(factors, 2, 1.0, num_tasks=args.tasks, seed=0, dtype=dtype)
            timings[name] = [time.perf_counter() - start, _cpu_seconds() - cpu]
        start, cpu = time.perf_counter(), _cpu_seconds()
        acc = probe_tasks(x, tasks, epochs=30).heldout  # on the model-prior tasks
        out.update(n=args.probe_n, tasks=args.tasks, sampling=timings, seconds=time.perf_counter() - start,
                   cpu_seconds=_cpu_seconds() - cpu, mean_accuracy=float(acc.mean()),
                   std_accuracy=float(acc.std()), peak_gb=_peak_gb(),
                   minority_fraction=float(torch.minimum(tasks.double().mean(1), 1 - tasks.double().mean(1)).mean()))
    return out


def _run_child(part: str, argv: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--child", part, *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"part": part, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--d", type=int, default=384)
    p.add_argument("--block", type=int, default=1024)
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    p.add_argument("--dense-budget-gb", type=float, default=4.0)
    p.add_argument("--pairs", type=int, default=1_000_000)
    p.add_argument("--sampled-n", type=int, default=1_000_000)
    p.add_argument("--sampled-d", type=int, default=128)
    p.add_argument("--model-prior", action="store_true")
    p.add_argument("--median", action="store_true")
    p.add_argument("--tasks", type=int, default=1000)
    p.add_argument("--probe-n", type=int, default=10_000)
    p.add_argument("--skip", default="", help="comma-separated parts to skip")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    # Six n×n float64 matrices live at once in the dense formula (M, K, σ, products).
    args.dense_n = min(args.n, int(math.sqrt(args.dense_budget_gb * 1024**3 / (6 * 8))) // 1000 * 1000)
    if args.child:
        print(json.dumps(child(args.child, args)))
        return
    argv = [a for a in sys.argv[1:]]
    parts = ["streamed", "dense", "streamed-at-dense-n", "sampled", "sampled-big", "probes"]
    if args.model_prior:
        parts.insert(1, "streamed-model")
    if args.median:
        parts.append("median")
    skip = set(filter(None, args.skip.split(",")))
    results = {}
    for part in parts:
        if part in skip:
            continue
        print(f"... {part}", file=sys.stderr, flush=True)
        results[part] = _run_child(part, argv)
        print(json.dumps(results[part]), file=sys.stderr, flush=True)

    print(f"\n## Task priors at scale (threads = {args.threads}, n = {args.n:,}, d = {args.d}, block = {args.block})\n")
    print("| computation | n | wall / CPU time (s) | peak RSS (GB) | result |")
    print("|---|---:|---:|---:|---|")
    s = results.get("streamed", {})
    if "seconds" in s:
        print(f"| exact streamed E, Var (cosine M, label prior) | {s['n']:,} | {s['seconds']:.1f} / {s['cpu_seconds']:.1f} | {s['peak_gb']:.2f} | "
              f"E = {s['expectation']:.6e}, Var = {s['variance']:.6e}; vs exact O(nd²) identity: "
              f"{s['rel_diff_expectation']:.1e} / {s['rel_diff_variance']:.1e} rel. |")
    sm = results.get("streamed-model", {})
    if "seconds" in sm:
        print(f"| exact streamed E, Var (cosine M, cosine model prior) | {sm['n']:,} | {sm['seconds']:.1f} / {sm['cpu_seconds']:.1f} | "
              f"{sm['peak_gb']:.2f} | E = {sm['expectation']:.6e} |")
    dn, sdn = results.get("dense", {}), results.get("streamed-at-dense-n", {})
    if "seconds" in dn and "seconds" in sdn:
        rel = max(abs(sdn["expectation"] / dn["expectation"] - 1), abs(sdn["variance"] / dn["variance"] - 1))
        print(f"| dense formula (float64 n×n) | {dn['n']:,} | {dn['seconds']:.1f} / {dn['cpu_seconds']:.1f} | {dn['peak_gb']:.2f} | "
              f"E = {dn['expectation']:.6e} |")
        print(f"| exact streamed, same n | {sdn['n']:,} | {sdn['seconds']:.1f} / {sdn['cpu_seconds']:.1f} | {sdn['peak_gb']:.2f} | "
              f"max rel. diff to dense {rel:.1e}; CPU time ×{dn['cpu_seconds'] / sdn['cpu_seconds']:.2f}, "
              f"memory ×{dn['peak_gb'] / sdn['peak_gb']:.1f} less |")
        print(f"| dense formula at n = {args.n:,} | {args.n:,} | — | ≈ {6 * 8 * args.n**2 / 1024**3:,.0f} (est.) | "
              f"one float64 n×n matrix alone is {8 * args.n**2 / 1e9:,.0f} GB |")
    for key in ("sampled", "sampled-big"):
        r = results.get(key, {})
        if "seconds" in r:
            e = r["expectation"]
            print(f"| pair sampling, {r['num_pairs']:,} pairs, 95 % CI{', d=' + str(r['d']) if 'd' in r else ''} | "
                  f"{r['n']:,} | {r['seconds']:.1f} / {r['cpu_seconds']:.1f} | {r.get('peak_gb', float('nan')):.2f} | "
                  f"E ∈ [{e[1]:.5e}, {e[2]:.5e}] (half-width {(e[2] - e[1]) / 2 / e[0]:.1e} rel.); exact "
                  f"{r['exact_expectation']:.5e}; covers E/Var: {r['covers']} |")
    m = results.get("median", {})
    if "exact" in m:
        print(f"| RBF median, exact streaming selection | {m['n']:,} | {m['exact_seconds']:.1f} / {m['exact_cpu_seconds']:.1f} | {m['peak_gb']:.2f} | "
              f"{m['exact']:.6f} |")
        print(f"| RBF median, 10⁶ sampled pairs | {m['n']:,} | {m['sampled_seconds']:.1f} | | "
              f"{m['sampled']:.6f} ({abs(m['sampled'] / m['exact'] - 1):.1e} rel.) |")
    pr = results.get("probes", {})
    if "seconds" in pr:
        for name, (wall, cpu) in pr["sampling"].items():
            print(f"| Potts prefix sampler, {pr['tasks']} binary tasks, {name} | {pr['n']:,} | {wall:.1f} / {cpu:.1f} | | |")
        print(f"| {pr['tasks']} batched linear probes (30 epochs, batch 64, one Linear({args.d}, {pr['tasks']})) | "
              f"{pr['n']:,} | {pr['seconds']:.1f} / {pr['cpu_seconds']:.1f} | {pr['peak_gb']:.2f} | held-out accuracy "
              f"{pr['mean_accuracy']:.3f} ± {pr['std_accuracy']:.3f} over tasks; minority class {pr['minority_fraction']:.2f} |")
    for part, r in results.items():
        if "error" in r:
            print(f"| {part} | | failed | | {r['error']} |")


if __name__ == "__main__":
    main()
