"""``twin train``, ``demos`` and ``export``: agents learning the tasks."""

from __future__ import annotations

import argparse
import json

from rich.table import Table

from agents.cli.common import (
    UsageError,
    _check_env_kwargs,
    _env_id,
    _episode_ticker,
    _fmt,
    _in_path,
    _metric,
    _observation,
    _out_dir,
    _out_file,
    _parse_sets,
    _progress,
    _require,
    _require_command,
    err,
    out,
)


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
    view = _observation(args)
    try:
        cfg = make_config(args.algo, args.env, sets)
        if view is not None:
            sets["env_kwargs"] = json.dumps({**cfg.env_kwargs, **view})
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
