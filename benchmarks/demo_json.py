"""Write ``benchmarks/results/demo.json`` from a ``make demo`` run (issue 19, item 2).

Usage (on a fresh clone, timing the whole of ``make demo``, install included)::

    load=$(cut -d' ' -f1 /proc/loadavg); t0=$(date +%s); make install; t1=$(date +%s); make demo; t2=$(date +%s)
    python benchmarks/demo_json.py runs/demo-* --wall-s $((t2 - t0)) --install-s $((t1 - t0)) --load-start $load

Reads ``RUN_DIR/report.json`` (kNN top-1 of the pretrained model, the random-init backbone and raw
pixels on the test split) and writes ``pretrained``, ``random_init``, ``raw_pixels`` (in %), ``wall_s``,
``steps``, ``date`` and the two targets' verdicts.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--wall-s", type=float, required=True, help="wall time of make demo, install included")
    parser.add_argument("--install-s", type=float, default=None, help="the part of --wall-s spent in make install")
    parser.add_argument("--load-start", type=float, default=None,
                        help="1-minute load average when the timing started (default: now)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "demo.json"))
    args = parser.parse_args()
    report = json.loads((Path(args.run_dir) / "report.json").read_text())
    knn = {k: round(100 * v, 1) for k, v in report["knn_top1"].items()}
    record = {"pretrained": knn["pretrained"], "random_init": knn["random_init"], "raw_pixels": knn["raw_pixels"],
              "wall_s": round(args.wall_s),
              "install_s": None if args.install_s is None else round(args.install_s),
              "demo_s": None if args.install_s is None else round(args.wall_s - args.install_s), "steps": report["steps"], "date": datetime.date.today().isoformat(),
              "data": report.get("data"), "load_average": args.load_start if args.load_start is not None else os.getloadavg()[0],
              "target_random_init_plus_15": knn["pretrained"] >= knn["random_init"] + 15,
              "target_raw_pixels_plus_10": knn["pretrained"] >= knn["raw_pixels"] + 10,
              "target_wall_600_s": args.wall_s <= 600}
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
