"""A what-if sweep of the bundled line in the fast model: 24 points (buffer sizes and the
tending cell's WIP limit) x 5 seeds, once on local processes and once on Ray's local cluster
(the wall-clock of each), and its two best points run again in physics, side by side.

Prints one ``name value unit`` line per figure and writes into ``--out``: ``sweep.csv``,
``pareto.csv``, ``best.csv``, the plots and ``line_sweep.json`` (timings, provenance).

Usage: python bench/line_sweep.py --model bench/results/line/pick_tend_sort.fit.json
       [--duration 1800] [--physics-seeds 0,1] [--workers 2] [--out bench/results/line/sweep]
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from provenance import stamp  # noqa: E402

from agents.cli import run as twin  # noqa: E402

VARY = ["buffer.0.capacity=1,2,4,8", "buffer.1.capacity=1,2", "cell.1.wip_limit=2,3,4"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--duration", type=float, default=1800.0)
    ap.add_argument("--seeds", default="0-4")
    ap.add_argument("--physics-seeds", default="0,1")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default="bench/results/line/sweep")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = [
        "sweep",
        "pick_tend_sort",
        "--model",
        args.model,
        "--seeds",
        args.seeds,
        "--duration",
        str(args.duration),
        "--workers",
        str(args.workers),
    ]
    for v in VARY:
        base += ["--vary", v]
    walls = {}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in ("local", "ray"):
            folder = Path(tmp) / backend
            t0 = time.perf_counter()
            extra = ["--rerun-best", "2", "--physics-seeds", args.physics_seeds] if backend == "local" else []
            if twin([*base, "--backend", backend, "--out", str(folder), *extra]) != 0:
                raise SystemExit(f"the {backend} sweep failed")
            timing = json.loads((folder / "timing.json").read_text())
            walls[backend] = {
                "sweep_wall_s": timing["wall_s"],
                "runs": timing["runs"],
                "command_wall_s": time.perf_counter() - t0,
            }
            print(f"line_sweep.{backend}.wall {timing['wall_s']:.4g} s", flush=True)
            print(f"line_sweep.{backend}.runs_per_s {timing['runs'] / timing['wall_s']:.4g} runs/s", flush=True)
        local = Path(tmp) / "local"
        for name in [
            "sweep.csv",
            "pareto.csv",
            "best.csv",
            "pareto_wip.png",
            "pareto_energy.png",
            "throughput_vs_buffer.0.capacity.png",
            "wip_vs_buffer.0.capacity.png",
            "throughput_vs_cell.1.wip_limit.png",
            "lead_time_mean_vs_cell.1.wip_limit.png",
        ]:
            shutil.copy(local / name, out / name)
        same = (local / "sweep.csv").read_text() == (Path(tmp) / "ray" / "sweep.csv").read_text()
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    print(f"line_sweep.points {len(rows)} points", flush=True)
    print(f"line_sweep.ray_equals_local {int(same)} bool", flush=True)
    doc = {
        **stamp(),
        "vary": VARY,
        "seeds": args.seeds,
        "physics_seeds": args.physics_seeds,
        "duration_s": args.duration,
        "workers": args.workers,
        "model": args.model,
        "timing": walls,
        "ray_table_equals_local": same,
    }
    (out / "line_sweep.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
