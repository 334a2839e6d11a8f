"""What recording telemetry costs: the same expert episodes run with and without ``--telemetry``
at the control rate (every signal every control step, and the files written at the end), in
alternating order, ``--repeats`` times each; the ratio of the medians is the figure (at most 1.10
is the target: recording costs at most 10% of a run's time), in wall-clock and in the process's
CPU seconds (the envs step in this process; the CPU ratio holds when other work shares the
machine, the wall-clock one only on a quiet machine).

One ``name value unit`` line per figure; ``--json FILE`` also writes them with the commit and
machine they came from.

Usage: python bench/telemetry.py [--env MachineTend-v1 ConveyorPick-v1] [--episodes 2] [--repeats 5]
       [--rate HZ] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from provenance import stamp

from agents.tools.play import run_episodes


def timed(env_id: str, episodes: int, out: Path | None, rate: float | None) -> tuple[float, float]:
    """Wall-clock and CPU seconds of the run (the envs step in this process, so its CPU time is
    the run's, whatever else shares the machine)."""
    t0, c0 = time.perf_counter(), time.process_time()
    run_episodes(env_id, "expert", episodes, 0, telemetry=out, telemetry_rate=rate)
    return time.perf_counter() - t0, time.process_time() - c0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", nargs="+", default=["MachineTend-v1", "ConveyorPick-v1"])
    ap.add_argument("--episodes", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rate", type=float, default=None, help="samples per simulated second (default: control rate)")
    ap.add_argument("--json", help="also write the figures here, with the commit and machine")
    args = ap.parse_args()
    if args.episodes < 1 or args.repeats < 1:
        ap.error("--episodes and --repeats must be at least 1")
    figures = []
    for env_id in args.env:
        run_episodes(env_id, "expert", 1, 0)  # warm: imports, URDF caches
        plain, recorded = [], []
        with tempfile.TemporaryDirectory() as tmp:
            for k in range(args.repeats):
                order = (False, True) if k % 2 == 0 else (True, False)
                for record in order:
                    out = Path(tmp) / f"r{k}" if record else None
                    (recorded if record else plain).append(timed(env_id, args.episodes, out, args.rate))
            rows = json.loads((Path(tmp) / "r0" / "telemetry.json").read_text())
        med = lambda rows, i: statistics.median(r[i] for r in rows)  # noqa: E731
        for name, value, unit in (
            ("plain_seconds", med(plain, 0), "s"),
            ("recorded_seconds", med(recorded, 0), "s"),
            ("overhead_ratio", med(recorded, 0) / med(plain, 0), "x"),
            ("plain_cpu_seconds", med(plain, 1), "s"),
            ("recorded_cpu_seconds", med(recorded, 1), "s"),
            ("cpu_overhead_ratio", med(recorded, 1) / med(plain, 1), "x"),
            ("signals_per_sample", rows["signals_per_sample"], "signals"),
            ("rate", rows["rate_hz"], "Hz"),
        ):
            print(f"telemetry.{env_id}.{name} {value:.4g} {unit}", flush=True)
            figures.append({"name": f"telemetry.{env_id}.{name}", "value": value, "unit": unit})
    if args.json:
        doc = {**stamp("cpu"), "episodes": args.episodes, "repeats": args.repeats, "figures": figures}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
