"""NTPS for every layer of the bundled SmolLM2-135M on the 200 polarity sentences: wall time by phase and peak memory.

Targets (issue #7): ≤ 60 s end to end (feature extraction included) and ≤ 3 GB peak on 2 cores.
Side by side in the same run: the streaming statistics' memory vs storing every hidden state, and the stage times.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/ntps_speed.py [--threads 2] [--data polarity] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import resource
import time


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", default="polarity")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from sslkit.analysis.ntps import collect_ntps_features, ntps_per_layer, probe_accuracy, spearman
    from sslkit.data.text import load_text_dataset
    from sslkit.llm.models import load_causal_lm

    start = time.perf_counter()
    dataset = load_text_dataset(args.data)
    model, tokenizer = load_causal_lm("smollm2")
    t_load = time.perf_counter() - start
    rss_model = peak_rss_mb()
    tokens = sum(len(ids) for ids in tokenizer(dataset.texts)["input_ids"])

    t0 = time.perf_counter()
    stats, features, layers = collect_ntps_features(model, tokenizer, dataset, None, batch_size=args.batch_size)
    t_extract = time.perf_counter() - t0
    t0 = time.perf_counter()
    results = ntps_per_layer(stats, layers)
    t_solve = time.perf_counter() - t0
    t0 = time.perf_counter()
    labels = np.asarray(dataset.labels)
    probes = [probe_accuracy(features[:, i].numpy(), labels)[0] for i in range(len(layers))]
    t_probe = time.perf_counter() - t0
    total = time.perf_counter() - start
    rho = spearman([r.score for r in results], probes)

    d = model.config.hidden_size
    stats_mb = len(layers) * d * (3 * d + stats.num_classes) * stats.sxx.element_size() / 2**20  # Σ_xx, C₀, C₁, Σ_xy
    all_states_mb = len(layers) * tokens * d * 4 / 2**20
    print(f"## NTPS speed (benchmarks/ntps_speed.py)\n")
    print(f"SmolLM2-135M (float32, {len(layers)} hidden states incl. embeddings, d={d}), {args.data}: "
          f"{len(dataset)} texts, {tokens} tokens, batch {args.batch_size}, torch threads {args.threads}.\n")
    print("| stage | seconds |\n|---|---|")
    print(f"| load model (safetensors cache) + data | {t_load:.1f} |")
    print(f"| forward pass + streaming statistics, all layers | {t_extract:.1f} |")
    print(f"| eigenproblems + score + K-sweep, all layers | {t_solve:.1f} |")
    print(f"| held-out probes, all layers | {t_probe:.1f} |")
    print(f"| **total** (target ≤ 60 s) | **{total:.1f}** |\n")
    print("| memory | MB |\n|---|---|")
    print(f"| peak RSS after model load | {rss_model:.0f} |")
    print(f"| **peak RSS, whole run** (target ≤ 3072) | **{peak_rss_mb():.0f}** |")
    print(f"| streaming statistics (float64, all layers) | {stats_mb:.0f} |")
    print(f"| storing every hidden state instead (float32) | {all_states_mb:.0f} "
          f"(×{all_states_mb / stats_mb:.2f} of the statistics; grows with N, the statistics do not) |\n")
    best = int(np.argmax(probes))
    print(f"Spearman(NTPS, held-out probe accuracy) across layers: {rho:+.3f}; best probe layer {layers[best]} "
          f"({probes[best]:.3f}); NTPS range {min(r.score for r in results):.3f}–{max(r.score for r in results):.3f}, "
          f"NTPS_w range {min(r.score_whitened for r in results):.3f}–{max(r.score_whitened for r in results):.3f}.")


if __name__ == "__main__":
    main()
