"""``twin eval``: run a policy on every episode of a suite, locally or on Ray, reproducibly.

Policies are given as ``expert``, ``random``, a checkpoint folder written by ``twin train``
(safetensors + JSON) or an ONNX file following the policy contract (input ``obs`` [batch, D],
output ``action`` [batch, A]). Pickle-based files are refused. Each episode is fully determined
by (policy, task, variant, seed), so rows are identical whatever the worker count or backend.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import envs
from agents.common.spaces import flatdim
from agents.evaluation.workers import EpisodeWorkers, Limits

PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".joblib", ".ckpt", ".bin")
ACCEPTED = (
    "'expert', 'expert-observed', 'random', a checkpoint folder written by `twin train` (safetensors + checkpoint.json), "
    "or an ONNX file (.onnx) following the policy contract"
)
VIDEO_STRIDE = 4  # record every 4th control step in episode videos


class PolicyError(ValueError):
    """A policy that cannot be used (format, or its input/output shapes against the env's spaces)."""


@dataclass(frozen=True)
class PolicySpec:
    """What to load in each worker: kind is expert, expert-observed, random, checkpoint or onnx.

    ``expert-observed`` is the scripted expert deciding what the observation decides where a task's
    expert would read hidden state (BinSort's sorts by the inspection sensor, not the true defect):
    the ceiling a policy learning from observations can reach, and what DAgger labels with."""

    kind: str
    path: str | None = None
    sha256: str | None = None

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "sha256": self.sha256}


MAX_POLICY_BYTES = 2**31
"""Largest policy file accepted (2 GiB: the most one ONNX protobuf may hold)."""


def _is_safetensors(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and int.from_bytes(head[:8], "little") < 100_000_000 and head[8:9] == b"{"


def policy_spec(policy: str) -> PolicySpec:
    """Classify a ``--policy`` argument; refuses pickle-based, unknown and oversized files with what
    is accepted, before reading more than a few bytes of them."""
    if policy in ("expert", "expert-observed", "random"):
        return PolicySpec(policy)
    p = Path(policy)
    if not p.exists():
        raise PolicyError(f"{policy}: no such file or folder; --policy takes {ACCEPTED}")
    if p.is_dir():
        from agents.extras import MissingExtra, require

        try:
            require(f"{policy}: loading a torch checkpoint", "train", ["torch", "safetensors"])
        except MissingExtra as exc:
            raise PolicyError(str(exc)) from None
        from agents.common.checkpoint import SIDECAR, CheckpointError, file_sha256, resolve_policy

        try:
            folder = resolve_policy(p)
            digest = file_sha256(folder / SIDECAR)  # names the sha256 of every tensor file
        except CheckpointError as exc:
            raise PolicyError(f"{exc}; --policy takes {ACCEPTED}") from None
        except OSError as exc:
            raise PolicyError(f"{folder}: cannot read the checkpoint: {exc.strerror}") from None
        return PolicySpec("checkpoint", str(folder.resolve()), digest)
    from agents.common.files import file_sha256

    if not p.is_file():
        raise PolicyError(f"{policy}: not a regular file (a device, a pipe or a socket); --policy takes {ACCEPTED}")
    suffix = p.suffix.lower()
    if suffix in PICKLE_SUFFIXES or suffix == ".safetensors":
        if _is_safetensors(p):
            raise PolicyError(
                f"{policy}: bare safetensors weights carry no network description; pass the checkpoint folder "
                f"that holds them with its checkpoint.json, or export it to ONNX"
            )
        raise PolicyError(
            f"{policy}: pickle-based files ({', '.join(PICKLE_SUFFIXES)}) are refused because loading them "
            f"runs arbitrary code; accepted: {ACCEPTED}"
        )
    if suffix != ".onnx":
        raise PolicyError(f"{policy}: unrecognised policy file; accepted: {ACCEPTED}")
    from agents.extras import MissingExtra, require

    try:
        require(f"{policy}: an ONNX policy", "eval", ["onnxruntime"])
    except MissingExtra as exc:
        raise PolicyError(str(exc)) from None
    size = p.stat().st_size
    if size > MAX_POLICY_BYTES:
        raise PolicyError(f"{policy}: {size:,} bytes, over the {MAX_POLICY_BYTES:,}-byte limit for ONNX policies")
    try:
        digest = file_sha256(p)
    except OSError as exc:
        raise PolicyError(f"{policy}: cannot read: {exc.strerror}") from None
    return PolicySpec("onnx", str(p.resolve()), digest)


class _OnnxPolicy:
    def __init__(self, path: str) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        # One thread, no spinning, no custom-op libraries (none are ever registered): a policy
        # from outside gets one core's worth of time and only the standard operators.
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 4  # a failing call fails its episode with the reason; no console noise
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            self.sess = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise PolicyError(f"{path}: onnxruntime cannot load it: {exc}") from None
        self.path = path

    def check(self, env: gym.Env) -> None:
        """The contract: one float input 'obs' [batch, flatdim], one float output 'action' [batch, A]."""
        ins, outs = self.sess.get_inputs(), self.sess.get_outputs()
        d, a = flatdim(env.observation_space), env.action_space.shape[0]
        if len(ins) != 1 or ins[0].name != "obs":
            raise PolicyError(f"{self.path}: expected one input named 'obs', got {[i.name for i in ins]}")
        self._check_images(env)
        if not any(o.name == "action" for o in outs):
            raise PolicyError(f"{self.path}: expected an output named 'action', got {[o.name for o in outs]}")
        out = next(o for o in outs if o.name == "action")
        for what, node, want in (("input 'obs'", ins[0], d), ("output 'action'", out, a)):
            shape = node.shape
            if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != want):
                raise PolicyError(f"{self.path}: {what} has shape {shape}, the env {env.spec.id} needs [batch, {want}]")
            if "float" not in node.type:
                raise PolicyError(f"{self.path}: {what} has type {node.type}, expected tensor(float)")

    def _check_images(self, env: gym.Env) -> None:
        """An image policy (metadata ``factory_twin.obs_images``) against the suite env's cameras,
        naming the first camera that differs."""
        from agents.common.spaces import image_layout

        raw = self.sess.get_modelmeta().custom_metadata_map.get("factory_twin.obs_images")
        theirs = image_layout(env.observation_space)
        gives = {c.key: [c.height, c.width, c.channels] for c in theirs.cameras} if theirs is not None else {}
        if raw is None:
            return  # a plain 'obs' vector: its length is checked against the env's
        try:
            wants = {c["camera"]: list(c["shape"]) for c in json.loads(raw)}
        except (ValueError, TypeError, KeyError) as exc:
            raise PolicyError(f"{self.path}: metadata factory_twin.obs_images is not a camera list ({exc})") from None
        where = f"the suite's {env.spec.id}"
        if not gives:
            raise PolicyError(
                f"{self.path}: input 'obs' reads cameras {sorted(wants)}; {where} gives state observations "
                f"(set env_kwargs obs_mode='rgb' in a suite variant)"
            )
        for cam, shape in wants.items():
            if cam not in gives:
                raise PolicyError(f"{self.path}: input 'obs' reads camera {cam!r}; {where} has cameras {sorted(gives)}")
            if gives[cam] != shape:
                raise PolicyError(
                    f"{self.path}: input 'obs' reads camera {cam!r} as {shape[0]}x{shape[1]}x{shape[2]} (HWC, RGB); "
                    f"{where} gives {gives[cam][0]}x{gives[cam][1]}x{gives[cam][2]}"
                )
        extra = sorted(set(gives) - set(wants))
        if extra:
            raise PolicyError(f"{self.path}: input 'obs' reads no camera {extra[0]!r}, which {where} gives")

    def __call__(self, flat: np.ndarray) -> np.ndarray:
        return self.sess.run(["action"], {"obs": flat[None].astype(np.float32)})[0]


class _TorchPolicy:
    def __init__(self, path: str) -> None:
        import torch

        from agents.common.checkpoint import CheckpointError
        from agents.train import load_policy

        torch.set_num_threads(1)
        self.torch = torch
        try:
            self.policy, self.doc = load_policy(path, "cpu")
        except CheckpointError as exc:
            raise PolicyError(str(exc)) from None

    def check(self, env: gym.Env) -> None:
        from agents.common.spaces import describe

        if self.doc["env_id"] != env.spec.id:
            raise PolicyError(f"checkpoint trained on {self.doc['env_id']}, evaluated on {env.spec.id}")
        if self.doc["obs_space"] != describe(env.observation_space):
            raise PolicyError(
                f"checkpoint expects observations {self.doc['obs_space']} (trained with env_kwargs "
                f"{self.doc.get('env_kwargs')}), the suite's {env.spec.id} gives {describe(env.observation_space)}; "
                f"set env_kwargs in a suite variant to match"
            )

    def __call__(self, flat: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            return self.policy(self.torch.from_numpy(flat[None].astype(np.float32))).numpy()


def load_network(spec: PolicySpec):
    if spec.kind == "onnx":
        return _OnnxPolicy(spec.path)
    if spec.kind == "checkpoint":
        return _TorchPolicy(spec.path)
    return None


def check_policy(spec: PolicySpec, suite) -> None:
    """Check a suite and a policy together before the first episode: every (task, variant) env is
    built once (its env kwargs and layout must make an env; SuiteError naming the variant if not),
    a network policy must fit every task's spaces and the expert must exist (PolicyError)."""
    from agents.evaluation.suite import SuiteError

    if spec.kind in ("expert", "expert-observed"):
        others = sorted({e for e, _, _ in suite.episodes() if not envs.is_factory_env(e)})
        if others:
            raise PolicyError(f"the expert policy has no scripted expert for {', '.join(others)}")
    net = load_network(spec)
    problems = []
    for i, task in enumerate(suite.suite.tasks):
        for j, variant in enumerate(task.variants):
            kwargs = suite.env_kwargs(task.env_id, variant.name)
            try:
                env = gym.make(task.env_id, **kwargs)
            except Exception as exc:  # whatever the env's constructor refuses, said with the variant
                problems.append(
                    f"tasks[{i}].variants[{j}] ({variant.name}): gym.make({task.env_id!r}) with env_kwargs "
                    f"{variant.env_kwargs} fails: {type(exc).__name__}: {_short(exc)}"
                )
                continue
            try:
                if net is not None:
                    net.check(env)
            finally:
                env.close()
    if problems:
        raise SuiteError(str(suite.path), problems)


# -- episodes ---------------------------------------------------------------------------------

_cache: dict[str, Any] = {}


def _env(env_id: str, kwargs: dict[str, Any], video: bool) -> gym.Env:
    key = repr((env_id, sorted(kwargs.items()), video))
    if key not in _cache:
        render = {"render_mode": "rgb_array"} if video else {}  # some envs refuse render_mode=None
        _cache[key] = gym.make(env_id, **render, **kwargs)
    return _cache[key]


def close_cached() -> None:
    """Close the envs this process built for episodes (worker processes just exit)."""
    for key, obj in list(_cache.items()):
        if key.startswith("(") and hasattr(obj, "close"):
            obj.close()
    _cache.clear()


def _net(spec: PolicySpec):
    key = f"net:{spec}"
    if key not in _cache:
        _cache[key] = load_network(spec)
    return _cache[key]


def run_episode(
    spec: PolicySpec,
    env_id: str,
    variant: str,
    seed: int,
    kwargs: dict[str, Any],
    video: bool,
    telemetry: dict[str, Any] | None = None,
    limits: Limits | None = None,
    clock: Any = None,
) -> dict[str, Any]:
    """One episode; returns its row (and, if asked, frames). Policy faults fail the episode, not the run.

    ``telemetry`` (``{"dir", "rate", "start"}``) records the episode's signals and events and
    writes them as a part under ``dir`` (``twin.telemetry.parts``), whatever way it ends.

    ``clock.value`` (shared with the worker pool) holds the wall-clock time a policy call started,
    0 between calls, so the pool can stop a call that never returns; a call that returns late
    fails the episode here.
    """
    limits = limits or Limits()
    env = _env(env_id, kwargs, video)
    obs, info = env.reset(seed=seed)
    recorder = None
    if telemetry is not None:
        from datetime import datetime

        from twin.telemetry import Recorder

        twin = env.unwrapped.twin
        recorder = Recorder(twin, telemetry["rate"], start=datetime.fromisoformat(telemetry["start"]))
        recorder.begin(seed, twin)
    if spec.kind in ("expert", "expert-observed"):
        make = envs.make_expert if spec.kind == "expert" else envs.make_student_expert
        act = make(env_id, env)
        act.reset()
    elif spec.kind == "random":
        env.action_space.seed(seed)
        act = lambda _obs: env.action_space.sample()  # noqa: E731
    else:
        net = _net(spec)

        def act(o):
            return net(gym.spaces.flatten(env.observation_space, o))[0]

    frames = [env.render()] if video else []
    ret, length, failure, error = 0.0, 0, None, False
    terminated = truncated = False
    t0 = time.monotonic()
    while not (terminated or truncated):
        t_call = time.time()
        if clock is not None:
            clock.value = t_call
        try:
            a = np.asarray(act(obs), dtype=np.float32)
        except MemoryError:
            failure = f"policy ran out of memory (limit: {limits.memory_mb} MB per worker)"
            break
        except Exception as exc:
            failure = f"policy raised {type(exc).__name__}: {_short(exc)}"
            if "alloc" in str(exc).lower():
                failure += f" (memory limit: {limits.memory_mb} MB per worker)"
            break
        finally:
            if clock is not None:
                clock.value = 0.0
        if time.time() - t_call > limits.call_seconds:
            failure = f"policy call took {time.time() - t_call:.2f} s, over the {limits.call_seconds:g} s limit"
            break
        if a.shape != env.action_space.shape:
            failure = f"policy returned an action of shape {list(a.shape)}, expected {list(env.action_space.shape)}"
            break
        if not np.all(np.isfinite(a)):
            failure = f"policy returned a non-finite action at step {length}: {a.tolist()}"
            break
        obs, r, terminated, truncated, info = env.step(a)
        ret += float(r)
        length += 1
        if recorder is not None:
            recorder.after_step()
        if video and length % VIDEO_STRIDE == 0:
            frames.append(env.render())
        if time.monotonic() - t0 > limits.episode_seconds:
            failure = f"the episode ran past the {limits.episode_seconds:g} s limit (episode_seconds)"
            break
    if recorder is not None:
        from twin.telemetry.parts import write_part

        write_part(telemetry["dir"], env_id, variant, seed, recorder, getattr(recorder.twin, "layout_source", None))
    error = failure is not None
    success = bool(info.get("is_success", False)) and failure is None
    kpis = dict(env.unwrapped.kpis()) if hasattr(env.unwrapped, "kpis") else {}
    if failure is None and not success:
        failure = "time limit reached" if truncated else "episode ended without success"
        if kpis.get("missed") or kpis.get("drops"):
            failure += f" ({int(kpis.get('missed', 0))} missed, {int(kpis.get('drops', 0))} dropped)"
    row = {
        "task": env_id,
        "variant": variant,
        "seed": int(seed),
        "success": success,
        "return": ret,
        "length": length,
        "failure": failure,
        "error": error,
        # undefined KPIs (e.g. cycle time when nothing was placed) are None, not NaN
        **{f"kpi_{k}": (float(v) if v is not None and math.isfinite(v) else None) for k, v in sorted(kpis.items())},
    }
    return {"row": row, "frames": frames}


def _short(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).strip().replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def episode_error(job: tuple, reason: str) -> dict[str, Any]:
    """The row of an episode that could not run to its end (a limit, a dead worker, an env error)."""
    env_id, variant, seed = job[:3]
    row = {
        "task": env_id,
        "variant": variant,
        "seed": int(seed),
        "success": False,
        "return": None,
        "length": None,
        "failure": reason,
        "error": True,
    }
    return {"row": row, "frames": []}


def _run_many(spec: PolicySpec, jobs: list[tuple], limits: Limits | None = None) -> list[dict[str, Any]]:
    """The episodes of one Ray task; one that raises fails with the reason, as in a local worker."""
    out = []
    for job in jobs:
        try:
            out.append(run_episode(spec, *job, limits=limits))
        except MemoryError:
            out.append(episode_error(job, "the episode ran out of memory"))
        except Exception as exc:  # the env or the policy's loader failed: this episode fails, the run goes on
            out.append(episode_error(job, f"episode raised {type(exc).__name__}: {_short(exc)}"))
    return out


def _chunks(jobs: list, size: int) -> Iterator[list]:
    for i in range(0, len(jobs), size):
        yield jobs[i : i + size]


def run_suite(
    spec: PolicySpec,
    suite,
    workers: int = 1,
    backend: str = "local",
    videos: int = 0,
    on_episode: Callable[[dict[str, Any]], None] | None = None,
    limits: Limits | None = None,
    skip: set[tuple[str, str, int]] | frozenset = frozenset(),
    notify: Callable[[str], None] | None = None,
    telemetry: dict[str, Any] | None = None,
) -> tuple[list[dict[str, Any]], dict[tuple[str, str, int], list[np.ndarray]]]:
    """Every episode of ``suite`` not in ``skip``; rows sorted by (task order, variant order, seed order).

    ``videos`` episodes per task (its first seeds, first variant) also return frames.
    ``on_episode`` gets each episode's result (``{"row": ..., "frames": ...}``) as it ends, in
    this process, so a caller can keep it before the next one ends.
    """
    limits = limits or suite_limits(suite)
    episodes = [ep for ep in suite.episodes() if ep not in skip]
    order = {ep: i for i, ep in enumerate(episodes)}
    want_video = set()
    for task in suite.suite.tasks:
        for s in task.seeds[:videos]:
            want_video.add((task.env_id, task.variants[0].name, s))
    jobs = [(e, v, s, suite.env_kwargs(e, v), (e, v, s) in want_video, telemetry) for e, v, s in episodes]
    results: list[dict[str, Any]] = []

    def collect(batch):
        for res in batch:
            results.append(res)
            if on_episode:
                on_episode(res)

    if not jobs:
        pass
    elif backend == "ray":
        collect_ray(spec, jobs, workers, collect, limits)
    else:
        pool = EpisodeWorkers(spec, min(workers, len(jobs)), limits, notify)
        pool.run(jobs, lambda _i, res: collect([res]))
    results.sort(key=lambda r: order[(r["row"]["task"], r["row"]["variant"], r["row"]["seed"])])
    frames = {(r["row"]["task"], r["row"]["variant"], r["row"]["seed"]): r["frames"] for r in results if r["frames"]}
    return [r["row"] for r in results], frames


def suite_limits(suite) -> Limits:
    """The suite's ``[limits]`` (defaults where it sets none)."""
    return suite.suite.limits


def collect_ray(spec: PolicySpec, jobs: list, workers: int, collect: Callable, limits: Limits | None = None) -> None:
    """Run the episodes as Ray tasks: on the cluster at RAY_ADDRESS, else on a local one bound to loopback.

    A task that fails (an exception in the task, its worker process killed, a node lost) fails
    its episodes with the reason, as a dead local worker does; the evaluation goes on.
    """
    from agents.collect.ray_pool import ensure_ray

    try:
        started = ensure_ray(workers)
    except ImportError as exc:
        raise PolicyError(f"--backend ray: {exc}") from None
    import ray

    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(_run_many)
        size = max(1, min(4, len(jobs) // (max(workers, 1) * 4) or 1))
        chunks = {}
        for chunk in _chunks(jobs, size):
            chunks[remote.remote(spec, chunk, limits)] = chunk
        pending = list(chunks)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                results = ray.get(done[0])
            except Exception as exc:  # WorkerCrashedError, NodeDiedError, a task killed for memory...
                reason = f"the Ray task running it failed: {type(exc).__name__}: {_ray_reason(exc)}"
                results = [episode_error(job, reason) for job in chunks[done[0]]]
            collect(results)
    finally:
        if started:
            ray.shutdown()


def _ray_reason(exc: BaseException) -> str:
    """What Ray says went wrong, in one line: its first line, without colour codes or traceback."""
    import re

    cause = getattr(exc, "cause", None)
    text = str(cause if isinstance(cause, BaseException) else exc)
    text = re.sub(r"\x1b\[[0-9;]*m", "", text).strip()
    return _short(text.splitlines()[0] if text else type(exc).__name__)
