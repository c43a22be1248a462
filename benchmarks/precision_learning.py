"""Does bf16 autocast learn as well as fp32 on the CPU? (issue 18, item 5)

Reads two ``benchmarks/learning_outcomes.py`` outputs — one run at ``trainer.precision=32-true``, one
at ``bf16-mixed``, same seeds — and pairs them by method and seed: the difference bf16 − fp32 of the
pretrained kNN accuracy (the learning-outcome tests' measure), its mean, 95 % Student-t interval and
a verdict. *Within seed noise* means the interval contains 0 and the mean difference is smaller than
the fp32 runs' own seed-to-seed standard deviation; *worse* / *better* when the interval excludes 0.

    python benchmarks/precision_learning.py benchmarks/results/learning_outcomes.json \
        benchmarks/results/learning_outcomes_bf16.json --json benchmarks/results/precision_learning.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from claims import paired  # noqa: E402  (the t interval used by every claim in RESULTS.md)


def clean_runs(path: Path) -> dict[tuple[str, int], float]:
    """(method, seed) → pretrained kNN % of the runs without a deliberate breakage."""
    rows = json.loads(path.read_text())["rows"]
    return {(r["method"], r["seed"]): r["pretrained"] for r in rows if r.get("breakage") is None}


def compare(fp32: dict, bf16: dict) -> dict:
    out = {}
    for method in sorted({m for m, _ in fp32} & {m for m, _ in bf16}):
        seeds = sorted(s for m, s in fp32 if m == method and (m, s) in bf16)
        diffs = [bf16[method, s] - fp32[method, s] for s in seeds]
        base = [fp32[method, s] for s in seeds]
        stats = paired(diffs, 0.0, None)
        noise = statistics.stdev(base) if len(base) > 1 else float("nan")
        low, high = stats["ci95"]
        verdict = ("worse" if high < 0 else "better" if low > 0 else
                   "within seed noise" if abs(stats["mean"]) < noise else "not shown")
        out[method] = {"seeds": seeds, "fp32": base, "bf16": [bf16[method, s] for s in seeds], "difference": stats,
                       "fp32_seed_sd": noise, "verdict": verdict}
    return out


def table(result: dict) -> str:
    lines = ["| method | fp32 kNN % per seed | bf16 kNN % per seed | bf16 − fp32, mean [95 % CI] | fp32 seed sd | verdict |",
             "|---|---|---|---:|---:|---|"]
    for method, r in result.items():
        d = r["difference"]
        lines.append(f"| {method} | {' / '.join(f'{v:.1f}' for v in r['fp32'])} | "
                     f"{' / '.join(f'{v:.1f}' for v in r['bf16'])} | {d['mean']:+.1f} [{d['ci95'][0]:+.1f}, "
                     f"{d['ci95'][1]:+.1f}] | {r['fp32_seed_sd']:.1f} | {r['verdict']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("fp32", type=Path)
    parser.add_argument("bf16", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = compare(clean_runs(args.fp32), clean_runs(args.bf16))
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps({"fp32": str(args.fp32), "bf16": str(args.bf16), "methods": result}, indent=2)
                             + "\n")


if __name__ == "__main__":
    main()
