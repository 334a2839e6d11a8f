"""``twin play --line``, ``twin line check | schema | fit | run``: lines of cells, in physics and
in the fast line model fitted to it."""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from rich import box
from rich.markup import escape
from rich.table import Table

from agents.cli.common import UsageError, _fmt, _out_dir, _out_file, _progress, _require, err, out


def _load(arg: str):
    from twin.layout import LayoutError
    from twin.line import find_line, load_line

    if (arg.endswith(".toml") or "/" in arg) and not Path(arg).exists():
        raise UsageError(f"{arg}: no such line file")
    try:
        path = find_line(arg)
        return load_line(path), path
    except (LayoutError, FileNotFoundError) as exc:
        raise UsageError(str(exc)) from None


def seed_list(text: str) -> list[int]:
    """``--seeds``: ``0,1,2``, ``0-4`` or a mix (``0-2,7``)."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(v) for v in part.split("-", 1))
                if hi < lo or hi - lo > 10_000:
                    raise ValueError
                seeds += range(lo, hi + 1)
            else:
                seeds.append(int(part))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected seeds such as 0,1,2 or 0-9 (whole numbers from 0), got {text!r}"
            ) from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"expected distinct seeds from 0, such as 0,1,2 or 0-9, got {text!r}")
    return seeds


def _duration(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not 1.0 <= v <= 7 * 24 * 3600:
        raise argparse.ArgumentTypeError(f"expected line seconds from 1 to 604800, got {text!r}")
    return v


def _code_version() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parents[2],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _physics(line_path: Path, seeds: list[int], duration: float, workers: int, label: str) -> list[dict]:
    from envs.line import run_many
    from twin.line import LineError

    total = duration * len(seeds)
    with _progress() as prog:
        task = prog.add_task(escape(label), total=total, rate="")
        t0 = time.perf_counter()

        def tick(dt: float) -> None:
            done = prog.tasks[task].completed + dt
            prog.update(task, completed=done, rate=f"{done / max(time.perf_counter() - t0, 1e-9):.1f}x real time")

        try:
            return run_many(line_path, seeds, duration, workers, tick)
        except LineError as exc:
            raise UsageError(f"{line_path}: {exc}") from None


CELL_COLUMNS = (
    ("produced", "made", "parts"),
    ("throughput", "good", "parts/h"),
    ("utilisation", "busy", "share"),
    ("blocked_s", "blocked", "s"),
    ("starved_s", "starved", "s"),
    ("lead_time_mean", "in cell", "s"),
    ("oee", "OEE", "share"),
    ("energy", "energy", "J"),
)


def _mean_ci(vals) -> tuple[float, float]:
    a = np.array(vals, dtype=float)
    a = a[np.isfinite(a)]
    mean = float(a.mean()) if a.size else math.nan
    return mean, (1.96 * float(a.std(ddof=1)) / math.sqrt(a.size) if a.size > 1 else math.nan)


def _summary_tables(title: str, runs: list[dict], cells: list[str]) -> list[Table]:
    """The line's KPIs (mean and 95% CI over the runs) and a row of KPI means per cell."""
    from twin.line import unit_of

    line = Table(title=title)
    for col in ("KPI", "unit", "mean", "95% CI ±"):
        line.add_column(col, justify="left" if col in ("KPI", "unit") else "right")
    for key in runs[0]:
        if any(key.startswith(c + "_") for c in cells):
            continue
        if key == "bottleneck":
            counts = np.bincount([int(r[key]) for r in runs], minlength=len(cells))
            share = f"{counts.max()} of {len(runs)} runs"
            line.add_row("bottleneck (busiest cell)", "cell", cells[int(np.argmax(counts))], share)
            continue
        mean, ci = _mean_ci([r[key] for r in runs])
        line.add_row(key, unit_of(key, cells), _fmt(mean), _fmt(ci))
    per_cell = Table(title="per cell (means over the runs)", box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
    per_cell.add_column("cell", no_wrap=True)
    for _, name, unit in CELL_COLUMNS:
        per_cell.add_column(f"{name}\n{unit}", justify="right", no_wrap=True)
    for c in cells:
        per_cell.add_row(c, *(_fmt(_mean_ci([r[f"{c}_{k}"] for r in runs])[0]) for k, _, _ in CELL_COLUMNS))
    return [line, per_cell]


def _show(tables: list[Table], to_err: bool) -> None:
    for t in tables:
        (err if to_err else out).print(t)


def cmd_play_line(args: argparse.Namespace) -> int:
    from twin.line.files import write_run

    line, path = _load(args.line)
    if args.episodes < 1:
        raise UsageError("--episodes must be at least 1")
    if args.out:
        _out_dir("--out", args.out)
    seeds = list(range(args.seed, args.seed + args.episodes))
    runs = _physics(path, seeds, args.duration, args.workers, f"{line.name} in physics")
    cells = [c.name for c in line.ordered()[0]]
    title = f"{line.name}: experts in physics, {len(seeds)} run(s) of {args.duration:g} s from seed {args.seed}"
    _show(_summary_tables(title, [r["kpis"] for r in runs], cells), args.json)
    if args.out:
        for r in runs:
            meta = {"line": line.name, "mode": "physics", "seed": r["seed"], "code": _code_version()}
            write_run(Path(args.out) / f"seed-{r['seed']}", r["events"], cells, args.duration, r["kpis"], meta)
        (err if args.json else out).print(f"events and KPIs written to {args.out}/seed-*/ (events.csv, kpis.json)")
    if args.json:
        print(
            json.dumps({"line": line.name, "mode": "physics", "runs": [{"seed": r["seed"], **r["kpis"]} for r in runs]})
        )
    return 0


def cmd_line_check(args: argparse.Namespace) -> int:
    from envs.line import cell_env_ids
    from twin.line import LineError

    line, path = _load(args.file)
    cells, buffers = line.ordered()
    try:
        cell_env_ids(line)
    except LineError as exc:
        raise UsageError(f"{path}: {exc}") from None
    chain = " -> ".join(
        [
            f"{c.name} ({c.env})" + (f" -> [{b.capacity}]" if k < len(buffers) else "")
            for k, (c, b) in enumerate(zip(cells, [*buffers, None], strict=True))
        ]
    )
    out.print(f"{path}: valid line {line.name!r}: source -> {chain} -> out")
    return 0


def cmd_line_schema(args: argparse.Namespace) -> int:
    from twin.line.schema import LineFile

    print(json.dumps(LineFile.model_json_schema(by_alias=True), indent=2))
    return 0


def cmd_line_fit(args: argparse.Namespace) -> int:
    from twin.line import line_hash
    from twin.line.fit import fit_line, save_model

    line, path = _load(args.line)
    _out_file("--out", args.out)
    runs = _physics(path, args.seeds, args.duration, args.workers, f"{line.name}: physics runs to fit")
    try:
        model = fit_line(
            line,
            [(r["events"], r["energy"], r["stoppages"]) for r in runs],
            defect_rates=runs[0]["defect_rates"],
            line_sha256=line_hash(path),
            seeds=args.seeds,
            duration=args.duration,
            code=_code_version(),
            created=datetime.now(UTC).isoformat(timespec="seconds"),
        )
    except ValueError as exc:
        err.print(f"twin line fit: {exc}", markup=False)
        return 1
    save_model(model, args.out)
    table = Table(title=f"{line.name}: fitted from seeds {args.seeds} x {args.duration:g} s of physics")
    for col, unit in (
        ("cell", ""),
        ("parts", "count"),
        ("EPT mean", "s"),
        ("EPT CV", ""),
        ("scrap", "share"),
        ("defective in", "share"),
        ("scrap defective/sound", "share"),
        ("energy", "J/part"),
        ("stops", "count"),
        ("up between", "s"),
    ):
        table.add_column(f"{col} ({unit})" if unit else col, justify="left" if col == "cell" else "right")
    for name, c in model.cells.items():
        table.add_row(
            name,
            str(c.parts),
            f"{c.ept_mean:.2f}",
            f"{c.ept_cv:.2f}",
            f"{c.scrap_rate:.3f}",
            "-" if c.defect_rate is None else f"{c.defect_rate:.3f}",
            "/".join("-" if v is None else f"{v:.3f}" for v in (c.scrap_if_defective, c.scrap_if_sound)),
            f"{c.energy_per_part:.0f}",
            str(c.stoppages),
            f"{c.uptime_between_s:.0f}" if c.uptime_between_s else "-",
        )
    out.print(table)
    out.print(f"model written to {args.out}")
    return 0


def cmd_line_run(args: argparse.Namespace) -> int:
    from twin.line.files import write_run

    line, path = _load(args.line)
    if args.out:
        _out_dir("--out", args.out)
    cells = [c.name for c in line.ordered()[0]]
    if args.mode == "physics":
        runs = _physics(path, args.seeds, args.duration, args.workers, f"{line.name} in physics")
    else:
        runs = des_runs(line, path, args.model, args.seeds, args.duration)
    title = f"{line.name} ({args.mode}): {len(runs)} run(s) of {args.duration:g} s"
    _show(_summary_tables(title, [r["kpis"] for r in runs], cells), args.json)
    if args.out:
        for r in runs:
            meta = {
                "line": line.name,
                "mode": args.mode,
                "seed": r["seed"],
                "model": args.model,
                "code": _code_version(),
            }
            write_run(Path(args.out) / f"seed-{r['seed']}", r["events"], cells, args.duration, r["kpis"], meta)
    if args.json:
        print(
            json.dumps({"line": line.name, "mode": args.mode, "runs": [{"seed": r["seed"], **r["kpis"]} for r in runs]})
        )
    return 0


def des_runs(line, path, model_path: str | None, seeds: list[int], duration: float) -> list[dict]:
    """The fast model's runs, one per seed (refusing a model fitted to another line)."""
    _require("twin line run --mode des", "line", ["simpy"])
    from twin.line.des import run_des

    table = _model_table(line, path, model_path)
    runs = []
    for s in seeds:
        events, kpis = run_des(line, table, s, duration)
        runs.append({"seed": s, "events": events, "kpis": kpis})
    return runs


def add_parsers(sub) -> None:
    p = sub.add_parser("line", help="lines of cells: check a line file, fit the fast line model, run either model")
    lsub = p.add_subparsers(dest="line_command", required=True, metavar="SUBCOMMAND")
    q = lsub.add_parser("check", help="validate a line file (exit 2 naming the field if invalid)")
    q.add_argument("file")
    q.set_defaults(fn=cmd_line_check)
    q = lsub.add_parser("schema", help="print the line layout JSON Schema")
    q.set_defaults(fn=cmd_line_schema)
    q = lsub.add_parser("fit", help="run the line in physics and fit the fast line model to it")
    q.add_argument("line", help="a line file or a bundled line's name")
    q.add_argument("--seeds", type=seed_list, default=[0, 1, 2], help="physics runs to fit on (0-2)")
    q.add_argument("--duration", type=_duration, default=1800.0, help="line seconds per run (1800)")
    q.add_argument("--workers", type=int, default=2, help="processes running the physics (2)")
    q.add_argument("--out", required=True, metavar="FILE", help="the fitted model (JSON) to write")
    q.set_defaults(fn=cmd_line_fit)
    q = lsub.add_parser("run", help="run the line in the fast model (des) or in physics; KPIs over seeds")
    q.add_argument("line")
    q.add_argument("--mode", choices=["des", "physics"], default="des")
    q.add_argument("--model", metavar="FILE", help="the fitted model (twin line fit) for --mode des")
    q.add_argument("--seeds", type=seed_list, default=list(range(10)), help="seeds (0-9)")
    q.add_argument("--duration", type=_duration, default=1800.0, help="line seconds per run (1800)")
    q.add_argument("--workers", type=int, default=2, help="processes running the physics (2)")
    q.add_argument("--out", metavar="DIR", help="write each run's events.csv and kpis.json under DIR/seed-N/")
    q.add_argument("--json", action="store_true", help="also print every run's KPIs as one JSON line")
    q.set_defaults(fn=cmd_line_run)


def cmd_sweep(args: argparse.Namespace) -> int:
    from agents.tools.sweep import KPIS, Sweep, execute, summarise, write_outputs
    from twin.line import line_hash
    from twin.line.sweep import SweepError, apply, grid, parse_vary, random_points

    line, path = _load(args.line)
    _require("twin sweep", "line", ["matplotlib"] + (["simpy"] if args.mode == "des" or args.rerun_best else []))
    if not args.vary:
        raise UsageError("name at least one parameter to vary: --vary NAME=v1,v2,... or --vary NAME=lo:hi:n")
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    _out_dir("--out", args.out)
    if args.physics_seeds and not args.rerun_best:
        raise UsageError("--physics-seeds are the seeds of --rerun-best's physics runs; give --rerun-best K too")
    if args.rerun_best and args.mode != "des":
        raise UsageError(
            "--rerun-best re-runs a des sweep's best points in physics; this sweep is already --mode physics"
        )
    try:
        params = [parse_vary(v, line) for v in args.vary]
        names = [p.name for p in params]
        if len(set(names)) != len(names):
            raise SweepError(f"--vary names {', '.join(n for n in names if names.count(n) > 1)} more than once")
        if args.mode == "des":
            knobs = [p.name for p in params if p.knob]
            if knobs:
                raise SweepError(
                    f"--vary {knobs[0]}: a task setting changes the cell's physics, and the fitted model knows the "
                    "cell only as it was fitted; sweep it with --mode physics"
                )
        points = grid(params) if args.search == "grid" else random_points(params, args.budget, args.seeds[0])
        if args.mode == "physics" or args.rerun_best:
            from envs.line import check_knobs
            from twin.line import LineError

            for point in points:
                try:
                    check_knobs(apply(line, point), path)
                except LineError as exc:
                    raise SweepError(f"--vary {', '.join(f'{k}={v}' for k, v in point.items())}: {exc}") from None
    except SweepError as exc:
        raise UsageError(str(exc)) from None
    model = None
    if args.mode == "des" or args.rerun_best:
        model = _model_table(line, path, args.model)
    backend = args.backend
    if backend == "auto":
        from agents.extras import installed

        backend = "ray" if installed("ray") else "local"
        if backend == "local":
            err.print("note: Ray is not installed ([ray] extra); the sweep runs on local processes")
    elif backend == "ray":
        _require("twin sweep --backend ray", "ray", ["ray"])
    if args.address and backend != "ray":
        raise UsageError("--address names a Ray cluster; it needs --backend ray")
    spec = {
        "line": line.name,
        "line_sha256": line_hash(path),
        "vary": args.vary,
        "search": args.search,
        "budget": args.budget if args.search == "random" else None,
        "mode": args.mode,
        "seeds": args.seeds,
        "duration_s": args.duration,
        "model": str(Path(args.model).resolve()) if model is not None else None,
    }
    sweep = Sweep(line, path, points, args.seeds, args.mode, args.duration, model, Path(args.out), spec)
    try:
        done = sweep.prepare()
    except SweepError as exc:
        raise UsageError(str(exc)) from None
    jobs = sweep.jobs(done)
    total = len(points) * len(args.seeds)
    if done:
        err.print(f"resuming: {total - len(jobs)} of {total} runs already in {args.out}/runs.jsonl")
    t0 = time.perf_counter()
    with _progress() as prog:
        task = prog.add_task(
            escape(f"{line.name} sweep ({args.mode})"), total=total, completed=total - len(jobs), rate=""
        )

        def finished(result: dict) -> None:
            sweep.record(result)
            done[json.dumps([sorted(result["point"].items()), result["seed"]])] = result
            n = prog.tasks[task].completed + 1
            rate = (n - (total - len(jobs))) / max(time.perf_counter() - t0, 1e-9)
            prog.update(task, completed=n, rate=f"{rate * 60:.1f} runs/min")

        ran_on = execute(jobs, backend, args.workers, args.address, finished)
    wall = time.perf_counter() - t0
    rows = summarise(list(done.values()), names)
    write_outputs(rows, names, Path(args.out), f"{line.name} ({args.mode})")
    best = sorted(rows, key=lambda r: -r[args.objective] if args.objective == "throughput" else r[args.objective])
    table = Table(
        title=f"{line.name}: {len(rows)} points x {len(args.seeds)} seeds ({args.mode}), best first by {args.objective}"
    )
    for n in names:
        table.add_column(n, justify="right")
    for k in KPIS[:4]:
        table.add_column(
            f"{k} ({'parts/h' if k == 'throughput' else 'parts' if k == 'wip' else 's' if k.startswith('lead') else 'J'})",
            justify="right",
        )
    for r in best[:10]:
        table.add_row(*(str(r[n]) for n in names), *(_fmt(r[k]) for k in KPIS[:4]))
    out.print(table)
    out.print(f"{len(jobs)} runs in {wall:.1f} s on {ran_on}; table, plots and Pareto fronts in {args.out}")
    (Path(args.out) / "timing.json").write_text(
        json.dumps({"runs": len(jobs), "wall_s": wall, "backend": ran_on}, indent=1), encoding="utf-8"
    )
    if args.rerun_best:
        _rerun_best(args, line, path, best[: args.rerun_best], names, model)
    return 0


def _rerun_best(args, line, path, best: list[dict], names: list[str], model) -> None:
    """The des sweep's best points run again in physics on the same seeds, side by side."""
    import csv

    from agents.tools.sweep import KPIS, Sweep, execute, summarise
    from twin.line.sweep import SweepError

    phys_dir = Path(args.out) / "physics-best"
    points = [{n: r[n] for n in names} for r in best]
    seeds = args.physics_seeds or args.seeds
    spec = {"of": str(Path(args.out).resolve()), "points": points, "seeds": seeds, "duration_s": args.duration}
    sweep = Sweep(line, path, points, seeds, "physics", args.duration, None, phys_dir, spec)
    try:
        done = sweep.prepare()
    except SweepError as exc:
        raise UsageError(str(exc)) from None
    jobs = sweep.jobs(done)
    with _progress() as prog:
        task = prog.add_task(
            escape(f"best {len(points)} points in physics"),
            total=len(points) * len(seeds),
            completed=len(points) * len(seeds) - len(jobs),
            rate="",
        )

        def finished(result: dict) -> None:
            sweep.record(result)
            done[json.dumps([sorted(result["point"].items()), result["seed"]])] = result
            prog.update(task, advance=1)

        execute(jobs, "local" if args.backend != "ray" else "ray", args.workers, args.address, finished)
    phys = {json.dumps(sorted({n: r[n] for n in names}.items())): r for r in summarise(list(done.values()), names)}
    table = Table(
        title=f"best points: the fast model ({len(args.seeds)} seeds) beside the physics ({len(seeds)} seeds)"
    )
    for n in names:
        table.add_column(n, justify="right")
    cols = [k for k in KPIS[:3]]
    for k in cols:
        table.add_column(f"{k} des", justify="right")
        table.add_column(f"{k} physics", justify="right")
    with open(Path(args.out) / "best.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow([*names, *(f"{k}_{m}" for k in cols for m in ("des", "physics"))])
        for r in best:
            p = phys[json.dumps(sorted({n: r[n] for n in names}.items()))]
            w.writerow([*(r[n] for n in names), *(v for k in cols for v in (r[k], p[k]))])
            table.add_row(*(str(r[n]) for n in names), *(_fmt(v) for k in cols for v in (r[k], p[k])))
    out.print(table)
    out.print(f"side by side in {Path(args.out) / 'best.csv'}")


def _model_table(line, path, model_path: str | None) -> dict:
    from twin.line import line_hash
    from twin.line.fit import load_model, model_table

    if not model_path:
        raise UsageError("the fast model needs --model FILE (a fitted model from twin line fit)")
    try:
        model = load_model(model_path)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if model.line != line.name:
        raise UsageError(f"--model {model_path}: fitted to line {model.line!r}, not {line.name!r}")
    missing = [c.name for c in line.cells if c.name not in model.cells]
    if missing:
        raise UsageError(f"--model {model_path}: has no fit for cell(s) {', '.join(missing)} of {path}")
    if model.line_sha256 != line_hash(path):
        err.print(f"note: {path} changed since the model was fitted (its SHA-256 differs); the fit may not match it")
    return model_table(model)


def add_sweep_parser(sub) -> None:
    p = sub.add_parser("sweep", help="what-if sweep of a line's parameters (fast model or physics), on Ray")
    p.add_argument("line", help="a line file or a bundled line's name")
    p.add_argument(
        "--vary",
        action="append",
        default=[],
        metavar="NAME=VALUES",
        help="a parameter and its values: buffer.1.capacity=1,2,4,8 or cell.0.belt_speed=0.05:0.2:4 (repeat)",
    )
    p.add_argument("--mode", choices=["des", "physics"], default="des")
    p.add_argument("--model", metavar="FILE", help="the fitted line model (twin line fit) for --mode des")
    p.add_argument(
        "--search", choices=["grid", "random"], default="grid", help="every combination, or --budget random points"
    )
    p.add_argument("--budget", type=int, default=24, help="points of a random search (24)")
    p.add_argument("--seeds", type=seed_list, default=[0, 1, 2, 3, 4], help="seeds per point (0-4)")
    p.add_argument("--duration", type=_duration, default=1800.0, help="line seconds per run (1800)")
    p.add_argument(
        "--backend",
        choices=["auto", "ray", "local"],
        default="auto",
        help="ray (a local cluster, or --address), local processes; auto: ray when installed",
    )
    p.add_argument("--address", help="a Ray cluster's address (ray://host:10001 or host:6379)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="CPUs of the local cluster or processes")
    p.add_argument("--objective", choices=["throughput", "wip", "lead_time_mean", "energy"], default="throughput")
    p.add_argument(
        "--rerun-best", type=int, default=0, metavar="K", help="re-run a des sweep's K best points in physics"
    )
    p.add_argument(
        "--physics-seeds", type=seed_list, help="seeds of --rerun-best's physics runs (default: the sweep's)"
    )
    p.add_argument("--out", required=True, metavar="DIR", help="the sweep's folder (run again to resume)")
    p.set_defaults(fn=cmd_sweep)
