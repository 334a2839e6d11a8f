"""``twin envs``, ``smoke``, ``play``, ``record``, ``layout`` and ``bench``: running the twin."""

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
    _fmt,
    _in_path,
    _layout_file,
    _metric,
    _out_file,
    _progress,
    _require_command,
    _telemetry_dir,
    _video_size,
    err,
    out,
)


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


def cmd_record(args: argparse.Namespace) -> int:
    _require_command("record")
    args.telemetry, args.telemetry_flag = args.out, "--out"
    return cmd_play(args)


def cmd_play(args: argparse.Namespace) -> int:
    from agents.tools.play import run_episodes, summarize

    if args.command == "play" and args.line:
        if args.env_id:
            raise UsageError(f"give an env id or --line, not both (got {args.env_id!r} and --line {args.line})")
        from agents.cli.line import cmd_play_line

        return cmd_play_line(args)
    if not args.env_id:
        raise UsageError("name the env to play (twin envs lists them), or a line with --line")
    if args.command == "play" and args.out:
        raise UsageError("--out is for --line runs; an episode's files go to --video and --telemetry")
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
