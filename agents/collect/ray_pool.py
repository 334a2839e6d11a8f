"""Env workers as Ray actors, so a run can collect on a cluster's CPUs.

The actors run the same env groups as local worker processes; observations, rewards and flags
come back as each command's return value (Ray's object store) instead of shared memory. An
actor that dies is reported, replaced and its episodes dropped, as with local workers. The
cluster is the one at ``RAY_ADDRESS``, else a local one bound to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector.utils import CloudpickleWrapper, create_empty_array

from agents.collect.group import EnvGroup, autoreset_mode, run_command, single_threaded
from agents.collect.pool import MAX_REVIVALS_IN_A_ROW, EnvPool, WorkerError, default_workers


def ensure_ray(num_cpus: int) -> bool:
    """Connect to the cluster at ``RAY_ADDRESS``, or start a local one bound to loopback.

    Returns whether this call started Ray (and so should shut it down). Raises ImportError with
    the install hint when Ray is missing.
    """
    try:
        import ray
    except ImportError:
        raise ImportError("the Ray backend needs Ray: pip install 'factory-twin[ray]'") from None
    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
    else:
        root = str(Path(__file__).resolve().parents[2])
        ray.init(
            num_cpus=max(1, num_cpus),
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            log_to_driver=False,
            runtime_env={"env_vars": {"PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}},
        )
    return True


class _Arrays:
    """An actor's own arrays for its envs (what shared memory is for local workers)."""

    def __init__(self, obs_space: gym.Space, act_space: gym.Space, n: int) -> None:
        self._obs = create_empty_array(obs_space, n=n, fn=np.zeros)
        self._act = create_empty_array(act_space, n=n, fn=np.zeros)
        self._rew = np.zeros(n, dtype=np.float64)
        self._term = np.zeros(n, dtype=np.bool_)
        self._trunc = np.zeros(n, dtype=np.bool_)


class GroupActor:
    """A Ray actor owning one worker's env groups (its slots)."""

    def __init__(self, fns: CloudpickleWrapper, slots: list[tuple[int, int]], mode: str) -> None:
        single_threaded()
        self.base = slots[0][0]
        self.slots = [(lo - self.base, hi - self.base) for lo, hi in slots]
        fns = fns.fn
        self.groups = [EnvGroup(fns[lo:hi], autoreset_mode(mode)) for lo, hi in self.slots]
        env = self.groups[0].envs[0]
        self.arrays = _Arrays(env.observation_space, env.action_space, self.slots[-1][1])

    def pid(self) -> int:
        return os.getpid()

    def run(self, local: int, command: tuple, actions: np.ndarray | None) -> tuple:
        lo, hi = self.slots[local]
        if actions is not None:
            self.arrays._act[lo:hi] = actions
        event = run_command(self.groups[local], local, lo, command, self.arrays)
        a = self.arrays
        rows = slice(lo, hi)
        obs = {k: v[rows].copy() for k, v in a._obs.items()} if isinstance(a._obs, dict) else a._obs[rows].copy()
        return event, obs, a._rew[rows].copy(), a._term[rows].copy(), a._trunc[rows].copy()


class RayPool(EnvPool):
    """Envs in Ray actors, one actor per worker (one CPU each).

    Args:
        start_timeout: Seconds an actor may take to be placed and build its envs.
    """

    def __init__(
        self,
        env_fns: Sequence[Callable[[], gym.Env]],
        workers: int | None = None,
        start_timeout: float = 300.0,
        **kwargs: Any,
    ) -> None:
        import ray

        workers = workers or default_workers(len(env_fns))
        self._started_ray = ensure_ray(workers)
        self._ray = ray
        self.start_timeout = start_timeout
        try:
            free = ray.available_resources().get("CPU", 0.0)
            if free < workers:
                raise WorkerError(
                    f"the Ray cluster has {free:g} CPU(s) free and this pool needs {workers} (one per env actor): "
                    f"use fewer workers, or a cluster with more CPUs (RAY_ADDRESS)"
                )
            super().__init__(env_fns, workers=workers, **kwargs)
            n = self.num_envs
            arrays = _Arrays(self.single_observation_space, self.single_action_space, n)
            self._obs, self._act, self._rew = arrays._obs, arrays._act, arrays._rew
            self._term, self._trunc = arrays._term, arrays._trunc
            self._actor_cls = ray.remote(num_cpus=1, max_restarts=0)(GroupActor)
            self._actors: list[Any] = [None] * workers
            self._pending: dict[Any, tuple[int, int]] = {}
            self._kill_reason: dict[int, str] = {}
            self._start_workers()
        except BaseException:  # the Ray check and set-up above, too
            self._closing = True
            self._shutdown()
            raise

    @property
    def local_processes(self) -> int:
        """Actors of a local cluster this pool started run on this machine's cores."""
        return self.n_workers if self._started_ray else 0

    def _spawn(self, w: int) -> None:
        slots = [(self.slots[s][0], self.slots[s][1]) for s in self.worker_slots[w]]
        lo, hi = slots[0][0], slots[-1][1]
        fns = CloudpickleWrapper(self.env_fns[lo:hi])
        self._actors[w] = self._actor_cls.options(name=None).remote(fns, slots, self.autoreset_mode.value)

    def _await_ready(self, w: int) -> None:
        try:
            self._ray.get(self._actors[w].pid.remote(), timeout=self.start_timeout)
        except self._ray.exceptions.GetTimeoutError:
            raise WorkerError(
                f"{self.describe_worker(w)} was not running within {self.start_timeout:g} s "
                f"(Ray resources free: {self._ray.available_resources()})"
            ) from None
        except Exception as exc:
            raise WorkerError(f"{self.describe_worker(w)} could not build its envs: {exc}") from None

    def _dispatch(self, slot: int, command: tuple) -> None:
        lo, hi, w = self.slots[slot]
        local = self.worker_slots[w].index(slot)
        actions = np.array(self._act[lo:hi]) if command[0] == "step" else None
        ref = self._actors[w].run.remote(local, command, actions)
        self._pending[ref] = (w, slot)

    def _gather(self, timeout: float | None) -> list[tuple]:
        ray = self._ray
        refs = list(self._pending)
        if not refs:
            return []
        ready, rest = ray.wait(refs, num_returns=1, timeout=timeout)
        if ready and rest:
            more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
            ready += more
        events: list[tuple] = []
        dead: dict[int, str] = {}
        for ref in ready:
            w, slot = self._pending.pop(ref)
            if w in dead:
                continue
            try:
                event, obs, rew, term, trunc = ray.get(ref)
            except ray.exceptions.RayActorError as exc:
                dead[w] = self._kill_reason.pop(w, None) or f"died ({type(exc).__name__})"
                continue
            except ray.exceptions.RayTaskError as exc:
                events.append(("error", slot, str(exc)))
                continue
            lo, hi, _ = self.slots[slot]
            if isinstance(self._obs, dict):
                for k, v in self._obs.items():
                    v[lo:hi] = obs[k]
            else:
                self._obs[lo:hi] = obs
            self._rew[lo:hi], self._term[lo:hi], self._trunc[lo:hi] = rew, term, trunc
            events.append((event[0], slot, event[2]))
        for w, reason in dead.items():
            self._pending = {r: v for r, v in self._pending.items() if v[0] != w}
            events.append(("died", w, reason))
        return events

    def _restart(self, worker: int) -> None:
        self._pending = {r: v for r, v in self._pending.items() if v[0] != worker}
        self._ray.kill(self._actors[worker], no_restart=True)
        for _attempt in range(MAX_REVIVALS_IN_A_ROW):
            self._spawn(worker)
            try:
                self._await_ready(worker)
                return
            except WorkerError as exc:
                self.notify(f"restarting {self.describe_worker(worker)} failed: {exc}")
        raise WorkerError(f"{self.describe_worker(worker)} could not be restarted")

    def _kill(self, worker: int, reason: str) -> None:
        self._kill_reason[worker] = reason
        self._ray.kill(self._actors[worker], no_restart=True)

    def _shutdown(self) -> None:
        for actor in getattr(self, "_actors", []):
            if actor is not None:
                with contextlib.suppress(Exception):  # already gone
                    self._ray.kill(actor, no_restart=True)
        if self._started_ray:
            self._ray.shutdown()
            self._started_ray = False
