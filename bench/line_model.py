"""The fast line model against the physics: fit it on some seeds' physics runs of the bundled
line, then compare it with physics runs on seeds the fit never saw (line throughput, WIP, lead
time, the bottleneck), and time it against real time on one core.

Prints one ``name value unit`` line per figure and writes ``line_model.json`` (every run's KPIs,
the fit, the provenance) and the fitted model into ``--out``.

Usage: python bench/line_model.py [--line pick_tend_sort] [--fit-seeds 0-5] [--test-seeds 100-105]
       [--duration 1800] [--des-seeds 100] [--workers 2] [--out bench/results/line]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from provenance import stamp  # noqa: E402

from agents.cli.line import seed_list  # noqa: E402
from envs.line import run_many  # noqa: E402
from twin.line import find_line, line_hash, load_line, unit_of  # noqa: E402
from twin.line.des import run_des  # noqa: E402
from twin.line.fit import fit_line, model_table, save_model  # noqa: E402

FIGURES = ("throughput", "output_rate", "wip", "lead_time_mean")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--line", default="pick_tend_sort")
    ap.add_argument("--fit-seeds", type=seed_list, default=list(range(6)))
    ap.add_argument("--test-seeds", type=seed_list, default=list(range(100, 106)))
    ap.add_argument("--duration", type=float, default=1800.0, help="line seconds per run")
    ap.add_argument("--des-seeds", type=int, default=100, help="runs of the fast model to average")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default="bench/results/line")
    args = ap.parse_args()
    if set(args.fit_seeds) & set(args.test_seeds):
        ap.error("--fit-seeds and --test-seeds must not share a seed")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = find_line(args.line)
    line = load_line(path)
    cells = [c.name for c in line.ordered()[0]]

    t0 = time.perf_counter()
    fit_runs = run_many(path, args.fit_seeds, args.duration, args.workers)
    physics_fit_s = time.perf_counter() - t0
    model = fit_line(
        line,
        [(r["events"], r["energy"], r["stoppages"]) for r in fit_runs],
        defect_rates=fit_runs[0]["defect_rates"],
        line_sha256=line_hash(path),
        seeds=args.fit_seeds,
        duration=args.duration,
        code=stamp()["commit"],
    )
    save_model(model, out / f"{line.name}.fit.json")
    t0 = time.perf_counter()
    test_runs = run_many(path, args.test_seeds, args.duration, args.workers)
    physics_test_s = time.perf_counter() - t0

    table = model_table(model)
    t0 = time.process_time()
    des = [run_des(line, table, 10_000 + s, args.duration)[1] for s in range(args.des_seeds)]
    des_cpu_s = time.process_time() - t0  # one core's time: the model is single-threaded

    phys = [r["kpis"] for r in test_runs]
    rows = {}
    for k in FIGURES:
        p = statistics.mean(r[k] for r in phys)
        d = statistics.mean(r[k] for r in des)
        vals = [r[k] for r in phys]
        ci = 1.96 * statistics.stdev(vals) / math.sqrt(len(vals)) if len(vals) > 1 else math.nan
        rows[k] = {"physics": p, "physics_ci95": ci, "des": d, "rel_error": (d - p) / p if p else math.nan}
        unit = unit_of(k, cells)
        print(f"line_model.{k}.physics {p:.4g} {unit}")
        print(f"line_model.{k}.des {d:.4g} {unit}")
        print(f"line_model.{k}.rel_error {rows[k]['rel_error']:+.4f} ratio")
    bott_p = statistics.mode(int(r["bottleneck"]) for r in phys)
    bott_d = statistics.mode(int(r["bottleneck"]) for r in des)
    print(f"line_model.bottleneck.physics {cells[bott_p]} cell")
    print(f"line_model.bottleneck.des {cells[bott_d]} cell")
    print(f"line_model.bottleneck.same {int(bott_p == bott_d)} bool")
    speed = args.des_seeds * args.duration / des_cpu_s
    physics_speed = args.duration * len(args.test_seeds) / physics_test_s
    print(f"line_model.des_speed {speed:.4g} x_real_time_one_core")
    print(f"line_model.physics_speed {physics_speed:.4g} x_real_time_{args.workers}_procs")
    doc = {
        **stamp(),
        "line": line.name,
        "line_sha256": line_hash(path),
        "duration_s": args.duration,
        "fit_seeds": args.fit_seeds,
        "test_seeds": args.test_seeds,
        "des_runs": args.des_seeds,
        "figures": rows,
        "bottleneck": {"physics": cells[bott_p], "des": cells[bott_d]},
        "des_speed_x_real_time_one_core": speed,
        "physics_speed_x_real_time": physics_speed,
        "physics_wall_s": {"fit": physics_fit_s, "test": physics_test_s},
        "physics_test_runs": [{"seed": r["seed"], **r["kpis"]} for r in test_runs],
        "physics_fit_runs": [{"seed": r["seed"], **r["kpis"]} for r in fit_runs],
        "des_mean": {k: statistics.mean(r[k] for r in des) for k in des[0]},
        "fit": {n: {kk: v for kk, v in c.model_dump().items() if kk != "ept"} for n, c in model.cells.items()},
    }
    (out / "line_model.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
