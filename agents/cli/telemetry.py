"""``twin replay``, ``fidelity`` and ``calibrate``: the twin held against a plant's log."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from agents.cli.common import (
    UsageError,
    _check_env_kwargs,
    _env_id,
    _in_path,
    _layout_file,
    _out_dir,
    _progress,
    _require_command,
    _telemetry_dir,
    err,
    out,
)
from agents.cli.play import _kpi_table


def _log_info(flag: str, path: str) -> tuple[Path, dict]:
    """A telemetry folder given as ``flag`` and its ``telemetry.json`` (empty where it has none)."""
    _in_path(flag, path, "telemetry folder")
    folder = Path(path)
    if not folder.is_dir():
        raise UsageError(f"{flag} {folder}: not a telemetry folder")
    info = folder / "telemetry.json"
    return folder, json.loads(info.read_text(encoding="utf-8")) if info.is_file() else {}


def load_replay(log_arg: str, env_arg: str | None, layout_arg: str | None, expert: bool = True):
    """A plant log (``LOG``: a telemetry folder, or an OCEL 2.0 or XES file) read against its
    cell's layout: ``(log, env_id, layout_ref, plans, report)``, or a UsageError naming what is wrong."""
    from twin.layout import LayoutError, load_layout
    from twin.telemetry.interchange import is_interchange
    from twin.telemetry.replay import plan

    if Path(log_arg).is_file() and is_interchange(log_arg):  # an OCEL 2.0 or XES log
        _in_path("LOG", log_arg, "OCEL 2.0 or XES log")
        log, info = Path(log_arg), {}
        if not env_arg:
            raise UsageError(f"LOG {log}: an OCEL or XES log names no task; give it with --env")
    else:
        log, info = _log_info("LOG", log_arg)
    env_id = _env_id(env_arg or info.get("env_id") or "", expert=expert)
    import envs

    layout_ref = layout_arg or info.get("layout") or envs.TASKS[env_id].layout
    if layout_arg:
        layout_ref = _layout_file(layout_arg)
    try:
        layout = load_layout(layout_ref)
        plans, report = plan(log, layout)
    except (LayoutError, FileNotFoundError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    return log, env_id, layout_ref, plans, report


def cmd_fidelity(args: argparse.Namespace) -> int:
    _require_command("fidelity")
    from twin.telemetry.fidelity import FidelityError, fidelity, read_log
    from twin.telemetry.report import write_report

    _in_path("PLANT_LOG", args.plant, "telemetry folder")
    _in_path("TWIN_LOG", args.twin, "telemetry folder")
    _out_dir("--out", args.out)
    try:
        plant, twin = read_log(args.plant), read_log(args.twin)
    except (FidelityError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    doc = fidelity(plant, twin, seed=args.seed)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / ".fidelity.json.tmp"
    tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    tmp.replace(out_dir / "fidelity.json")
    report = write_report(out_dir, doc, plant, twin)
    table = Table(title=f"fidelity: {args.twin} against {args.plant}")
    table.add_column("figure")
    table.add_column("unit")
    table.add_column("value", justify="right")
    show = lambda x: "-" if x is None else f"{x:.4g}"  # noqa: E731
    table.add_row("throughput error", "%", show(doc["throughput_error"]))
    table.add_row("cycle times, KS statistic", "-", show(doc["ks_statistic"]))
    table.add_row("cycle times, KS p-value", "-", show(doc["ks_pvalue"]))
    table.add_row("cycle times, Wasserstein-1", "s", show(doc["wasserstein_s"]))
    for m, v in doc["time_in_state_agreement"].items():
        table.add_row(f"time-in-state agreement, {m}", "fraction", show(v))
    out.print(table)
    out.print(f"fidelity.json and {report.name} written to {out_dir}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    _require_command("calibrate")
    from agents.tools.calibrate import calibrate
    from twin.layout import LayoutError
    from twin.telemetry.calibrate import CalibrationError
    from twin.telemetry.fidelity import FidelityError

    plant, info = _log_info("PLANT_LOG", args.plant)
    if not info:
        raise UsageError(f"PLANT_LOG {plant}: not a telemetry folder (no telemetry.json; twin record writes one)")
    env_id = _env_id(args.env or info.get("env_id") or "", expert=True)
    episodes = args.episodes or len(info.get("episodes", [])) or 1
    if episodes < 1:
        raise UsageError("--episodes must be at least 1")
    _out_dir("--out", args.out)
    if (Path(args.out) / "calibration.json").exists():
        raise UsageError(f"--out {args.out}: already holds a calibration (calibration.json); name a new folder")
    names = [n for n in args.fit.split(",") if n.strip()]
    if not names:
        raise UsageError("--fit: name at least one parameter (e.g. machines.0.process_time)")
    for flag in ("search_episodes", "rounds", "workers"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be at least 1")
    if args.points < 4:
        raise UsageError("--points must be at least 4 (each round searches one grid step either side of the best)")
    from agents.tools.search import parse_range

    try:
        ranges = {}
        for text in args.range or []:
            name, lo, hi = parse_range(text)
            if name in ranges:
                raise CalibrationError(f"--range {name}: given twice")
            ranges[name] = (lo, hi)
    except CalibrationError as exc:
        raise UsageError(str(exc)) from None
    options = {
        "episodes": args.search_episodes or min(episodes, 4),
        "rounds": args.rounds,
        "points": args.points,
        "workers": args.workers or 2,
        "backend": args.backend,
    }
    with _progress() as prog:
        search_task = None

        def candidate(done, total, result):
            nonlocal search_task
            if search_task is None:
                search_task = prog.add_task("search: twin runs", total=total, rate="")
            values = ", ".join(f"{k.rsplit('.', 1)[-1]} {v:.4g}" for k, v in result["values"].items())
            prog.update(search_task, completed=done, rate=escape(f"{values}: distance {result['distance']:.3f}"))

        task = prog.add_task(escape(f"{env_id}: twin before and after"), total=None, rate="")
        t0, steps = time.perf_counter(), [0]

        def step(n, limit):
            steps[0] += 1
            prog.update(task, rate=f"{steps[0] / (time.perf_counter() - t0):.0f} steps/s")

        try:
            doc = calibrate(
                plant,
                env_id,
                args.layout,
                names,
                Path(args.out),
                episodes,
                args.seed,
                on_step=step,
                ranges=ranges,
                search_options=options,
                on_candidate=candidate,
            )
        except (CalibrationError, FidelityError, LayoutError, FileNotFoundError, ValueError) as exc:
            raise UsageError(str(exc)) from None
    table = Table(title=f"calibration of {args.layout} from {plant}")
    for col in ("parameter", "from", "before", "fitted", "uncertainty", "observations"):
        table.add_column(col)
    for name, p in doc["parameters"].items():
        how = "twin runs" if p["method"] == "search" else "the log"
        table.add_row(name, how, str(p["before"]), _short(p["value"]), _short(p["uncertainty"]), str(p["samples"]))
    out.print(table)
    show = lambda x: "-" if x is None else f"{x:.3g}"  # noqa: E731
    for label in ("before", "after"):
        f = doc["fidelity"][label]
        agree = ", ".join(f"{m} {show(v)}" for m, v in f["time_in_state_agreement"].items()) or "-"
        out.print(
            f"{label}: throughput error {show(f['throughput_error'])} %, KS {show(f['ks_statistic'])}, "
            f"Wasserstein {show(f['wasserstein_s'])} s, time-in-state agreement {agree}"
        )
    if doc.get("search"):
        out.print(
            f"search: {doc['search']['runs']} twin runs of {doc['search']['episodes']} episodes "
            f"({doc['search']['resumed']} found done in {args.out}); search.png shows them"
        )
    out.print(f"layout.toml, calibration.json and the fidelity reports written to {args.out}")
    return 0


def _short(value) -> str:
    """A fitted value or its uncertainty to 4 significant figures (each of a range's ends)."""
    if isinstance(value, list):
        return "[" + ", ".join(f"{v:.4g}" for v in value) + "]"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def cmd_replay(args: argparse.Namespace) -> int:
    _require_command("replay")
    from agents.tools.play import run_episodes, summarize

    log, env_id, layout_ref, plans, report = load_replay(args.log, args.env, args.layout, args.policy == "expert")
    _telemetry_dir(args.out, args.telemetry_rate, "--out")
    for line in report:
        err.print(f"repaired: {escape(line)}")
    env_kwargs = {"layout": str(layout_ref)}
    _check_env_kwargs(env_id, env_kwargs)
    with _progress() as prog:
        task = prog.add_task(escape(f"{env_id} replaying {log.name}"), total=float(len(plans)), rate="")
        done = [0]

        def episode(res):
            done[0] += 1
            prog.update(task, completed=done[0])

        try:
            results = run_episodes(
                env_id,
                args.policy,
                len(plans),
                0,
                on_episode=episode,
                env_kwargs=env_kwargs,
                telemetry=args.out,
                telemetry_rate=args.telemetry_rate,
                replay=plans,
            )
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    dropped = [f"episode {p.episode}: {d}" for p in plans for d in p.dropped]
    for line in dropped:
        err.print(f"left out: {escape(line)}")
    doc = {"log": str(log), "env_id": env_id, "layout": str(layout_ref), "repaired": report, "left_out": dropped}
    (Path(args.out) / "replay.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    summary = summarize(results)
    out.print(_kpi_table(f"{env_id}: {args.policy} policy replaying {log} ({len(plans)} episodes)", summary))
    out.print(f"the replay's telemetry and replay.json written to {args.out}")
    return 0
