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

import contextlib
import multiprocessing as mp
import os
import pickle
import selectors
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing import connection
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector.utils import CloudpickleWrapper, batch_space, create_shared_memory, read_from_shared_memory

from agents.collect.group import SAME_STEP, EnvGroup, autoreset_mode, die_with_parent, single_threaded

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


def _put(obs: Any, i: int, value: Any) -> None:
    if isinstance(obs, dict):
        for k, v in obs.items():
            _put(v, i, value[k])
    elif isinstance(obs, tuple):
        for v, x in zip(obs, value, strict=True):
            _put(v, i, x)
    else:
        obs[i] = value


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

        dummy = self.env_fns[0]()  # spaces and metadata, as Gymnasium's own vector envs read them
        try:
            self.single_observation_space = dummy.observation_space
            self.single_action_space = dummy.action_space
            self.metadata = {**dummy.metadata, "autoreset_mode": self.autoreset_mode}
            self.render_mode = dummy.render_mode
            self.spec = getattr(dummy, "spec", None)
        finally:
            dummy.close()
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

    def _kill(self, worker: int, reason: str) -> None:
        """Kill a worker that stopped answering; ``_gather`` reports it dead with ``reason``."""
        raise NotImplementedError

    def _shutdown(self) -> None:
        raise NotImplementedError

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
        super().__init__(env_fns, workers=1, **kwargs)
        n = self.num_envs
        self._obs = _empty(self.single_observation_space, n)
        self._act = _empty(self.single_action_space, n)
        self._rew = np.zeros(n, dtype=np.float64)
        self._term = np.zeros(n, dtype=np.bool_)
        self._trunc = np.zeros(n, dtype=np.bool_)
        self._groups = [EnvGroup(self.env_fns[lo:hi], self.autoreset_mode) for lo, hi, _ in self.slots]
        self._queue: list[tuple[int, tuple]] = []

    def _dispatch(self, slot: int, command: tuple) -> None:
        self._queue.append((slot, command))

    def _gather(self, timeout: float | None) -> list[tuple]:
        queue, self._queue = self._queue, []
        return [_run_command(self._groups[s], s, self.slots[s][0], cmd, self) for s, cmd in queue]

    def _restart(self, worker: int) -> None:  # pragma: no cover - nothing to restart in-process
        raise WorkerError("the in-process pool has no workers to restart")

    def _kill(self, worker: int, reason: str) -> None:  # pragma: no cover
        raise WorkerError(f"an env {reason}")

    def _shutdown(self) -> None:
        for g in self._groups:
            g.close()


def _run_command(group: EnvGroup, slot: int, lo: int, command: tuple, arrays: Any) -> tuple:
    """Run one command on a group, writing into ``arrays``' ``_obs``/``_rew``/``_term``/``_trunc``."""
    obs, rew, term, trunc = arrays._obs, arrays._rew, arrays._term, arrays._trunc
    if command[0] == "step":
        act = arrays._act

        def write(j: int, o: Any, r: float, te: bool, tr: bool) -> None:
            i = lo + j
            _put(obs, i, o)
            rew[i], term[i], trunc[i] = r, te, tr

        return ("step", slot, group.step(act[lo : lo + len(group.envs)], write))
    _, seeds, options, mask = command
    done = group.reset(seeds, options, mask)
    for j, o, _ in done:
        _put(obs, lo + j, o)
        rew[lo + j], term[lo + j], trunc[lo + j] = 0.0, False, False
    return ("reset", slot, [(j, info) for j, _, info in done])


# -- worker processes -------------------------------------------------------------------------


class _Shared:
    """The pool's arrays in shared memory, viewed as numpy arrays (rebuilt in each worker)."""

    def __init__(self, obs_space: gym.Space, act_space: gym.Space, n: int, ctx: Any) -> None:
        self.spaces, self.n = (obs_space, act_space), n
        self.raw = (
            create_shared_memory(obs_space, n=n, ctx=ctx),
            create_shared_memory(act_space, n=n, ctx=ctx),
            ctx.Array("d", n, lock=False),
            ctx.Array("b", n, lock=False),
            ctx.Array("b", n, lock=False),
        )
        self.view()

    def view(self) -> None:
        obs_space, act_space = self.spaces
        o, a, r, te, tr = self.raw
        self._obs = read_from_shared_memory(obs_space, o, n=self.n)
        self._act = read_from_shared_memory(act_space, a, n=self.n)
        self._rew = np.frombuffer(r, dtype=np.float64)
        self._term = np.frombuffer(te, dtype=np.bool_)
        self._trunc = np.frombuffer(tr, dtype=np.bool_)

    def __getstate__(self) -> dict[str, Any]:
        return {"spaces": self.spaces, "n": self.n, "raw": self.raw}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.view()


def _worker_main(
    index: int, fns: CloudpickleWrapper, slots: list[tuple[int, int]], shared: _Shared, conn: Any, mode: str
) -> None:
    """A worker process: build its envs, then run commands until told to close (or the learner is gone)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the learner's to handle
    die_with_parent()
    single_threaded()
    groups: list[EnvGroup] = []
    try:
        env_fns = fns.fn
        base = slots[0][0]
        groups = [EnvGroup(env_fns[lo - base : hi - base], autoreset_mode(mode)) for lo, hi in slots]
    except Exception:
        conn.send(("error", 0, traceback.format_exc()))
        conn.close()
        return
    conn.send(("ready", index, None))
    try:
        while True:
            msg = conn.recv()
            if msg[0] == "close":
                break
            local = msg[1]
            try:
                reply = _run_command(groups[local], local, slots[local][0], msg[2], shared)
            except Exception:
                conn.send(("error", local, traceback.format_exc()))
                continue
            conn.send(reply)
    except (EOFError, ConnectionError, KeyboardInterrupt):
        pass  # the learner went away
    finally:
        for g in groups:
            g.close()


class ProcessPool(EnvPool):
    """Envs in worker processes (one per core by default), data in shared memory.

    Workers are forked from the learner (as PyTorch's DataLoader forks its workers), so they see
    the env ids registered at run time and need no ``__main__`` guard; they never touch CUDA, so
    a worker restarted after the learner has started CUDA is safe. Each worker keeps BLAS,
    OpenMP and torch to one thread, ignores Ctrl-C (the learner stops the run) and dies with
    its parent.

    Args:
        env_fns: One callable per env (cloudpickled to the workers).
        workers: Worker processes (default: one per core, at most one per env).
        context: ``multiprocessing`` start method: ``fork`` (default), ``forkserver`` or ``spawn``
            (the last two re-import the main module in each worker: it needs a ``__main__`` guard).
        start_timeout: Seconds a worker may take to build its envs.
        **kwargs: See ``EnvPool``.
    """

    def __init__(
        self,
        env_fns: Sequence[Callable[[], gym.Env]],
        workers: int | None = None,
        context: str = "fork",
        start_timeout: float = 600.0,
        **kwargs: Any,
    ) -> None:
        workers = workers or default_workers(len(env_fns))
        super().__init__(env_fns, workers=workers, **kwargs)
        self._ctx = mp.get_context(context)
        self.start_timeout = start_timeout
        self._shared = _Shared(self.single_observation_space, self.single_action_space, self.num_envs, self._ctx)
        self._obs, self._act = self._shared._obs, self._shared._act
        self._rew, self._term, self._trunc = self._shared._rew, self._shared._term, self._shared._trunc
        self._procs: list[Any] = [None] * workers
        self._conns: list[Any] = [None] * workers
        self._kill_reason: dict[int, str] = {}
        self._selector = selectors.DefaultSelector()  # one epoll set for the pool's lifetime
        self._step_message = [
            pickle.dumps(("step", self.worker_slots[w].index(s), ("step",))) for s, (_, _, w) in enumerate(self.slots)
        ]
        try:
            for w in range(workers):
                self._spawn(w)
            for w in range(workers):
                self._await_ready(w)
        except BaseException:
            self._closing = True
            self._shutdown()
            raise

    def _spawn(self, w: int) -> None:
        slots = [(self.slots[s][0], self.slots[s][1]) for s in self.worker_slots[w]]
        lo, hi = slots[0][0], slots[-1][1]
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(
            target=_worker_main,
            name=f"twin-env-worker-{w}",
            args=(w, CloudpickleWrapper(self.env_fns[lo:hi]), slots, self._shared, child, self.autoreset_mode.value),
            daemon=True,
        )
        proc.start()
        child.close()  # the worker's end lives in the worker only, so its death shows as EOF here
        self._procs[w], self._conns[w] = proc, parent
        self._watch(w)

    def _await_ready(self, w: int) -> None:
        conn, proc = self._conns[w], self._procs[w]
        ready = connection.wait([conn, proc.sentinel], timeout=self.start_timeout)
        if not ready:
            proc.kill()
            raise WorkerError(f"{self.describe_worker(w)} did not build its envs within {self.start_timeout:g} s")
        try:
            msg = conn.recv()
        except (EOFError, ConnectionError):
            proc.join(5)
            raise WorkerError(
                f"{self.describe_worker(w)} died while building its envs ({_exit_reason(proc.exitcode)})"
            ) from None
        if msg[0] == "error":
            raise WorkerError(f"{self.describe_worker(w)} could not build its envs:\n{msg[2]}")

    def describe_worker(self, worker: int) -> str:
        text = super().describe_worker(worker)
        proc = self._procs[worker] if worker < len(getattr(self, "_procs", [])) else None
        return text if proc is None or proc.pid is None else f"{text[:-1]}, pid {proc.pid})"

    def _dispatch(self, slot: int, command: tuple) -> None:
        w = self.slots[slot][2]
        if command[0] == "step":  # the same few bytes every time: pickled once
            self._conns[w].send_bytes(self._step_message[slot])
        else:
            self._conns[w].send((command[0], self.worker_slots[w].index(slot), command))

    def _gather(self, timeout: float | None) -> list[tuple]:
        events: list[tuple] = []
        dead: set[int] = set()
        for key, _ in self._selector.select(timeout):
            kind, w = key.data
            if kind == "proc" or w in dead:
                dead.add(w)
                continue
            try:  # one message per wake-up; epoll is level-triggered, so a second one wakes us again
                msg = self._conns[w].recv()
                events.append((msg[0], self.worker_slots[w][msg[1]], msg[2]))
            except (EOFError, ConnectionError, OSError):
                dead.add(w)
        for w in sorted(dead):
            proc = self._procs[w]
            self._unwatch(w)
            proc.join(5)
            reason = self._kill_reason.pop(w, None) or f"died ({_exit_reason(proc.exitcode)})"
            events.append(("died", w, reason))
        return events

    def _watch(self, w: int) -> None:
        self._selector.register(self._conns[w], selectors.EVENT_READ, ("conn", w))
        self._selector.register(self._procs[w].sentinel, selectors.EVENT_READ, ("proc", w))

    def _unwatch(self, w: int) -> None:
        for obj in (self._conns[w], self._procs[w].sentinel if self._procs[w] is not None else None):
            if obj is not None:
                with contextlib.suppress(KeyError, ValueError, OSError):
                    self._selector.unregister(obj)

    def _restart(self, worker: int) -> None:
        self._close_worker(worker)
        for _attempt in range(MAX_REVIVALS_IN_A_ROW):
            self._spawn(worker)
            try:
                self._await_ready(worker)
                return
            except WorkerError as exc:
                self.notify(f"restarting {self.describe_worker(worker)} failed: {exc}")
                self._close_worker(worker)
        raise WorkerError(f"{self.describe_worker(worker)} could not be restarted")

    def _kill(self, worker: int, reason: str) -> None:
        self._kill_reason[worker] = reason
        proc = self._procs[worker]
        if proc is not None and proc.is_alive():
            proc.kill()

    def _close_worker(self, w: int) -> None:
        self._unwatch(w)
        conn, proc = self._conns[w], self._procs[w]
        if conn is not None:
            conn.close()
        if proc is not None:
            if proc.is_alive():
                proc.kill()
            proc.join(5)

    def _shutdown(self) -> None:
        for conn in self._conns:
            if conn is None:
                continue
            with contextlib.suppress(OSError, ValueError):
                conn.send(("close",))
        deadline = time.monotonic() + 5.0
        for proc in self._procs:
            if proc is not None:
                proc.join(max(0.0, deadline - time.monotonic()))
        for w, proc in enumerate(self._procs):
            if proc is not None and proc.is_alive():
                proc.kill()
                proc.join(5)
            if self._conns[w] is not None:
                self._conns[w].close()
        self._selector.close()


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"
