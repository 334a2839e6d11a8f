"""The ``twin`` command line.

Exit codes: 0 success, 1 a run failed (a smoke case; an evaluation episode that could not run to
its end: a policy fault, a limit, a dead worker), 2 bad input (unknown env id, invalid layout,
suite, config, checkpoint or policy, bad arguments), 130/143 stopped by Ctrl-C/SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

out = Console()
err = Console(stderr=True)


class UsageError(Exception):
    """Bad input from the user: printed without a traceback, exit status 2."""


def _require_command(command: str) -> None:
    """Refuse ``twin COMMAND`` when what it needs is not installed (one line, exit 2)."""
    from agents.extras import MissingExtra, require_command

    try:
        require_command(command)
    except MissingExtra as exc:
        raise UsageError(str(exc)) from None


def _require(what: str, extra: str, modules: list[str]) -> None:
    """Refuse a command whose optional dependency is not installed (one line, exit 2)."""
    from agents.extras import MissingExtra, require

    try:
        require(what, extra, modules)
    except MissingExtra as exc:
        raise UsageError(str(exc)) from None


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )


def _episode_ticker(prog: Progress, task, per_minute: bool = False):
    """A callback that advances ``task`` by one episode and shows the episode rate."""
    t0 = time.perf_counter()

    def tick(*_) -> None:
        rate = (prog.tasks[task].completed + 1) / (time.perf_counter() - t0)
        prog.update(task, advance=1, rate=f"{60 * rate:.1f} ep/min" if per_minute else f"{rate:.2f} ep/s")

    return tick


def _fmt(v: float) -> str:
    if isinstance(v, float) and math.isnan(v):
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _metric(key: str) -> tuple[str, str]:
    """A summary key as a readable name and its unit."""
    from agents.evaluation.scorecard import kpi_info

    own = {
        "episodes": ("Episodes", "count"),
        "success_rate": ("Success rate", "share"),
        "mean_return": ("Return, mean", "reward"),
        "mean_length": ("Episode length, mean", "steps"),
        "final_distance": ("Final distance to the goal", "m"),
        "parts_placed_total": ("Parts placed, all episodes", "parts"),
        "parts_arrived_total": ("Parts arrived, all episodes", "parts"),
        "parts_placed_fraction": ("Parts placed, share", "share"),
        "step": ("Training steps", "env steps"),
        "policy_step": ("Policy evaluated, from step", "env steps"),
        "train_seconds": ("Training time", "s"),
        "run_seconds": ("Run time against max_seconds (all lives of the run)", "s"),
        "ended_by": ("Training ended by", "budget"),
        "collect_seconds": ("Collecting (of the training time)", "s"),
        "update_seconds": ("Updating (of the training time)", "s"),
        "progress_eval_seconds": ("Evaluating while training (of the training time)", "s"),
        "workers_restarted": ("Workers restarted", "count"),
        "episodes_dropped": ("Episodes dropped", "count"),
        "eval_seconds": ("Evaluation time", "s"),
        "eval_episodes": ("Evaluation episodes", "count"),
        "eval_return_mean": ("Evaluation return, mean", "reward"),
        "eval_length_mean": ("Evaluation episode length, mean", "steps"),
        "eval_success_rate": ("Evaluation success rate", "share"),
        "eval_parts_placed_fraction": ("Evaluation parts placed, share", "share"),
    }
    if key in own:
        return own[key]
    name, unit, _ = kpi_info(key)
    return name, unit or "-"


MAX_SEED = 2**63 - 1


def _seed(text: str) -> int:
    """A ``--seed``: a whole number from 0 (Gymnasium refuses negative seeds)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 to {MAX_SEED:,}, got {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 to {MAX_SEED:,}, got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    """Argument errors as one line (what was wrong, and where the help is), exit 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _out_file(flag: str, path: str) -> None:
    """Refuse an output file whose folder cannot be made or written, before any work is done."""
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"{flag} {path}: is a folder; name a file")
    _out_dir(flag, path, target.parent, "its folder ")


def _out_dir(flag: str, path: str, folder: Path | None = None, what: str = "") -> None:
    """Refuse an output folder (or a file's ``folder``) that cannot be made or written, before any
    work is done and without making anything: a refused command leaves no trace."""
    folder = Path(path) if folder is None else folder
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{flag} {path}: cannot create {what}{folder}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path}: cannot write into {existing}")


def _in_path(flag: str, path: str, kind: str = "file or folder") -> None:
    """Refuse an input that does not exist, naming the argument."""
    if not Path(path).exists():
        raise UsageError(f"{flag} {path}: no such {kind}")


def _suite_exists(suite: str) -> None:
    """Refuse a ``--suite`` that is neither a file nor a bundled suite's name, naming both."""
    from agents.evaluation.suite import SEEDS_DIR, find_suite

    if not find_suite(suite).exists():
        names = ", ".join(sorted(p.stem for p in SEEDS_DIR.glob("*.toml")))
        raise UsageError(f"--suite {suite}: no such suite file, nor a bundled suite ({names})")


def _video_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"--video-size must be WIDTHxHEIGHT, such as 480x360, got {text!r}") from None
    if not (16 <= w <= 4096 and 16 <= h <= 4096):
        raise UsageError(f"--video-size must be 16 to 4096 pixels a side, got {text!r}")
    return w, h


def _env_id(env_id: str, expert: bool = False) -> str:
    """``env_id`` checked (``module:EnvId`` imports the module); ``expert``: it must have an expert."""
    import envs

    try:
        envs.check_env_id(env_id)
    except envs.UnknownEnvError as exc:
        raise UsageError(str(exc)) from None
    if expert and not envs.is_factory_env(env_id):
        raise UsageError(f"{env_id} has no scripted expert (this package's envs have one: {', '.join(envs.ENV_IDS)})")
    return env_id


# -- commands ---------------------------------------------------------------------------------


def cmd_envs(args: argparse.Namespace) -> int:
    import envs

    width = max(len(e) for e in (*envs.ENV_IDS, *envs.SKILL_IDS))
    for env_id in (*envs.ENV_IDS, *envs.SKILL_IDS):
        modes = ",".join(envs.TASKS[env_id].obs_modes)
        skill = f" [skill of {envs.SKILLS[env_id][0]}]" if env_id in envs.SKILLS else ""
        print(f"{env_id:<{width}}  {envs.DESCRIPTIONS[env_id]} [obs: {modes}]{skill}")
    return 0


def cmd_smoke(args: argparse.Namespace) -> int:
    from agents.tools.smoke import cases, smoke_one

    failed = []
    t0 = time.perf_counter()
    for env_id, mode, robot, varied in cases():
        t = time.perf_counter()
        label, arm = (f"{mode}, {robot}", f" robot={robot}") if robot else (mode, "")
        if varied:
            label, arm = f"{label}, faults, randomized", f"{arm} faults=all randomize=True"
        try:
            smoke_one(env_id, mode, steps=args.steps, seed=args.seed, robot=robot, varied=varied)
        except Exception as exc:  # report and go on: the summary names every failure
            failed.append(f"{env_id} [{label}]: {type(exc).__name__}: {exc}")
            out.print(f"[red]FAIL[/red] {env_id} obs_mode={mode}{arm}: {escape(str(exc))}")
        else:
            out.print(f"[green]ok[/green]   {env_id} obs_mode={mode}{arm} ({time.perf_counter() - t:.1f} s)")
    if failed:
        err.print(escape(f"smoke failed for {len(failed)} case(s):\n  " + "\n  ".join(failed)))
        return 1
    out.print(f"smoke passed: {len(cases())} cases in {time.perf_counter() - t0:.1f} s")
    return 0


def _play_inputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--layout", metavar="FILE", help="a cell layout file in place of the task's bundled one")
    p.add_argument(
        "--telemetry-rate",
        type=float,
        metavar="HZ",
        help="telemetry samples per simulated second (default: every control step)",
    )


def _kpi_table(title: str, summary: dict) -> Table:
    """A run's summary (``agents.tools.play.summarize``) as a table of metric, unit and value."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("unit")
    table.add_column("value", justify="right")
    for k, v in summary.items():
        name, unit = _metric(k)
        table.add_row(name, unit, _fmt(v))
    return table


def _log_info(flag: str, path: str) -> tuple[Path, dict]:
    """A telemetry folder given as ``flag`` and its ``telemetry.json`` (empty where it has none)."""
    _in_path(flag, path, "telemetry folder")
    folder = Path(path)
    if not folder.is_dir():
        raise UsageError(f"{flag} {folder}: not a telemetry folder")
    info = folder / "telemetry.json"
    return folder, json.loads(info.read_text(encoding="utf-8")) if info.is_file() else {}


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
    from twin.layout import LayoutError, load_layout
    from twin.telemetry.interchange import is_interchange
    from twin.telemetry.replay import plan

    if Path(args.log).is_file() and is_interchange(args.log):  # an OCEL 2.0 or XES log
        _in_path("LOG", args.log, "OCEL 2.0 or XES log")
        log, info = Path(args.log), {}
        if not args.env:
            raise UsageError(f"LOG {log}: an OCEL or XES log names no task; give it with --env")
    else:
        log, info = _log_info("LOG", args.log)
    env_id = _env_id(args.env or info.get("env_id") or "", expert=args.policy == "expert")
    import envs

    layout_ref = args.layout or info.get("layout") or envs.TASKS[env_id].layout
    if args.layout:
        layout_ref = _layout_file(args.layout)
    try:
        layout = load_layout(layout_ref)
        plans, report = plan(log, layout)
    except (LayoutError, FileNotFoundError, ValueError) as exc:
        raise UsageError(str(exc)) from None
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


def cmd_record(args: argparse.Namespace) -> int:
    _require_command("record")
    args.telemetry, args.telemetry_flag = args.out, "--out"
    return cmd_play(args)


def cmd_play(args: argparse.Namespace) -> int:
    from agents.tools.play import run_episodes, summarize

    env_id = _env_id(args.env_id, expert=args.policy == "expert")
    if args.episodes < 1:
        raise UsageError("--episodes must be at least 1")
    if args.video and not args.video.lower().endswith((".mp4", ".gif")):
        raise UsageError(f"--video must name a .mp4 or .gif file, got {args.video!r}")
    if args.frame_stride < 1:
        raise UsageError("--frame-stride must be at least 1")
    size = _video_size(args.video_size)
    if args.video:
        _out_file("--video", args.video)
    env_kwargs = {"robot": args.robot} if args.robot else {}
    if args.faults:
        env_kwargs["faults"] = args.faults if args.faults in ("all", "none") else args.faults.split(",")
    if args.randomize:
        env_kwargs["randomize"] = True
    if args.layout:
        env_kwargs["layout"] = _layout_file(args.layout)
    if args.telemetry:
        _telemetry_dir(args.telemetry, args.telemetry_rate, getattr(args, "telemetry_flag", "--telemetry"))
    if env_kwargs:
        _check_env_kwargs(env_id, env_kwargs)  # an arm that is not there, a fault it lacks: exit 2
    with _progress() as prog:
        # the bar counts control steps (an episode's share of its step limit), so it moves and its
        # ETA means something even while one long episode renders its video
        task = prog.add_task(escape(f"{env_id} [{args.policy}]"), total=float(args.episodes), rate="")
        t0, state = time.perf_counter(), {"episodes": 0, "steps": 0}

        def step(n, limit):
            state["steps"] += 1
            frac = min(n / limit, 0.99) if limit else 0.0
            rate = state["steps"] / (time.perf_counter() - t0)
            prog.update(task, completed=state["episodes"] + frac, rate=f"{rate:.0f} steps/s")

        def done(res):
            state["episodes"] += 1
            prog.update(task, completed=state["episodes"])
            if args.verbose:
                err.print(f"seed {res.seed}: success={res.success} return={res.ret:.2f} steps={res.length}")

        try:
            results = run_episodes(
                env_id,
                args.policy,
                args.episodes,
                args.seed,
                args.video,
                on_episode=done,
                env_kwargs=env_kwargs,
                on_step=step,
                frame_stride=args.frame_stride,
                video_size=size,
                telemetry=args.telemetry,
                telemetry_rate=args.telemetry_rate,
            )
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    summary = summarize(results)
    table = _kpi_table(f"{env_id}: {args.policy} policy, {args.episodes} episode(s) from seed {args.seed}", summary)
    (err if args.json else out).print(table)  # with --json, stdout carries the JSON alone
    if args.json:
        print(json.dumps({"env": env_id, "policy": args.policy, "seed": args.seed, **summary}))
    if args.video:
        (err if args.json else out).print(f"video written to {args.video}")
    if args.telemetry:
        info = json.loads((Path(args.telemetry) / "telemetry.json").read_text(encoding="utf-8"))
        (err if args.json else out).print(
            f"telemetry written to {args.telemetry}: {info['signals']:,} signal rows at {info['rate_hz']:g} Hz, "
            f"{info['events']:,} events (signals.parquet, events.parquet, ocel.json)"
        )
    return 0


def cmd_layout_check(args: argparse.Namespace) -> int:
    from twin.layout import LayoutError, load_layout

    _in_path("FILE", args.file, "layout file")
    try:
        layout = load_layout(args.file)
    except (LayoutError, FileNotFoundError) as exc:
        raise UsageError(str(exc)) from None
    kinds = ("robots", "conveyors", "feeders", "bins", "trays", "tables", "machines", "inspections", "fixtures")
    counts = [f"{len(getattr(layout, k))} {k}" for k in kinds if getattr(layout, k)]
    counts.append(f"{len(layout.cameras)} cameras")
    out.print(f"{args.file}: valid layout {layout.name!r} ({', '.join(counts)})")
    return 0


def cmd_layout_schema(args: argparse.Namespace) -> int:
    from twin.layout import CellLayout

    print(json.dumps(CellLayout.model_json_schema(), indent=2))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from agents.tools.bench import run_bench

    for flag in ("steps", "repeats", "envs_per_worker", "episodes"):
        if getattr(args, flag) < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be at least 1")
    if args.procs is not None and args.procs < 1:
        raise UsageError("--procs must be at least 1")

    env_ids = [_env_id(args.env)] if args.env else None
    if env_ids is None:
        import envs

        env_ids = list(envs.ENV_IDS)
    for env_id in env_ids:
        print(f"# {env_id}", flush=True)
        figures = run_bench(
            env_id,
            steps=args.steps,
            repeats=args.repeats,
            max_procs=args.procs,
            envs_per_worker=args.envs_per_worker,
            episodes=args.episodes,
            every_count=not args.procs_only,
        )
        for name, value, unit in figures:
            print(f"{env_id}.{name} {value:.4g} {unit}", flush=True)
    return 0


def _parse_sets(pairs: list[str]) -> dict[str, str]:
    out_: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--set expects KEY=VALUE, got {pair!r}")
        out_[key.strip()] = value.strip()
    return out_


def _layout_file(path: str) -> str:
    """A cell layout file given in place of the task's bundled one, checked before anything runs
    (a field out of bounds is named with its file)."""
    from twin.layout import LayoutError, load_layout

    _in_path("--layout", path, "layout file")
    if Path(path).is_dir():
        raise UsageError(f"--layout {path}: is a folder; name a layout file (.toml)")
    try:
        load_layout(path)
    except LayoutError as exc:
        raise UsageError(f"--layout: {exc}") from None
    return str(Path(path).resolve())


def _telemetry_dir(path: str, rate: float | None, flag: str = "--telemetry") -> None:
    """A telemetry folder (``flag``) that can be written and holds no recording yet, and a rate above 0."""
    _out_dir(flag, path)
    if (Path(path) / "telemetry.json").exists():
        raise UsageError(f"{flag} {path}: already holds a recording (telemetry.json); name a new folder")
    if rate is not None and not rate > 0:
        raise UsageError(f"--telemetry-rate {rate:g}: expected a rate in Hz above 0")
    _require("--telemetry", "telemetry", ["pyarrow"])


def _check_env_kwargs(env_id: str, kwargs: dict) -> None:
    """Build the env once with ``kwargs`` so a bad one is refused before any worker starts."""
    import gymnasium as gym

    try:
        env = gym.make(env_id, **kwargs)
    except Exception as exc:  # whatever the env's constructor refuses
        raise UsageError(f"env_kwargs {kwargs}: gym.make({env_id!r}) fails: {type(exc).__name__}: {exc}") from None
    env.close()


def cmd_train(args: argparse.Namespace) -> int:
    _require_command("train")
    if args.backend == "ray":
        _require("twin train --backend ray", "ray", ["ray"])
    import envs  # noqa: F401  (registers the ids)
    from agents.collect.demos import DemosError
    from agents.common.checkpoint import CheckpointError
    from agents.common.config import ConfigError, make_config, to_dict
    from agents.common.spaces import UnsupportedSpaceError
    from agents.train import TrainError, train

    _env_id(args.env)  # raises with the closest ids; imports the module of a module:EnvId
    if args.demos:
        _in_path("--demos", args.demos, "demonstrations file")
    if not args.show_config:
        _out_dir("--out", args.out)
    sets = _parse_sets(args.set or [])
    flags = (
        ("steps", "total_steps"),
        ("envs", "n_envs"),
        ("workers", "workers"),
        ("backend", "backend"),
        ("seed", "seed"),
        ("device", "device"),
    )
    for flag, key in flags:
        value = getattr(args, flag)
        if value is not None:
            sets[key] = str(value)
    if args.compile:
        sets["compile"] = "true"
    if args.demos:
        if args.algo not in ("bc", "sac", "dagger"):
            raise UsageError(
                "--demos is for --algo bc (cloning), --algo sac (RL from demonstrations) and --algo dagger "
                "(labelled states to start from)"
            )
        sets["demos"] = args.demos
    if args.curriculum:
        if args.algo != "sac" or not args.demos:
            raise UsageError(
                "--curriculum is for --algo sac with --demos: its starts are states along the demonstrations"
            )
        sets["curriculum"] = "true"
    if args.difficulty_curriculum:
        sets["difficulty_curriculum"] = "true"
    try:
        cfg = make_config(args.algo, args.env, sets)
        if args.show_config:
            print(json.dumps(to_dict(cfg), indent=2))
            return 0
        if not args.resume:
            _check_env_kwargs(cfg.env_id, cfg.env_kwargs)
        result = train(cfg, args.out, resume=args.resume)
    except (ConfigError, TrainError, CheckpointError, DemosError, UnsupportedSpaceError) as exc:
        raise UsageError(str(exc)) from None
    except RuntimeError as exc:
        if "--device" in str(exc):
            raise UsageError(str(exc)) from None
        raise
    if result.get("stopped"):
        signame = result["stopped"]
        err.print(
            f"stopped by {signame} at step {result['step']:,}; the checkpoint in {args.out}/checkpoints is "
            f"complete: continue with `twin train --env {result['env_id']} --algo {result['algo']} "
            f"--out {args.out} --resume`",
            highlight=False,
        )
        return 143 if signame == "SIGTERM" else 130
    out.print(
        f"{result['algo']} on {result['env_id']}: {result['step']:,} steps on {result['device']}", highlight=False
    )
    table = Table()
    table.add_column("metric")
    table.add_column("unit")
    table.add_column("value", justify="right")
    for k, v in result.items():
        if k not in ("episodes", "env_id", "algo", "device", "best") and not (k == "progress_eval_seconds" and not v):
            name, unit = _metric(k)
            table.add_row(name, unit, _fmt(v))
    out.print(table)
    best = result.get("best")
    if best and best["step"] != result["step"]:
        out.print(
            f"evaluated: the best policy of the evaluations during training, from step {best['step']:,} "
            f"(success {best.get('progress_success_rate', float('nan')):.2f} on the held-out seeds), kept in "
            f"checkpoints/best; the final weights are checkpoints/latest",
            highlight=False,
        )
    out.print(f"run folder: {args.out} (eval.json, metrics.jsonl, learning_curve.png, checkpoints/)")
    return 0


def cmd_demos(args: argparse.Namespace) -> int:
    _require_command("demos")
    from agents.collect.demos import record

    env_id = _env_id(args.env_id, expert=True)
    if args.episodes < 1:
        raise UsageError("--episodes must be at least 1")
    _out_file("--out", args.out)
    if args.noise < 0:
        raise UsageError("--noise must be >= 0")
    kwargs = {}
    if args.env_kwargs:
        try:
            kwargs = json.loads(args.env_kwargs)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--env-kwargs is not JSON: {exc}") from None
    with _progress() as prog:
        task = prog.add_task(f"demos {env_id}", total=args.episodes, rate="")
        done = _episode_ticker(prog, task)
        info = record(env_id, args.episodes, args.out, args.seed, args.workers, args.noise, kwargs, on_episode=done)
    out.print(
        f"{info['episodes']} episodes, {info['steps']:,} steps, expert success {info['expert_success_rate']:.3f} "
        f"-> {info['out']}"
    )
    if info["expert_success_rate"] < LOW_EXPERT_SUCCESS:
        hint = f"; lower --noise (now {args.noise:g})" if args.noise > 0 else ""
        err.print(
            f"[yellow]twin: the expert succeeded in {info['expert_success_rate']:.0%} of these episodes: a policy "
            f"cloned or learned from them learns its failures{hint}[/yellow]",
            highlight=False,
        )
    return 0


LOW_EXPERT_SUCCESS = 0.8
"""Below this expert success rate, ``twin demos`` warns that the demonstrations teach failures."""


def cmd_export(args: argparse.Namespace) -> int:
    _require_command("export")
    _in_path("RUN", args.run, "run or checkpoint folder")
    _out_file("--onnx", args.onnx)
    from agents.common.checkpoint import CheckpointError
    from agents.train import export_onnx

    try:
        info = export_onnx(args.run, args.onnx)
    except CheckpointError as exc:
        raise UsageError(str(exc)) from None
    except RuntimeError as exc:  # the parity check failed: nothing was written
        err.print(f"twin: export failed: {exc}; {args.onnx} was not written", markup=False, soft_wrap=True)
        return 1
    out.print(
        f"wrote {info['onnx']}: input obs \\[batch, {info['obs_dim']}] -> action \\[batch, {info['act_dim']}]; "
        f"max |onnx - torch| = {info['max_abs_diff']:.2e} on random observations; the policy of step {info['step']:,}"
        + (" (the run's kept best)" if info["best"] else "")
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from agents.common.signals import StopRequest
    from agents.evaluation.api import EvalError, EvalInterrupted, evaluate

    _require_command("eval")
    if args.policy.lower().endswith(".onnx"):
        _require("twin eval of an ONNX policy", "eval", ["onnxruntime"])
    if args.backend == "ray":
        _require("twin eval --backend ray", "ray", ["ray"])
    if args.policy not in ("expert", "expert-observed", "random"):
        _in_path("--policy", args.policy, "policy file or folder")
    _suite_exists(args.suite)
    if args.reference:
        _in_path("--reference", args.reference, "reference file or folder")
    _out_dir("--out", args.out)
    if args.telemetry:
        _telemetry_dir(args.telemetry, args.telemetry_rate)
        held = (
            [p.name for p in Path(args.telemetry).iterdir() if p.name != ".parts"]
            if Path(args.telemetry).is_dir()
            else []
        )
        if held and not args.resume:
            raise UsageError(f"--telemetry {args.telemetry}: already holds {held[0]}; name a new folder")
    elif args.telemetry_rate is not None:
        raise UsageError("--telemetry-rate needs --telemetry DIR")
    with _progress() as prog:
        bar: dict = {}

        def start(total: int, kept: int) -> None:
            if kept:
                err.print(f"resuming: {kept} of {total} episodes already in {args.out}/episodes.jsonl", highlight=False)
            bar["task"] = prog.add_task(
                escape(f"eval {args.suite} [{args.policy}]"), total=total, completed=kept, rate=""
            )
            bar["tick"] = _episode_ticker(prog, bar["task"], per_minute=True)

        def notify(line: str) -> None:
            err.print(f"twin: {line}", markup=False, highlight=False, soft_wrap=True)

        stop = StopRequest(immediate=True)
        try:
            with stop:
                ev = evaluate(
                    args.policy,
                    args.suite,
                    args.out,
                    workers=args.workers,
                    backend=args.backend,
                    videos=args.videos,
                    tasks=args.task,
                    variants=args.variant,
                    resume=args.resume,
                    overwrite=args.overwrite,
                    episode_seconds=args.episode_seconds,
                    call_seconds=args.call_seconds,
                    memory_mb=args.memory_mb,
                    reference=args.reference,
                    on_start=start,
                    on_episode=lambda _row: bar["tick"](),
                    notify=notify,
                    telemetry=args.telemetry,
                    telemetry_rate=args.telemetry_rate,
                )
        except EvalError as exc:
            raise UsageError(str(exc)) from None
        except EvalInterrupted as exc:
            prog.stop()
            err.print(str(exc), highlight=False)
            return stop.exit_code
    rate = ev.meta["episodes_per_minute"]
    rate = f", {rate:.1f} episodes/min" if rate else ""
    out.print(
        _scorecard_table(
            f"{ev.suite}: {ev.policy.kind} policy, {ev.episodes} episodes{rate}", ev.aggregates, ev.reference
        )
    )
    out.print(f"wrote {ev.out}/results.json, results.parquet and report.html", highlight=False)
    if ev.meta.get("telemetry"):
        made = [g for g in ev.meta["telemetry"] if g["folder"]]
        out.print(
            f"telemetry of {sum(g['episodes'] for g in made)} episodes in {len(made)} folders under {args.telemetry}",
            highlight=False,
        )
    if ev.errors:
        err.print(
            f"twin: {ev.errors} of {ev.episodes} episode(s) could not run to their end (policy faults, limits, dead "
            f"workers); their reasons are in the failure column and the report",
            highlight=False,
        )
        return 1
    return 0


def _pc(v: float) -> str:
    """A percentage to one decimal, without a trailing .0 (97, 97.5)."""
    return f"{v:.1f}".removesuffix(".0")


def _scorecard_table(title: str, aggs: list[dict], reference: dict | None) -> Table:
    """The terminal scorecard: success per task and variant, its interval and the robustness
    ratio (percent and ratios, units in the headers), with the expert's success where known."""
    from agents.evaluation.scorecard import ROBUSTNESS_VARIANTS, headline

    heads = {h["task"]: h for h in headline(aggs)}
    refs = {(a["task"], a["variant"]): a for a in reference["aggregates"]} if reference else {}
    cols = ["task", "variant", "success % [95% CI]", "x nominal"]
    cols += ["expert %"] if reference else []
    cols += ["failed"]
    caption = "success: % of episodes; x nominal: success over the nominal cell's; failed: episodes"
    table = Table(title=title, caption=caption)
    for col in cols:
        table.add_column(
            col,
            justify="left" if col in ("task", "variant") else "right",
            no_wrap=col in ("task", "variant"),
            # headers wrap between words, never inside one; the success cell stays on one line
            min_width=14 if col.startswith("success") else max(len(w) for w in col.split()),
        )
    for a in aggs:
        ratio = heads[a["task"]]["robustness"].get(a["variant"]) if a["variant"] in ROBUSTNESS_VARIANTS else None
        ref = refs.get((a["task"], a["variant"]))
        pct = [_pc(100 * a[k]) for k in ("success_mean", "success_ci95_low", "success_ci95_high")]
        row = [
            a["task"].removesuffix("-v0"),
            a["variant"],
            f"{pct[0]} [{pct[1]}-{pct[2]}]",
            "-" if ratio is None else f"{ratio:.2f}",
        ]
        if reference:
            row.append("-" if ref is None else _pc(100 * ref["success_mean"]))
        errors = f", {a['errors']} not run" if a["errors"] else ""
        row.append(f"{a['episodes'] - a['successes']}/{a['episodes']}{errors}")
        table.add_row(*row)
    return table


def cmd_report(args: argparse.Namespace) -> int:
    """Write an output folder's report.html again from its results (with the current report code
    and, if given, another expert reference)."""
    _require_command("report")
    _in_path("FOLDER", args.folder, "twin eval folder")
    if args.reference:
        _in_path("--reference", args.reference, "reference file or folder")
    from pathlib import Path

    from agents.evaluation.report import load_results, write_report
    from agents.evaluation.scorecard import load_reference
    from agents.evaluation.store import list_videos

    folder = Path(args.folder)
    try:
        doc = load_results(folder)
        meta = doc["scorecard"]
        is_expert = (meta.get("policy") or {}).get("kind") == "expert"
        reference = None if is_expert and not args.reference else load_reference(meta, args.reference)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    path = write_report(folder, meta, doc["aggregates"], doc["episodes"], list_videos(folder), reference)
    out.print(
        _scorecard_table(
            f"{meta['suite']}: {(meta.get('policy') or {}).get('kind')} policy", doc["aggregates"], reference
        )
    )
    out.print(f"wrote {path}", highlight=False)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    if args.plot:
        _require("twin compare --plot", "eval", ["matplotlib"])
        _out_file("--plot", args.plot)
    _in_path("A", args.a, "twin eval folder")
    _in_path("B", args.b, "twin eval folder")
    from pathlib import Path

    from agents.evaluation.report import compare

    try:
        rows, notes = compare(args.a, args.b, Path(args.plot) if args.plot else None)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    caption = "success: % of episodes [95% interval]; overlap: yes means the difference is not significant"
    table = Table(title=f"A = {args.a}   B = {args.b}", caption=caption)
    for col in ("task", "variant", "success A %", "success B %", "better", "overlap"):
        table.add_column(
            col,
            justify="left" if col in ("task", "variant") else "right",
            no_wrap=col in ("task", "variant"),
            min_width=14 if col.startswith("success") else None,
        )
    for r in rows:
        a = [_pc(100 * v) for v in (r["success_a"], *r["ci_a"])]
        b = [_pc(100 * v) for v in (r["success_b"], *r["ci_b"])]
        table.add_row(
            r["task"].removesuffix("-v0"),
            r["variant"],
            f"{a[0]} [{a[1]}-{a[2]}]",
            f"{b[0]} [{b[1]}-{b[2]}]",
            r["better"],
            "yes" if r["intervals_overlap"] else "no",
        )
    out.print(table)
    for note in notes:
        err.print(f"note: {note}")
    if args.plot:
        out.print(f"plot written to {args.plot}")
    return 0


# -- parser -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="twin", description="Factory Twin: digital twins of factory cells for physical AI.")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("envs", help="list the environments")
    p.set_defaults(fn=cmd_envs)

    p = sub.add_parser("smoke", help="run every env and observation mode (and every env with each arm) for a few steps")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--seed", type=_seed, default=0)
    p.set_defaults(fn=cmd_smoke)

    p = sub.add_parser("play", help="run episodes with the expert or a random policy; print KPIs, write a video")
    p.add_argument("env_id")
    p.add_argument("--policy", choices=["expert", "random"], default="expert")
    p.add_argument("--episodes", type=int, default=1)
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--video", metavar="FILE", help="write a .mp4 or .gif of the episodes")
    p.add_argument("--robot", metavar="MODEL", help="arm in place of the layout's: panda or iiwa")
    p.add_argument(
        "--faults", metavar="FAMILIES", help="'all', 'none' or comma-separated fault families (e.g. conveyor_jam)"
    )
    p.add_argument("--randomize", action="store_true", help="apply the layout's (or the standard) randomisation")
    p.add_argument("--video-size", default="480x360", metavar="WxH", help="video frame size in pixels (480x360)")
    p.add_argument(
        "--frame-stride", type=int, default=2, metavar="K", help="render every K-th control step into the video (2)"
    )
    p.add_argument("--json", action="store_true", help="also print the summary as one JSON line")
    p.add_argument("-v", "--verbose", action="store_true", help="print a line per episode")
    _play_inputs(p)
    p.add_argument(
        "--telemetry", metavar="DIR", help="record the run's signals and events into DIR (Parquet, OCEL 2.0)"
    )
    p.set_defaults(fn=cmd_play)

    p = sub.add_parser(
        "record", help="run episodes and record their telemetry: signals and events as Parquet, and OCEL 2.0"
    )
    p.add_argument("env_id")
    p.add_argument("--out", required=True, metavar="DIR", help="the telemetry folder to write (a new one)")
    p.add_argument("--policy", choices=["expert", "random"], default="expert")
    p.add_argument("--episodes", type=int, default=1)
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--robot", metavar="MODEL", help="arm in place of the layout's: panda or iiwa")
    p.add_argument(
        "--faults", metavar="FAMILIES", help="'all', 'none' or comma-separated fault families (e.g. conveyor_jam)"
    )
    p.add_argument("--randomize", action="store_true", help="apply the layout's (or the standard) randomisation")
    p.add_argument("--json", action="store_true", help="also print the summary as one JSON line")
    p.add_argument("-v", "--verbose", action="store_true", help="print a line per episode")
    _play_inputs(p)
    p.set_defaults(fn=cmd_record, video=None, video_size="480x360", frame_stride=1)

    p = sub.add_parser(
        "fidelity", help="how close a twin run is to a plant log (or another run): fidelity.json and an HTML report"
    )
    p.add_argument("plant", metavar="PLANT_LOG", help="a telemetry folder: the plant's log (or a twin run)")
    p.add_argument("twin", metavar="TWIN_LOG", help="a telemetry folder: the twin run held against it")
    p.add_argument("--out", required=True, metavar="DIR", help="where fidelity.json and report.html go")
    p.add_argument("--seed", type=_seed, default=0, help="the bootstrap's seed")
    p.set_defaults(fn=cmd_fidelity)

    p = sub.add_parser(
        "replay", help="drive the twin with a plant log (arrivals, cycles, breakdowns, belts); the robots act"
    )
    p.add_argument(
        "log",
        metavar="LOG",
        help="the plant's log: a telemetry folder (events.parquet at least), an OCEL 2.0 JSON log or an XES log",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="the replay's own telemetry folder (a new one)")
    p.add_argument("--env", help="the task (default: the one the log names)")
    p.add_argument("--policy", choices=["expert", "random"], default="expert")
    p.add_argument("--layout", metavar="FILE", help="the cell's layout (default: the one the log names)")
    p.add_argument("--telemetry-rate", type=float, metavar="HZ", help="the replay's telemetry samples per second")
    p.set_defaults(fn=cmd_replay)

    p = sub.add_parser("calibrate", help="fit a layout's parameters to a plant log; fidelity before and after")
    p.add_argument("plant", metavar="PLANT_LOG", help="a telemetry folder: the plant's log")
    p.add_argument("--layout", required=True, help="the layout to calibrate (a file or a bundled layout's name)")
    p.add_argument(
        "--fit",
        required=True,
        metavar="PARAMS",
        help="comma-separated; from the log: machines.<i>.process_time, feeders.<i>.interval, "
        "feeders.<i>.first_arrival, conveyors.<i>.speed, faults.machine_breakdown.mtbf|mttr, "
        "faults.conveyor_jam.rate|duration; by search over twin runs (with --range): "
        "robots.<i>.speed_override, agvs.<i>.max_speed, conveyors.<i>.friction",
    )
    p.add_argument(
        "--range",
        action="append",
        metavar="NAME=LO:HI",
        help="the range a searched parameter is fitted in (within the layout's bounds); once per parameter",
    )
    p.add_argument(
        "--search-episodes", type=int, help="episodes of each search candidate (default: 4, at most --episodes)"
    )
    p.add_argument("--rounds", type=int, default=3, help="search rounds, each refining the last (default 3)")
    p.add_argument("--points", type=int, default=5, help="search grid points per parameter per round (default 5)")
    p.add_argument("--workers", type=int, help="search candidates run at once (default 2)")
    p.add_argument("--backend", choices=["local", "ray"], default="local", help="local processes or Ray tasks")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--env", help="the task whose expert runs the twin (default: the one the log names)")
    p.add_argument("--episodes", type=int, default=0, help="twin episodes before and after (default: the plant's)")
    p.add_argument(
        "--seed", type=_seed, default=1000, help="the twin's first seed (not the plant's) and the bootstrap's"
    )
    p.set_defaults(fn=cmd_calibrate)

    p = sub.add_parser("layout", help="check a layout file or print the layout JSON Schema")
    lsub = p.add_subparsers(dest="layout_command", required=True, metavar="ACTION")
    q = lsub.add_parser("check", help="validate a layout file (exit 2 naming the field if invalid)")
    q.add_argument("file")
    q.set_defaults(fn=cmd_layout_check)
    q = lsub.add_parser("schema", help="print the layout JSON Schema")
    q.set_defaults(fn=cmd_layout_schema)

    p = sub.add_parser("bench", help="speed figures, one 'name value unit' line each")
    p.add_argument("--env", help="one env id (default: all)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--procs", type=int, default=None, help="largest vector-env process count (default: CPU count)")
    p.add_argument("--envs-per-worker", type=int, default=4, help="envs each pool worker steps in turn")
    p.add_argument("--episodes", type=int, default=1, help="whole episodes per env for the vector-env figures")
    p.add_argument(
        "--procs-only", action="store_true", help="vector-env figures at --procs processes only (not 1, 2, 4, ...)"
    )
    p.set_defaults(fn=cmd_bench)

    p = sub.add_parser("train", help="train an agent (ppo, sac with HER, bc, dagger) and evaluate it on fixed seeds")
    p.add_argument("--env", required=True, help="env id (any registered Gymnasium id)")
    p.add_argument("--algo", choices=["ppo", "sac", "bc", "dagger"], required=True)
    p.add_argument("--steps", type=int, help="env steps (bc: gradient steps); default per task")
    p.add_argument("--envs", type=int, help="parallel envs; default per task")
    p.add_argument("--workers", type=int, help="env worker processes (default: one per core, at most one per env)")
    p.add_argument("--backend", choices=["local", "ray"], help="local worker processes (default) or Ray actors")
    p.add_argument("--seed", type=_seed)
    p.add_argument("--device", help="auto (default), cpu or cuda")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument(
        "--demos",
        help="demonstrations (from `twin demos`): --algo bc clones them, --algo sac learns from them (RLPD), "
        "--algo dagger starts from them",
    )
    p.add_argument(
        "--curriculum",
        action="store_true",
        help="with --algo sac --demos: a reverse curriculum, episodes starting along the demos and moving back",
    )
    p.add_argument(
        "--difficulty-curriculum",
        action="store_true",
        help="train on the task's easier knob settings first (ConveyorPick: 1 part on a slow belt, 1, 2), then the task",
    )
    p.add_argument("--compile", action="store_true", help="compile the update with torch.compile (falls back to eager)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="any config field; repeatable")
    p.add_argument("--show-config", action="store_true", help="print the resolved config as JSON and exit")
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser("demos", help="record scripted-expert demonstrations (safetensors)")
    p.add_argument("env_id")
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--out", required=True, help="output .safetensors file")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--workers", type=int, default=1, help="env processes")
    p.add_argument("--noise", type=float, default=0.0, help="std of Gaussian noise on executed actions (DART)")
    p.add_argument("--env-kwargs", help='JSON keyword arguments for gym.make, e.g. \'{"robot": "iiwa"}\'')
    p.set_defaults(fn=cmd_demos)

    p = sub.add_parser("export", help="export a trained policy to ONNX (checked against torch)")
    p.add_argument("run", help="run folder or checkpoint folder")
    p.add_argument("--onnx", required=True, metavar="FILE")
    p.set_defaults(fn=cmd_export)

    p = sub.add_parser("eval", help="evaluate a policy on a seed suite: results, scorecard, HTML report")
    p.add_argument(
        "--policy",
        required=True,
        help="expert, expert-observed (the expert deciding from the observation: BinSort's sorts by the sensor), "
        "random, a checkpoint folder, or FILE.onnx",
    )
    bundled = sorted(f.stem for f in (Path(__file__).resolve().parents[1] / "seeds").glob("*.toml"))
    p.add_argument("--suite", required=True, help=f"suite file, or a bundled one: {', '.join(bundled)}")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--workers", type=int, default=1, help="parallel episodes")
    p.add_argument("--backend", choices=["local", "ray"], default="local")
    p.add_argument("--videos", type=int, default=1, help="episode videos per task in the report")
    p.add_argument("--resume", action="store_true", help="finish the evaluation in --out (only its missing episodes)")
    p.add_argument("--overwrite", action="store_true", help="replace the results already in --out")
    p.add_argument(
        "--episode-seconds", type=float, help="wall-clock limit per episode (default: the suite's, else 300)"
    )
    p.add_argument("--call-seconds", type=float, help="wall-clock limit per policy call (default: the suite's, else 2)")
    p.add_argument("--memory-mb", type=int, help="memory an eval worker may add, MB (default: the suite's, else 4096)")
    p.add_argument(
        "--reference",
        metavar="DIR",
        help="an expert's twin eval folder to show beside the policy (default: the bundled one for the suite)",
    )
    p.add_argument("--task", action="append", metavar="ENV_ID", help="run only this task of the suite (repeatable)")
    p.add_argument("--variant", action="append", metavar="NAME", help="run only this variant of the tasks (repeatable)")
    p.add_argument(
        "--telemetry",
        metavar="DIR",
        help="record every episode's signals and events: one telemetry folder per task and variant in DIR",
    )
    p.add_argument(
        "--telemetry-rate",
        type=float,
        metavar="HZ",
        help="telemetry samples per simulated second (default: every step)",
    )
    p.set_defaults(fn=cmd_eval)

    p = sub.add_parser("report", help="write a twin eval folder's report.html again (e.g. with another reference)")
    p.add_argument("folder")
    p.add_argument(
        "--reference", metavar="DIR", help="an expert's twin eval folder (or reference JSON) to show beside it"
    )
    p.set_defaults(fn=cmd_report)

    p = sub.add_parser("compare", help="compare two twin eval results, task by task")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--plot", metavar="FILE.png", help="write a side-by-side success plot")
    p.set_defaults(fn=cmd_compare)
    return ap


def run(argv: list[str] | None = None) -> int:
    from agents.extras import from_import_error

    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except UsageError as exc:
        err.print(f"twin: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return 2
    except ModuleNotFoundError as exc:  # an optional dependency a command reached for: name the extra
        missing = from_import_error(f"twin {args.command}", exc)
        if missing is None:
            raise
        err.print(f"twin: error: {missing}", markup=False, highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    sys.exit(run(argv))


if __name__ == "__main__":
    main()
