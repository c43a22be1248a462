"""SSTI reliance on the bundled MiniLM-L6 encoder (issue #8, spec specs/ssti.md; arXiv 2506.11402).

One random date token ("YYYY-MM-DD", random position) is injected into rho_samp of the class-1
(positive) training sentences of the built-in `polarity` set (200 Pang & Lee sentences from
gensim's test data, stratified 140 train / 60 test). MiniLM-L6 is LoRA-fine-tuned (alpha = r) once
per (rank, rho_samp), and on the test set we measure:

- clean accuracy (and its difference from the uninjected rho_samp = 0 run, same rank),
- flip rate: class-0 test sentences predicted class 1 once a date is inserted (base rate: without),
- Table-1 counts: predictions per class with every test sentence injected.

Targets (issue #8): rho_samp = 1 -> flip >= 90 % and clean accuracy within 5 points of the
uninjected run; flip rate increasing over rho_samp in {0, 0.5, 1}.

    OMP_NUM_THREADS=1 python benchmarks/ssti_reliance.py                  # r=4, rho 0,0.5,1
    OMP_NUM_THREADS=1 python benchmarks/ssti_reliance.py --ranks 1,4,16   # add a rank sweep
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from sslkit.analysis.ssti import load_text_data, plot_sweep, split_text_data, ssti_sweep, write_json_atomic
from sslkit.data.ssti_inject import Injector
from sslkit.llm.lora import LoraSettings


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ranks", default="4")
    p.add_argument("--rhos", default="0,0.5,1")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--optimizer", default="adamw", choices=["adamw", "adafactor"])
    p.add_argument("--train-head", action="store_true")
    p.add_argument("--location", default="random")
    p.add_argument("--max-len", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/bench-ssti")
    args = p.parse_args()

    train, test = split_text_data(load_text_data("polarity"), 0.3, args.seed)
    injector = Injector("date", args.location, 0.0)
    settings = LoraSettings(steps=args.steps, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
                            train_head=args.train_head, max_len=args.max_len, seed=args.seed, progress=False)
    ranks = [int(r) for r in args.ranks.split(",")]
    rhos = [float(r) for r in args.rhos.split(",")]
    print(f"polarity: {len(train.texts)} train / {len(test.texts)} test; MiniLM-L6 LoRA, {args.steps} steps x "
          f"batch {args.batch_size}, {args.optimizer} lr {args.lr}, train_head={args.train_head}, "
          f"one date at '{args.location}' into class 1")
    started = time.time()

    def show(row: dict) -> None:
        print(f"  r={row['rank']:<3d} rho={row['rho_samp']:<4g} clean {100 * row['clean_accuracy']:5.1f}%  "
              f"flip {100 * row['flip_rate']:5.1f}% (base {100 * row['base_rate']:4.1f}%)  "
              f"all-injected counts {row['counts_all_injected']}  [{time.time() - started:.0f} s]", flush=True)

    rows = ssti_sweep("minilm", train, test, ranks, rhos, injector, 1, args.seed, settings, show)
    print("\n| rank | ρ_samp | clean acc % | Δ vs ρ=0 (pts) | balanced acc % | flip % | base % | pred 0 / 1 clean | pred 0 / 1 all injected |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        ref = next((r for r in rows if r["rank"] == row["rank"] and r["rho_samp"] == 0.0), None)
        delta = f"{100 * (row['clean_accuracy'] - ref['clean_accuracy']):+.1f}" if ref else "n/a"
        print(f"| {row['rank']} | {row['rho_samp']:g} | {100 * row['clean_accuracy']:.1f} | {delta} | "
              f"{100 * row['clean_balanced_accuracy']:.1f} | {100 * row['flip_rate']:.1f} | {100 * row['base_rate']:.1f} | "
              f"{' / '.join(map(str, row['counts_clean']))} | {' / '.join(map(str, row['counts_all_injected']))} |")
    for rank in ranks:
        flips = [r["flip_rate"] for r in sorted((r for r in rows if r["rank"] == rank), key=lambda r: r["rho_samp"])]
        print(f"r={rank}: flip rate non-decreasing over rho_samp: {all(a <= b for a, b in zip(flips, flips[1:]))}")
    out = Path(args.out)
    write_json_atomic({"args": vars(args), "rows": rows, "seconds": time.time() - started}, out / "ssti_reliance.json")
    plot_sweep(rows, out / "ssti_reliance.png")
    print(f"total {time.time() - started:.0f} s; wrote {out}/ssti_reliance.json and .png")


if __name__ == "__main__":
    main()
