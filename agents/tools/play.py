"""Run episodes of an env with the expert or a random policy; collect KPIs and frames."""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import envs


@dataclass
class EpisodeResult:
    seed: int
    success: bool
    ret: float
    length: int
    kpis: dict[str, float] = field(default_factory=dict)


def make_policy(name: str, env, env_id: str):
    """``expert`` (the env's scripted expert) or ``random`` (uniform actions, seeded)."""
    if name == "expert":
        return envs.make_expert(env_id, env)
    if name == "random":
        return _RandomPolicy(env)
    raise ValueError(f"unknown policy {name!r}: expected 'expert' or 'random'")


class _RandomPolicy:
    def __init__(self, env) -> None:
        self.space = env.action_space

    def reset(self) -> None:
        pass

    def __call__(self, obs) -> np.ndarray:
        return self.space.sample()


def run_episodes(
    env_id: str,
    policy: str,
    episodes: int,
    seed: int,
    video: str | None = None,
    on_episode=None,
    env_kwargs: dict | None = None,
    on_step=None,
    frame_stride: int = 1,
    video_size: tuple[int, int] | None = None,
    telemetry: str | os.PathLike[str] | None = None,
    telemetry_rate: float | None = None,
    replay: list | None = None,
) -> list[EpisodeResult]:
    """Run ``episodes`` episodes with seeds ``seed, seed+1, ...``; optionally record a video.

    Frames go to the video file as they are rendered, so memory stays flat however many
    episodes are recorded; the file appears only once it is complete. ``frame_stride`` renders
    every k-th control step (the video plays at the control rate over k, in real time);
    ``video_size`` renders frames of that size (this package's envs). ``on_step(steps, limit)``
    is called after every step with the episode's steps so far and its step limit (or None).
    ``telemetry`` (a folder) records the twin's signals every ``1 / telemetry_rate`` seconds of
    simulated time (every control step by default) and its events, written there once the last
    episode ends (``twin.telemetry``). ``replay`` (``twin.telemetry.replay.plan``'s episodes, as
    many as ``episodes``) drives each episode's part arrivals, machine cycles, breakdowns and belts
    from a plant log, each episode seeded with the log's episode number.
    """
    if frame_stride < 1:
        raise ValueError(f"frame_stride must be at least 1, got {frame_stride}")
    kwargs = {**(env_kwargs or {}), **({"render_mode": "rgb_array"} if video else {})}  # some envs refuse None
    env = envs.make(env_id, **kwargs)
    limit = env.spec.max_episode_steps if env.spec is not None else None
    results = []
    try:
        if video and video_size is not None and hasattr(env.unwrapped, "set_render_size"):
            env.unwrapped.set_render_size(*video_size)
        fps = max(1, round(env.metadata["render_fps"] / frame_stride))
        with contextlib.ExitStack() as stack:
            writer = stack.enter_context(VideoWriter(video, fps=fps)) if video else None
            pi = make_policy(policy, env, env_id)
            recorder = _recorder(env, env_id, telemetry_rate) if telemetry is not None else None
            for k in range(episodes):
                s = seed + k if replay is None else replay[k].episode
                if replay is not None:
                    env.unwrapped.twin.replay = replay[k]
                obs, _ = env.reset(seed=s)
                if replay is not None and env.unwrapped.twin.replay is not replay[k]:
                    raise ValueError(f"{env_id} builds its twin again at each reset: it cannot be replayed yet")
                env.action_space.seed(s)  # the random policy samples from it
                pi.reset()
                if recorder:
                    recorder.begin(s, env.unwrapped.twin)  # an env may build a new twin at reset
                if writer:
                    writer.append(env.render())
                ret, n = 0.0, 0
                while True:
                    obs, r, term, trunc, info = env.step(pi(obs))
                    ret += r
                    n += 1
                    if recorder:
                        recorder.after_step()
                    if writer and (n % frame_stride == 0 or term or trunc):
                        writer.append(env.render())
                    if on_step:
                        on_step(n, limit)
                    if term or trunc:
                        break
                if recorder:
                    recorder.end()
                kpis = env.unwrapped.kpis() if hasattr(env.unwrapped, "kpis") else {}
                if "distance" in info:
                    kpis = {"final_distance": info["distance"]}
                res = EpisodeResult(s, bool(info.get("is_success", False)), ret, n, kpis)
                results.append(res)
                if on_episode:
                    on_episode(res)
            if recorder:
                _write_telemetry(recorder, telemetry, env, env_id, env_kwargs, policy, seed, episodes)
    finally:
        env.close()
    return results


def _recorder(env, env_id: str, rate_hz: float | None):
    from twin.telemetry import Recorder

    twin = getattr(env.unwrapped, "twin", None)
    if twin is None:
        raise ValueError(f"{env_id}: telemetry records a Factory Twin cell; this env has no twin to record")
    return Recorder(twin, rate_hz)


def _write_telemetry(recorder, out, env, env_id: str, env_kwargs, policy: str, seed: int, episodes: int) -> None:
    from twin.telemetry import write_recording

    signals, events = recorder.tables()  # ends the last episode
    meta = {
        "env_id": env_id,
        "env_kwargs": {k: str(v) for k, v in (env_kwargs or {}).items()},
        "layout": recorder.twin.layout_source,
        "policy": policy,
        "seeds": [e.episode for e in recorder.episodes],
        "start": recorder.start.isoformat(),
        "rate_hz": recorder.rate_hz,
        "control_hz": 1.0 / recorder.twin.control_dt,
        "signals_per_sample": len(recorder.table),
        "episodes": [
            {"episode": e.episode, "offset_s": e.offset_s, "duration_s": round(e.duration_s, 6)}
            for e in recorder.episodes
        ],
    }
    write_recording(out, signals, events, meta)


class VideoWriter:
    """Stream frames into an MP4 or GIF, written atomically.

    Frames go to a temporary file in the target folder; leaving the ``with`` block normally
    renames it into place with the usual file mode, and an error removes it, so a half-written
    video never replaces a good one. GIFs keep every second frame to stay small.
    """

    def __init__(self, path: str | os.PathLike[str], fps: int) -> None:
        self.path = Path(path)
        self.suffix = self.path.suffix.lower()
        if self.suffix not in (".mp4", ".gif"):
            raise ValueError(f"video file must end in .mp4 or .gif, got {self.path.name!r}")
        self.fps = fps
        self._n = 0

    def __enter__(self) -> VideoWriter:
        import imageio.v2 as imageio

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(suffix=self.suffix, dir=self.path.parent)
        os.close(fd)
        try:
            if self.suffix == ".mp4":
                self._w = imageio.get_writer(self._tmp, fps=self.fps, codec="libx264", quality=7, macro_block_size=8)
            else:
                self._w = imageio.get_writer(self._tmp, mode="I", duration=2000 / self.fps, loop=0)
        except BaseException:
            Path(self._tmp).unlink(missing_ok=True)
            raise
        return self

    def append(self, frame: np.ndarray) -> None:
        if self.suffix == ".mp4" or self._n % 2 == 0:
            self._w.append_data(frame)
        self._n += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        done = False
        try:
            self._w.close()
            if exc_type is None:
                mask = os.umask(0)
                os.umask(mask)
                os.chmod(self._tmp, 0o666 & ~mask)  # temporary files start private; give the video the usual mode
                os.replace(self._tmp, self.path)
                done = True
        finally:
            if not done:
                Path(self._tmp).unlink(missing_ok=True)


def summarize(results: list[EpisodeResult]) -> dict[str, float]:
    """Means over episodes (NaNs skipped) plus success rate and totals of parts."""
    out: dict[str, float] = {
        "episodes": len(results),
        "success_rate": float(np.mean([r.success for r in results])) if results else math.nan,
        "mean_return": float(np.mean([r.ret for r in results])) if results else math.nan,
        "mean_length": float(np.mean([r.length for r in results])) if results else math.nan,
    }
    keys = sorted({k for r in results for k in r.kpis})
    for k in keys:
        vals = np.array([r.kpis.get(k, math.nan) for r in results], dtype=float)
        out[k] = float(np.nanmean(vals)) if np.isfinite(vals).any() else math.nan
    if any("parts_arrived" in r.kpis for r in results):
        arrived = sum(r.kpis.get("parts_arrived", 0) for r in results)
        placed = sum(r.kpis.get("parts_placed", 0) for r in results)
        out["parts_placed_total"] = placed
        out["parts_arrived_total"] = arrived
        out["parts_placed_fraction"] = placed / arrived if arrived else math.nan
    return out
