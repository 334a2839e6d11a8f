"""Vector envs of worker processes, several envs each, talking to the learner through shared memory.

A pool of ``N`` envs is split into slots: contiguous ranges of envs that one worker steps in turn
on one command. A worker process owns one slot, or two (double buffering: while the learner
computes actions for one, the worker steps the other). Observations, rewards, flags and actions
live in shared memory; a command and its reply (the envs' infos) are small pickled messages.

Two ways to drive a pool:

* EnvPool's way, ``send(actions, env_ids)`` / ``recv(min_envs)``: ``recv`` returns the envs of
  whichever slots have finished (at least ``min_envs`` of them), so the learner acts on the envs
  that are ready and no worker waits for the slowest env of the whole batch. Learners use this.
* Gymnasium's ``VectorEnv`` API (``reset``, ``step``, ``step_async`` / ``step_wait``), lock-step
  over all envs, with Gymnasium's info layout, same-step autoreset and ``final_obs``. On the
  same seeds it gives exactly what ``gymnasium.vector.SyncVectorEnv`` gives.

A worker that dies (a segfault in the physics, the OOM killer, ``kill -9``) or stops answering is
reported by name, restarted with fresh envs, and its envs' episodes are dropped: their next step
comes back truncated with ``dropped`` set (``info["dropped"]``), the last observation the learner
saw as ``final_obs``, and the first observation of a fresh episode. Training goes on.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector.utils import batch_space

from agents.collect.group import SAME_STEP, EnvGroup, autoreset_mode, run_command

MAX_REVIVALS_IN_A_ROW = 3
"""A worker that dies this many times without completing a command in between is not restarted again."""


class WorkerError(RuntimeError):
    """A worker that keeps dying, an env that raised inside a worker, or a pool used out of order."""


@dataclass
class StepBatch:
    """The results of the envs ``env_ids`` (ascending), as ``recv`` returns them.

    ``infos[k]`` is env ``env_ids[k]``'s info (after a same-step autoreset: the reset's info);
    ``finals[k] = (final_obs, final_info)`` for each env whose episode ended in this step;
    ``dropped[k]`` marks an env whose worker died: its episode was lost (it comes back truncated,
    ``final_obs`` is the last observation delivered before the death).
    """

    env_ids: np.ndarray
    obs: Any
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    infos: list[dict[str, Any]]
    finals: dict[int, tuple[Any, dict[str, Any]]]
    dropped: np.ndarray

    @property
    def done(self) -> np.ndarray:
        return self.terminated | self.truncated


def _take(obs: Any, ids: np.ndarray) -> Any:
    if isinstance(obs, dict):
        return {k: _take(v, ids) for k, v in obs.items()}
    if isinstance(obs, tuple):
        return tuple(_take(v, ids) for v in obs)
    return np.take(obs, ids, axis=0)


def _put_rows(obs: Any, ids: np.ndarray, values: Any) -> None:
    if isinstance(obs, dict):
        for k, v in obs.items():
            _put_rows(v, ids, values[k])
    elif isinstance(obs, tuple):
        for v, x in zip(obs, values, strict=True):
            _put_rows(v, ids, x)
    else:
        obs[ids] = values


def _row(obs: Any, i: int) -> Any:
    if isinstance(obs, dict):
        return {k: _row(v, i) for k, v in obs.items()}
    if isinstance(obs, tuple):
        return tuple(_row(v, i) for v in obs)
    return obs[i].copy()


def _empty(space: gym.Space, n: int) -> Any:
    from gymnasium.vector.utils import create_empty_array

    return create_empty_array(space, n=n, fn=np.zeros)


def default_workers(n_envs: int) -> int:
    """One worker per core, at most one per env."""
    return max(1, min(n_envs, os.cpu_count() or 1))


def split(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous ranges covering ``range(n)``, sizes differing by at most one."""
    base, extra = divmod(n, parts)
    out, lo = [], 0
    for k in range(parts):
        hi = lo + base + (k < extra)
        out.append((lo, hi))
        lo = hi
    return out


# slot states
IDLE, STEPPING, RESETTING, REVIVING = "idle", "stepping", "resetting", "reviving"


class EnvPool(gym.vector.VectorEnv):
    """What every pool shares: slots, the send/recv protocol, Gymnasium's API, worker revival.

    Subclasses say how a command reaches a slot's worker and how replies come back
    (``_dispatch``, ``_gather``, ``_restart``, ``_shutdown``); replies land in ``self._obs``,
    ``self._rew``, ``self._term`` and ``self._trunc``.

    Args:
        env_fns: One callable per env.
        workers: Worker count (each owns a contiguous range of envs).
        double_buffer: Split each worker's envs into two slots (when it has two or more).
        autoreset: ``"same_step"`` or ``"disabled"`` (Gymnasium's modes of the same names).
        notify: Called with a line of text when a worker dies or is restarted (default: stderr).
        step_timeout: Seconds a slot may take to answer a command before its worker is deemed
            hung, killed and restarted.
        seed: Seeds the fresh envs of restarted workers.
    """

    def __init__(
        self,
        env_fns: Sequence[Callable[[], gym.Env]],
        workers: int,
        double_buffer: bool = True,
        autoreset: str | gym.vector.AutoresetMode = "same_step",
        notify: Callable[[str], None] | None = None,
        step_timeout: float = 600.0,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        n = len(env_fns)
        if n < 1:
            raise ValueError("a pool needs at least one env")
        if not 1 <= workers <= n:
            raise ValueError(f"workers must be between 1 and the number of envs ({n}), got {workers}")
        self.env_fns = list(env_fns)
        self.num_envs = n
        self.autoreset_mode = autoreset_mode(autoreset)
        self.notify = notify or (lambda line: print(f"twin: {line}", file=sys.stderr, flush=True))
        self.step_timeout = step_timeout
        self._restart_rng = np.random.default_rng(seed)

        probe, close_probe = self._probe()  # spaces and metadata, as Gymnasium's own vector envs read them
        try:
            self.single_observation_space = probe.observation_space
            self.single_action_space = probe.action_space
            self.metadata = {**probe.metadata, "autoreset_mode": self.autoreset_mode}
            self.render_mode = probe.render_mode
            self.spec = getattr(probe, "spec", None)
        finally:
            if close_probe:
                probe.close()
        self.observation_space = batch_space(self.single_observation_space, n)
        self.action_space = batch_space(self.single_action_space, n)

        # slots: (lo, hi, worker); a worker's slots are contiguous
        self.slots: list[tuple[int, int, int]] = []
        self.worker_slots: list[list[int]] = []
        for w, (lo, hi) in enumerate(split(n, workers)):
            halves = split(hi - lo, 2) if double_buffer and hi - lo >= 2 else [(0, hi - lo)]
            self.worker_slots.append([])
            for a, b in halves:
                self.worker_slots[w].append(len(self.slots))
                self.slots.append((lo + a, lo + b, w))
        self.n_workers = workers
        self._slot_of_env = np.empty(n, dtype=np.int64)
        for s, (lo, hi, _) in enumerate(self.slots):
            self._slot_of_env[lo:hi] = s
        self._state = [IDLE] * len(self.slots)
        self._was: dict[int, Any] = {}  # slot -> what it was doing when its worker died
        self._pending_reset: dict[int, tuple] = {}
        self._reset_infos: dict[int, list[tuple[int, dict[str, Any]]]] = {}
        self._ready: list[tuple[int, list]] = []  # (slot, records) of steps not yet returned by recv
        self._deadline = [float("inf")] * len(self.slots)
        self._dirty = np.zeros(n, dtype=bool)  # envs whose next step result reports a dropped episode
        self._revivals_in_a_row = [0] * workers
        self.worker_restarts = 0
        self.episodes_dropped = 0
        self._last_obs = _empty(self.single_observation_space, n)
        self._closing = False

    # -- what subclasses provide ---------------------------------------------------------------

    def _probe(self) -> tuple[gym.Env, bool]:
        """An env to read the spaces from, and whether to close it afterwards."""
        return self.env_fns[0](), True

    def _dispatch(self, slot: int, command: tuple) -> None:
        """Send ``("step",)`` or ``("reset", seeds, options, mask)`` to the slot's worker."""
        raise NotImplementedError

    def _gather(self, timeout: float | None) -> list[tuple]:
        """Wait up to ``timeout`` seconds (None: forever, 0: poll) for replies.

        Returns events ``("step", slot, records)``, ``("reset", slot, [(j, info), ...])``,
        ``("error", slot, text)`` or ``("died", worker, reason)``; replies' observations, rewards
        and flags are in the pool's arrays by then.
        """
        raise NotImplementedError

    def _restart(self, worker: int) -> None:
        """Start a fresh worker in place of a dead one (its envs built, not reset)."""
        raise NotImplementedError

    def _spawn(self, worker: int) -> None:
        """Start worker ``worker`` (without waiting for it)."""
        raise NotImplementedError

    def _await_ready(self, worker: int) -> None:
        """Wait until worker ``worker`` has built its envs; raise if it cannot."""
        raise NotImplementedError

    def _start_workers(self) -> None:
        """Start every worker, then wait for each (they build their envs in parallel); if any
        fails, stop them all and raise."""
        try:
            for w in range(self.n_workers):
                self._spawn(w)
            for w in range(self.n_workers):
                self._await_ready(w)
        except BaseException:
            self._closing = True
            self._shutdown()
            raise

    def _kill(self, worker: int, reason: str) -> None:
        """Kill a worker that stopped answering; ``_gather`` reports it dead with ``reason``."""
        raise NotImplementedError

    def _shutdown(self) -> None:
        raise NotImplementedError

    @property
    def local_processes(self) -> int:
        """Worker processes on this machine (their cores are not the learner's)."""
        return 0

    def describe_worker(self, worker: int) -> str:
        lo, hi = self.slots[self.worker_slots[worker][0]][0], self.slots[self.worker_slots[worker][-1]][1]
        return f"env worker {worker} (envs {lo}-{hi - 1})"

    # -- EnvPool's protocol --------------------------------------------------------------------

    def send(self, actions: np.ndarray, env_ids: np.ndarray | None = None) -> None:
        """Start stepping the envs ``env_ids`` (whole slots, all idle) with ``actions`` (one row each)."""
        if env_ids is None:
            env_ids = np.arange(self.num_envs)
        env_ids = np.asarray(env_ids, dtype=np.int64)
        slots = self._slots_of(env_ids)
        busy = [s for s in slots if self._state[s] != IDLE]
        if busy:
            raise WorkerError(f"send() to envs whose last step was not received yet (slots {busy})")
        self._write_actions(env_ids, actions)
        now = time.monotonic()
        for s in slots:
            lo, hi, _ = self.slots[s]
            self._state[s] = STEPPING
            if self._dirty[lo:hi].all():  # fresh envs of a restarted worker: report the lost episodes
                self._ready.append((s, [({}, None)] * (hi - lo)))
                continue
            self._deadline[s] = now + self.step_timeout
            self._dispatch_or_revive(s, ("step",))

    def _slots_of(self, env_ids: np.ndarray) -> list[int]:
        """The slots that ``env_ids`` (ascending, whole slots) cover; anything else is refused."""
        slots, i, n = [], 0, len(env_ids)
        ok = n > 0 and bool(np.all(env_ids[1:] > env_ids[:-1])) and env_ids[0] >= 0 and env_ids[-1] < self.num_envs
        while ok and i < n:
            s = int(self._slot_of_env[env_ids[i]])
            lo, hi, _ = self.slots[s]
            ok = env_ids[i] == lo and i + hi - lo <= n and env_ids[i + hi - lo - 1] == hi - 1
            slots.append(s)
            i += hi - lo
        if not ok:
            raise WorkerError(
                "send() takes env ids in ascending order covering whole slots (the env_ids recv() returned)"
            )
        return slots

    def _write_actions(self, env_ids: np.ndarray, actions: np.ndarray) -> None:
        self._act[env_ids] = actions

    def recv(self, min_envs: int | None = None, timeout: float | None = None) -> StepBatch:
        """Results of finished slots: at least ``min_envs`` envs (default: every env in flight)."""
        in_flight = sum(self._size(s) for s in range(len(self.slots)) if self._stepping(s))
        if in_flight == 0:
            raise WorkerError("recv() with no step in flight: send() actions first")
        want = in_flight if min_envs is None else max(1, min(min_envs, in_flight))
        end = None if timeout is None else time.monotonic() + timeout
        while self._ready_envs() < want:
            wait = None if end is None else end - time.monotonic()
            if wait is not None and wait <= 0.0:
                raise TimeoutError(f"recv(): fewer than {want} envs finished within {timeout} s")
            self._pump(wait)
        self._pump(0.0)  # and whatever else has finished by now
        return self._deliver()

    def _size(self, s: int) -> int:
        return self.slots[s][1] - self.slots[s][0]

    def _stepping(self, s: int) -> bool:
        """A step of slot ``s`` is in flight (possibly lost with its worker and being replaced)."""
        return self._state[s] == STEPPING or (self._state[s] == REVIVING and self._was.get(s) == STEPPING)

    def _ready_envs(self) -> int:
        return sum(len(records) for _, records in self._ready)

    def _deliver(self) -> StepBatch:
        ready, self._ready = sorted(self._ready, key=lambda item: item[0]), []
        ids = np.concatenate([np.arange(self.slots[s][0], self.slots[s][1]) for s, _ in ready])
        records = [r for _, recs in ready for r in recs]
        for s, _ in ready:
            self._state[s] = IDLE
            self._deadline[s] = float("inf")
        obs = _take(self._obs, ids)
        rewards, term, trunc = self._rew[ids].copy(), self._term[ids].copy(), self._trunc[ids].copy()
        infos = [info for info, _ in records]
        finals = {k: final for k, (_, final) in enumerate(records) if final is not None}
        dropped = self._dirty[ids].copy()
        for k in np.flatnonzero(dropped):
            k = int(k)
            rewards[k], term[k], trunc[k] = 0.0, False, True
            infos[k] = {**infos[k], "dropped": True}
            if self.autoreset_mode == SAME_STEP:
                finals[k] = (_row(self._last_obs, int(ids[k])), {"dropped": True})
        self._dirty[ids] = False
        _put_rows(self._last_obs, ids, obs)  # what the learner last saw: a dropped episode's final_obs
        return StepBatch(ids, obs, rewards, term, trunc, infos, finals, dropped)

    # -- the event loop ------------------------------------------------------------------------

    def _pump(self, timeout: float | None) -> None:
        """Handle replies (waiting up to ``timeout``), deaths, hangs and errors."""
        deadline = min(self._deadline)
        if deadline < float("inf"):
            left = max(0.0, deadline - time.monotonic())
            timeout = left if timeout is None else min(timeout, left)
        events = self._gather(timeout)
        for event in events:
            kind = event[0]
            if kind == "step":
                _, s, records = event
                if self._state[s] == STEPPING:
                    self._ready.append((s, records))
                    self._deadline[s] = float("inf")
                    self._revivals_in_a_row[self.slots[s][2]] = 0
            elif kind == "reset":
                _, s, infos = event
                self._on_reset(s, infos)
            elif kind == "error":
                _, s, text = event
                raise WorkerError(f"an env in {self.describe_worker(self.slots[s][2])} raised an exception:\n{text}")
            elif kind == "died":
                _, w, reason = event
                self._revive(w, reason)
        now = time.monotonic()
        for s, t in enumerate(self._deadline):
            if t <= now and self._state[s] in (STEPPING, RESETTING, REVIVING):
                w = self.slots[s][2]
                self._deadline[s] = float("inf")
                self._kill(w, f"stopped answering (no reply in {self.step_timeout:g} s)")

    def _on_reset(self, s: int, infos: list) -> None:
        lo, _, w = self.slots[s]
        self._deadline[s] = float("inf")
        if self._state[s] == RESETTING:
            self._reset_infos[s] = infos
            self._pending_reset.pop(s, None)
            self._state[s] = IDLE
            self._revivals_in_a_row[w] = 0
            for j, _ in infos:
                self._dirty[lo + j] = False
        elif self._state[s] == REVIVING:
            was = self._was.pop(s)
            if was == RESETTING:  # the user's reset was lost with the worker: send it again
                self._state[s] = RESETTING
                self._deadline[s] = time.monotonic() + self.step_timeout
                self._dispatch_or_revive(s, self._pending_reset[s])
            elif was == STEPPING:  # the step was lost: its envs come back as dropped episodes
                self._state[s] = STEPPING
                self._ready.append((s, [(info, None) for _, info in infos]))
            else:  # idle: the envs' next step reports the dropped episodes
                self._state[s] = IDLE

    def _dispatch_or_revive(self, s: int, command: tuple) -> None:
        try:
            self._dispatch(s, command)
        except (BrokenPipeError, ConnectionError, EOFError, OSError) as exc:
            self._revive(self.slots[s][2], f"could not be reached ({type(exc).__name__})")

    def _revive(self, w: int, reason: str) -> None:
        """Report a dead worker, start a fresh one, reset its envs; what it was doing is lost."""
        if self._closing:
            return
        self._revivals_in_a_row[w] += 1
        if self._revivals_in_a_row[w] > MAX_REVIVALS_IN_A_ROW:
            raise WorkerError(
                f"{self.describe_worker(w)} died {MAX_REVIVALS_IN_A_ROW + 1} times in a row (last: {reason}); giving up"
            )
        slots = self.worker_slots[w]
        lo, hi = self.slots[slots[0]][0], self.slots[slots[-1]][1]
        for s in slots:
            if self._state[s] != REVIVING:
                self._was[s] = self._state[s]
                self._state[s] = REVIVING
        # results that arrived but were not delivered lived in the dead worker's envs: lost too
        self._ready = [(r, recs) for r, recs in self._ready if r not in slots]
        self.worker_restarts += 1
        self.episodes_dropped += hi - lo
        self.notify(
            f"{self.describe_worker(w)} {reason}; restarting it with fresh envs "
            f"({hi - lo} episode(s) dropped, {self.worker_restarts} restart(s) in this run)"
        )
        self._restart(w)
        self._dirty[lo:hi] = True
        seeds = [int(x) for x in self._restart_rng.integers(0, 2**31 - 1, size=hi - lo)]
        now = time.monotonic()
        for s in slots:
            a, b, _ = self.slots[s]
            self._deadline[s] = now + self.step_timeout
            self._dispatch_or_revive(s, ("reset", seeds[a - lo : b - lo], None, [True] * (b - a)))

    # -- Gymnasium's API -----------------------------------------------------------------------

    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        if any(st != IDLE for st in self._state) or self._ready:
            self._drain()
        n = self.num_envs
        if seed is None:
            seeds: list[int | None] = [None] * n
        elif isinstance(seed, int | np.integer):
            seeds = [int(seed) + i for i in range(n)]
        else:
            seeds = list(seed)
            if len(seeds) != n:
                raise ValueError(f"reset(seed=...) needs {n} seeds, got {len(seeds)}")
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        if mask is None:
            mask = np.ones(n, dtype=bool)
        else:
            mask = np.asarray(mask)
            if mask.dtype != np.bool_ or mask.shape != (n,) or not mask.any():
                raise ValueError(f"options['reset_mask'] must be a bool array of shape ({n},) with a True in it")
        opts = options or None
        now = time.monotonic()
        started = []
        for s, (lo, hi, _) in enumerate(self.slots):
            if not mask[lo:hi].any():
                continue
            command = ("reset", seeds[lo:hi], opts, mask[lo:hi].tolist())
            self._pending_reset[s] = command
            self._state[s] = RESETTING
            self._deadline[s] = now + self.step_timeout
            started.append(s)
            self._dispatch_or_revive(s, command)
        while any(self._state[s] != IDLE for s in started):
            self._pump(None)
        infos: dict[str, Any] = {}
        for s in sorted(started):
            lo = self.slots[s][0]
            for j, info in self._reset_infos.pop(s):
                infos = self._add_info(infos, info, lo + j)
        obs = _take(self._obs, np.arange(n))
        ids = np.flatnonzero(mask)
        _put_rows(self._last_obs, ids, _take(obs, ids))
        return obs, infos

    def _drain(self) -> None:
        """Let what is in flight finish; a reset in the middle of a vector step discards its results."""

        def busy() -> bool:
            arrived = {r for r, _ in self._ready}
            return any(
                st in (RESETTING, REVIVING) or (st == STEPPING and s not in arrived) for s, st in enumerate(self._state)
            )

        while busy():
            self._pump(None)
        self._ready = []
        self._state = [IDLE] * len(self.slots)
        self._deadline = [float("inf")] * len(self.slots)

    def step_async(self, actions: np.ndarray) -> None:
        self.send(actions)

    def step_wait(self) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        return self.to_gymnasium(self.recv())

    def step(self, actions: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        self.send(actions)
        return self.step_wait()

    def to_gymnasium(self, batch: StepBatch) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """A whole-pool ``StepBatch`` in Gymnasium's vector form (what ``SyncVectorEnv.step`` returns)."""
        if len(batch.env_ids) != self.num_envs:
            raise WorkerError("to_gymnasium() needs the results of every env")
        infos: dict[str, Any] = {}
        for k in range(self.num_envs):
            final = batch.finals.get(k)
            if final is not None:
                infos = self._add_info(infos, {"final_obs": final[0], "final_info": final[1]}, k)
            infos = self._add_info(infos, batch.infos[k], k)
        return batch.obs, batch.rewards, batch.terminated, batch.truncated, infos

    def close_extras(self, **kwargs: Any) -> None:
        if self._closing:
            return
        self._closing = True
        self._shutdown()

    def __del__(self) -> None:
        try:
            if not self.closed:
                self.close()
        except Exception:
            pass


# -- in this process --------------------------------------------------------------------------


class InlinePool(EnvPool):
    """All envs in the learner's process: no workers, commands run when results are asked for."""

    def __init__(self, env_fns: Sequence[Callable[[], gym.Env]], **kwargs: Any) -> None:
        kwargs.setdefault("double_buffer", False)
        kwargs.setdefault("step_timeout", float("inf"))  # a step here blocks the caller; nothing to kill
        self._first = env_fns[0]()  # the spaces come from the first env, which then joins the pool
        try:
            super().__init__([lambda: self._first, *env_fns[1:]], workers=1, **kwargs)
        except BaseException:
            self._first.close()
            raise
        n = self.num_envs
        self._obs = _empty(self.single_observation_space, n)
        self._act = _empty(self.single_action_space, n)
        self._rew = np.zeros(n, dtype=np.float64)
        self._term = np.zeros(n, dtype=np.bool_)
        self._trunc = np.zeros(n, dtype=np.bool_)
        self._groups = [EnvGroup(self.env_fns[lo:hi], self.autoreset_mode) for lo, hi, _ in self.slots]
        self._queue: list[tuple[int, tuple]] = []

    def _probe(self) -> tuple[gym.Env, bool]:
        return self._first, False

    def _dispatch(self, slot: int, command: tuple) -> None:
        self._queue.append((slot, command))

    def _gather(self, timeout: float | None) -> list[tuple]:
        queue, self._queue = self._queue, []
        return [run_command(self._groups[s], s, self.slots[s][0], cmd, self) for s, cmd in queue]

    def _restart(self, worker: int) -> None:  # pragma: no cover - nothing to restart in-process
        raise WorkerError("the in-process pool has no workers to restart")

    def _kill(self, worker: int, reason: str) -> None:  # pragma: no cover
        raise WorkerError(f"an env {reason}")

    def _shutdown(self) -> None:
        for g in self._groups:
            g.close()
