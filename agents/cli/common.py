"""What every ``twin`` command shares: the consoles, the bad-input error and the checks of
arguments, progress bars."""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

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


def _play_inputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--layout", metavar="FILE", help="a cell layout file in place of the task's bundled one")
    p.add_argument(
        "--telemetry-rate",
        type=float,
        metavar="HZ",
        help="telemetry samples per simulated second (default: every control step)",
    )


def _observation(args) -> dict | None:
    """The env kwargs of ``--obs`` and its settings (``--cameras``, ``--image-size``, ``--frames``),
    or None without ``--obs``; those settings without ``--obs rgb`` are refused."""
    if (args.cameras is not None or args.image_size is not None or args.frames is not None) and args.obs != "rgb":
        raise UsageError("--cameras, --image-size and --frames are settings of --obs rgb")
    if args.obs is None:
        return None
    view = {"obs_mode": args.obs}
    if args.cameras is not None:
        view["cameras"] = [c.strip() for c in args.cameras.split(",") if c.strip()]
    if args.image_size is not None:
        view["image_size"] = args.image_size
    if args.frames is not None:
        view["frames"] = args.frames
    return view


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
