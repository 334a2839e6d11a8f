"""The evaluation as a library: ``evaluate(policy, suite, out)`` does what ``twin eval`` does.

It checks the suite and the policy together, merges the limits, opens (or resumes) the output
folder, runs every missing episode under the limits, keeps each row and video as it ends, and
writes ``results.json``, ``results.parquet`` and ``report.html``. The command line only parses
arguments and prints; a service calls this function directly.

Bad input raises :class:`EvalError` (a ``ValueError``) naming the argument, before any episode
runs. A ``KeyboardInterrupt`` (Ctrl-C, or SIGTERM through :class:`agents.common.signals.StopRequest`)
raises :class:`EvalInterrupted`, with the finished episodes kept for ``resume=True``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.evaluation.report import aggregate, clean, encode_video, scorecard_meta, write_report, write_results
from agents.evaluation.runner import VIDEO_STRIDE, PolicyError, PolicySpec, check_policy, policy_spec, run_suite
from agents.evaluation.scorecard import load_reference
from agents.evaluation.store import ResultsError, ResultsFolder
from agents.evaluation.suite import LoadedSuite, SuiteError, load_suite
from agents.evaluation.workers import Limits

LIMIT_FLAGS = {"episode_seconds": "--episode-seconds", "call_seconds": "--call-seconds", "memory_mb": "--memory-mb"}


class EvalError(ValueError):
    """Bad input to an evaluation: the suite, the policy, a limit, the reference or the output folder."""


class EvalInterrupted(Exception):
    """The evaluation was stopped (Ctrl-C, SIGTERM); ``kept`` of ``total`` episodes are on disk."""

    def __init__(self, out: Path, kept: int, total: int) -> None:
        self.out, self.kept, self.total = out, kept, total
        super().__init__(
            f"interrupted: {kept} of {total} episodes are kept in {out}/episodes.jsonl; finish them with the same "
            f"command and --resume"
        )


@dataclass
class Evaluation:
    """What an evaluation wrote: its folder, provenance, aggregates and rows."""

    out: Path
    suite: str
    policy: PolicySpec
    meta: dict[str, Any]
    aggregates: list[dict[str, Any]]
    rows: list[dict[str, Any]]
    reference: dict[str, Any] | None
    resumed: int = 0
    """Episodes that were already in the folder (``resume``)."""
    seconds: float = 0.0
    files: list[str] = field(default_factory=lambda: ["results.json", "results.parquet", "report.html"])

    @property
    def episodes(self) -> int:
        return len(self.rows)

    @property
    def errors(self) -> int:
        """Episodes that could not run to their end (policy faults, limits, dead workers)."""
        return sum(1 for r in self.rows if r.get("error"))


def merge_limits(suite: LoadedSuite, **overrides: float | int | None) -> Limits:
    """The suite's ``[limits]`` with the given ones (``None``: the suite's) put over them."""
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(given) - set(LIMIT_FLAGS)
    if unknown:
        raise EvalError(f"unknown limits {sorted(unknown)}; limits are {', '.join(LIMIT_FLAGS)}")
    try:
        return type(suite.suite.limits).model_validate({**suite.suite.limits.model_dump(), **given})
    except Exception as exc:  # pydantic's ValidationError: said with the flag
        errors = getattr(exc, "errors", None)
        if errors is None:
            raise
        first = errors(include_url=False)[0]
        name = str(first["loc"][0])
        raise EvalError(f"{LIMIT_FLAGS.get(name, name)}: {first['msg']}") from None


OBSERVATION_KWARGS = ("obs_mode", "cameras", "image_size", "frames", "robot_meshes")
"""The env kwargs that say how a policy observes the cell (not the cell itself)."""


def checkpoint_observation(path: str | Path) -> dict[str, Any] | None:
    """The observation kwargs a checkpoint was trained with, where it saw anything but the state."""
    from agents.common import checkpoint as ckpt

    try:
        doc = ckpt.read_sidecar(ckpt.resolve_policy(path))
    except ckpt.CheckpointError as exc:
        raise PolicyError(str(exc)) from None
    kwargs = doc.get("config", {}).get("env_kwargs") or {}
    seen = {k: kwargs[k] for k in OBSERVATION_KWARGS if k in kwargs}
    return seen if seen.get("obs_mode", "state") != "state" else None


def evaluate(
    policy: str | PolicySpec,
    suite: str | Path | LoadedSuite,
    out: str | Path,
    *,
    workers: int = 1,
    backend: str = "local",
    videos: int = 1,
    tasks: list[str] | None = None,
    variants: list[str] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    episode_seconds: float | None = None,
    call_seconds: float | None = None,
    memory_mb: int | None = None,
    reference: str | Path | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_episode: Callable[[dict[str, Any]], None] | None = None,
    notify: Callable[[str], None] | None = None,
    telemetry: str | Path | None = None,
    telemetry_rate: float | None = None,
    observation: dict[str, Any] | None = None,
) -> Evaluation:
    """Evaluate ``policy`` on every episode of ``suite``, writing results and the report into ``out``.

    Args:
        policy: ``expert``, ``random``, a checkpoint or run folder, or an ONNX file (or a checked spec).
        suite: A suite file, a bundled suite's name, or a loaded suite.
        out: The output folder (refused if it holds results, unless ``resume`` or ``overwrite``).
        workers: Episodes run at once (worker processes, or Ray tasks with ``backend="ray"``).
        backend: ``local`` or ``ray``.
        videos: Episode videos per task in the report.
        tasks: Run only these tasks of the suite.
        variants: Run only these variants (of the tasks that have them).
        resume: Finish the evaluation already in ``out`` (only its missing episodes).
        overwrite: Replace the results already in ``out``.
        episode_seconds, call_seconds, memory_mb: Limits over the suite's ``[limits]``.
        reference: An expert's ``twin eval`` folder or reference JSON to show beside the policy
            (default: the bundled reference of the suite, where its hash matches).
        on_start: Called once with (episodes in all, episodes already kept) before the first runs.
        on_episode: Called with each finished episode's row, after it is on disk.
        notify: Called with a line for each event worth telling (a worker restarted, ...).
        telemetry: A folder to record every episode's signals and events into: one telemetry
            folder per task and variant (``<task>/<variant>/``, as ``twin record`` writes one),
            each episode recorded by the worker that ran it (``twin.telemetry.parts``).
        telemetry_rate: Samples per simulated second (default: every control step).
        observation: Env kwargs of the observation to play every variant with (``{"obs_mode":
            "rgb"}``, with ``cameras`` and ``image_size``): how an image policy sees the suite.
            Default: a checkpoint's own (those it was trained with), else each variant's.

    Returns:
        The :class:`Evaluation`; ``errors`` counts the episodes that could not run to their end.

    Raises:
        EvalError: bad input, before any episode runs.
        EvalInterrupted: on ``KeyboardInterrupt``; the finished episodes are kept.
    """
    if workers < 1:
        raise EvalError("--workers must be at least 1")
    if videos < 0:
        raise EvalError("--videos must be >= 0")
    if resume and overwrite:
        raise EvalError("--resume and --overwrite exclude each other")
    if backend not in ("local", "ray"):
        raise EvalError(f"--backend must be local or ray, got {backend!r}")
    try:
        loaded = suite if isinstance(suite, LoadedSuite) else load_suite(suite)
        if tasks or variants:
            loaded = loaded.only(tasks, variants)
        spec = policy if isinstance(policy, PolicySpec) else policy_spec(policy)
        if observation is None and spec.kind == "checkpoint":
            observation = checkpoint_observation(spec.path)
        if observation:
            loaded = loaded.with_observation(observation)
        limits = merge_limits(loaded, episode_seconds=episode_seconds, call_seconds=call_seconds, memory_mb=memory_mb)
        check_policy(spec, loaded)  # every variant's env built once; shapes against every task's spaces
    except (SuiteError, PolicyError) as exc:
        raise EvalError(str(exc)) from None
    if telemetry is not None:
        import envs

        other = sorted({t.env_id for t in loaded.suite.tasks if t.env_id not in envs.TASKS})
        if other:
            raise EvalError(f"--telemetry records Factory Twin cells; {', '.join(other)} has no twin to record")
        if telemetry_rate is not None and not telemetry_rate > 0:
            raise EvalError(f"--telemetry-rate {telemetry_rate:g}: expected a rate in Hz above 0")
    meta = scorecard_meta(loaded, spec, backend, workers)
    meta["observation"] = observation or "state (as the suite's variants set it)"
    if loaded.tasks_run is not None:
        meta["tasks_run"] = loaded.tasks_run
    if loaded.variants_run is not None:
        meta["variants_run"] = loaded.variants_run
    try:
        ref = None if spec.kind == "expert" and not reference else load_reference(meta, reference)
    except ValueError as exc:
        raise EvalError(f"--reference: {exc}") from None
    identity = {k: meta[k] for k in ("suite", "suite_hash", "layout_hashes", "policy", "observation")}
    identity |= {"limits": limits.model_dump(), "videos": videos}
    for part in ("tasks_run", "variants_run"):  # resuming a part of a suite is resuming that part
        if meta.get(part) is not None:
            identity[part] = meta[part]
    try:
        folder = ResultsFolder(out, identity, resume=resume, overwrite=overwrite)
    except ResultsError as exc:
        raise EvalError(str(exc)) from None
    out_dir = Path(out)
    episodes = loaded.episodes()
    n = len(episodes)
    fps = 20 // VIDEO_STRIDE
    with folder:
        kept = len(folder.done)
        if on_start is not None:
            on_start(n, kept)
        t0 = time.perf_counter()

        def done(res: dict[str, Any]) -> None:
            row = res["row"]
            folder.add(row)
            if res["frames"]:
                data, suffix = encode_video(res["frames"], fps)
                folder.add_video((row["task"], row["variant"], row["seed"]), data, suffix)
            if on_episode is not None:
                on_episode(row)

        recording = None
        if telemetry is not None:
            from datetime import UTC, datetime

            recording = {
                "dir": str(Path(telemetry).resolve()),
                "rate": telemetry_rate,
                "start": datetime.now(UTC).replace(microsecond=0).isoformat(),
            }
        try:
            run_suite(
                spec,
                loaded,
                workers,
                backend,
                videos,
                on_episode=done,
                limits=limits,
                skip=set(folder.done),
                notify=notify,
                telemetry=recording,
            )
        except KeyboardInterrupt:
            raise EvalInterrupted(out_dir, len(folder.done), n) from None
        except PolicyError as exc:
            raise EvalError(str(exc)) from None
        elapsed = time.perf_counter() - t0
        if recording is not None:
            meta["telemetry"] = _assemble_telemetry(telemetry, loaded, episodes, spec, notify)
        rows = clean([folder.done[ep] for ep in episodes])
        aggs = aggregate(rows)
        meta["limits"] = limits.model_dump()
        meta["episodes_per_minute"] = round(60 * (n - kept) / elapsed, 2) if n > kept else None
        if kept:
            meta["resumed_with_episodes"] = kept
        write_results(out_dir, rows, aggs, meta)
        write_report(out_dir, meta, aggs, rows, folder.videos(), ref)
    return Evaluation(out_dir, loaded.suite.name, spec, meta, aggs, rows, ref, kept, elapsed)


def _assemble_telemetry(root, loaded: LoadedSuite, episodes, spec: PolicySpec, notify) -> list[dict]:
    """Each task and variant's episode parts joined into one telemetry folder under ``root``."""
    from twin.telemetry.parts import assemble

    groups: dict[tuple[str, str], list[int]] = {}
    for env_id, variant, seed in episodes:
        groups.setdefault((env_id, variant), []).append(seed)
    made = assemble(
        root,
        [(e, v, seeds, loaded.env_kwargs(e, v)) for (e, v), seeds in groups.items()],
        {"policy": str(spec), "suite": loaded.suite.name},
    )
    for g in made:
        if g["missing"] and notify is not None:
            notify(
                f"telemetry of {g['task']} [{g['variant']}]: {len(g['missing'])} episode(s) not recorded "
                f"(run before a resume without --telemetry, or their worker died): seeds {g['missing'][:5]}"
            )
    return made
