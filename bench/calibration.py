"""Calibration against perturbed plants: for each, a 'plant' log made by the twin with parameters
the calibration is not told (and sensor noise and lost rows on top), then ``twin calibrate`` as a
user runs it from the bundled layout: process times, a feeder's interval, a belt's speed, the
machines' MTBF and MTTR read from the log, and a robot's speed override found by search over twin
runs (``RANGES``). Figures per plant: the fitted parameters against the true
ones (largest relative error), fidelity before and after (throughput error, KS statistic,
Wasserstein-1, time-in-state agreement), and the calibration's wall-clock.

One ``name value unit`` line per figure; ``--out DIR`` keeps the logs, and ``results.json`` there
records every figure with the commit and machine.

Usage: python bench/calibration.py [--episodes 40] [--only PLANT ...] [--out bench-out/calibration]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from provenance import commit, stamp

from agents.tools.play import run_episodes
from twin.paths import LAYOUTS_DIR
from twin.telemetry.calibrate import relative_error
from twin.telemetry.files import roughen

# (name, task, bundled layout, the plant's edits to it: (text before, text after, parameter, truth))
PLANTS = [
    (
        "tend-slower-fast-machine",
        "MachineTend-v1",
        "machine_tending",
        [("process_time = [4.0, 5.0]", "process_time = [5.0, 6.0]", "machines.0.process_time", [5.0, 6.0])],
    ),
    (
        "tend-both-machines",
        "MachineTend-v1",
        "machine_tending",
        [
            ("process_time = [4.0, 5.0]", "process_time = [3.4, 4.4]", "machines.0.process_time", [3.4, 4.4]),
            ("process_time = [9.0, 11.0]", "process_time = [8.0, 9.5]", "machines.1.process_time", [8.0, 9.5]),
        ],
    ),
    (
        "pick-feeder-and-belt",
        "ConveyorPick-v1",
        "default",
        [
            ("interval = [5.0, 7.0]", "interval = [4.0, 5.0]", "feeders.0.interval", [4.0, 5.0]),
            ("speed = 0.1\n", "speed = 0.12\n", "conveyors.0.speed", 0.12),
        ],
    ),
    (
        "tend-breakdowns",
        "MachineTend-v1",
        "machine_tending",
        [
            (None, "\n[faults.machine_breakdown]\nmtbf = 40.0\nmttr = 6.0\n", "faults.machine_breakdown.mtbf", 40.0),
            (None, "", "faults.machine_breakdown.mttr", 6.0),
        ],
    ),
    (
        "pick-slower-robot",  # a robot run at 80% override: no log shows it, so it is searched for
        "ConveyorPick-v1",
        "default",
        [
            ("interval = [5.0, 7.0]", "interval = [4.0, 5.0]", "feeders.0.interval", [4.0, 5.0]),
            ("speed = 0.1\n", "speed = 0.12\n", "conveyors.0.speed", 0.12),
            (
                'tool = "parallel_gripper"\n',
                'tool = "parallel_gripper"\nspeed_override = 0.8\n',
                "robots.0.speed_override",
                0.8,
            ),
        ],
    ),
]
RANGES = {"robots.0.speed_override": "0.5:1.0"}
"""The ranges the searched parameters are fitted in, as a user gives them (``--range``)."""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=40, help="episodes in each plant log, and in each twin run")
    ap.add_argument("--out", default="bench-out/calibration")
    ap.add_argument(
        "--only", nargs="*", metavar="PLANT", help="only these plants; the others' figures in --out are kept"
    )
    args = ap.parse_args()
    names = [p[0] for p in PLANTS]
    unknown = [n for n in args.only or [] if n not in names]
    if unknown:
        ap.error(f"--only {unknown[0]}: no such plant (the plants: {', '.join(names)})")
    if args.episodes < 2:
        ap.error("--episodes must be at least 2")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    figures = []

    def line(name: str, value: float, unit: str) -> None:
        print(f"{name} {value:.4g} {unit}", flush=True)
        figures.append({"name": name, "value": value, "unit": unit, "commit": commit()})

    for k, (name, task, layout, edits) in enumerate(PLANTS):
        if args.only and name not in args.only:
            continue
        text = (LAYOUTS_DIR / f"{layout}.toml").read_text()
        for before, after, _, _ in edits:
            if before is None:  # a section the bundled layout lacks
                text += after
                continue
            assert before in text, (layout, before)
            text = text.replace(before, after)
        plant_layout = out / f"{name}.toml"
        plant_layout.write_text(text)
        plant = out / name / "plant"
        if plant.exists():
            subprocess.run(["rm", "-rf", str(out / name)], check=True)
        run_episodes(
            task,
            "expert",
            args.episodes,
            0,
            telemetry=plant,
            telemetry_rate=5,
            env_kwargs={"layout": str(plant_layout)},
        )
        roughen(plant, k)
        fit = ",".join(p for _, _, p, _ in edits)
        cmd = [sys.executable, "-m", "agents.cli", "calibrate", str(plant), "--layout", layout, "--fit", fit]
        cmd += ["--out", str(out / name / "calibrated"), "--episodes", str(args.episodes)]
        for param in (p for _, _, p, _ in edits if p in RANGES):
            cmd += ["--range", f"{param}={RANGES[param]}"]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        doc = json.loads((out / name / "calibrated" / "calibration.json").read_text())
        for _, _, param, truth in edits:
            line(f"{name}.{param}.relative_error", relative_error(doc["parameters"][param]["value"], truth), "fraction")
        for label in ("before", "after"):
            f = doc["fidelity"][label]
            line(f"{name}.{label}.throughput_error", f["throughput_error"], "%")
            line(f"{name}.{label}.ks_statistic", f["ks_statistic"], "-")
            line(f"{name}.{label}.wasserstein_s", f["wasserstein_s"], "s")
            for m, v in f["time_in_state_agreement"].items():
                line(f"{name}.{label}.{m}.time_in_state_agreement", v, "fraction")
        line(f"{name}.fit_seconds", doc["fit_seconds"], "s")
        if doc.get("search"):
            line(f"{name}.search_twin_runs", doc["search"]["runs"], "runs")
        line(f"{name}.calibrate_command_seconds", wall, "s")
    earlier = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else {}
    ran = {name for name, *_ in PLANTS if not args.only or name in args.only}
    kept = [
        {**f, "commit": f.get("commit", earlier.get("commit", "?"))}  # written before figures carried their commit
        for f in earlier.get("figures", [])
        if f["name"].split(".", 1)[0] not in ran
    ]
    order = {n: i for i, n in enumerate(names)}
    figures = sorted(kept + figures, key=lambda f: order.get(f["name"].split(".", 1)[0], len(order)))
    (out / "results.json").write_text(
        json.dumps({**stamp("cpu"), "episodes": args.episodes, "figures": figures}, indent=2) + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
