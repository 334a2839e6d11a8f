"""Env workers as local processes, exchanging observations, rewards, flags and actions in shared memory."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import pickle
import selectors
import signal
import time
import traceback
from collections.abc import Callable, Sequence
from multiprocessing import connection
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector.utils import CloudpickleWrapper, create_shared_memory, read_from_shared_memory

from agents.collect.group import (
    EnvGroup,
    autoreset_mode,
    die_with_parent,
    exit_reason,
    keep_parents_garbage,
    run_command,
    single_threaded,
)
from agents.collect.pool import MAX_REVIVALS_IN_A_ROW, EnvPool, WorkerError, default_workers


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
    index: int,
    fns: CloudpickleWrapper,
    slots: list[tuple[int, int]],
    shared: _Shared,
    conn: Any,
    mode: str,
    cpu: int | None,
) -> None:
    """A worker process: build its envs, then run commands until told to close (or the learner is gone)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the learner's to handle
    keep_parents_garbage()
    die_with_parent()
    single_threaded()
    if cpu is not None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {cpu})
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
                reply = run_command(groups[local], local, slots[local][0], msg[2], shared)
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

    With ``pin`` each worker is bound to one core of the cores this process may use (from the
    highest down, so the learner keeps the lowest ones when there are spare cores), as Sample
    Factory does: otherwise Linux's wake-up affinity runs a worker woken by the learner's
    command on the learner's own core, and the learner stops while the worker steps. Give
    concurrent runs on one machine their own cores (``taskset -c``, a cpuset) or turn it off.

    Args:
        env_fns: One callable per env (cloudpickled to the workers).
        workers: Worker processes (default: one per core, at most one per env).
        pin: Bind each worker to a core (Linux).
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
        pin: bool = True,
        **kwargs: Any,
    ) -> None:
        workers = workers or default_workers(len(env_fns))
        super().__init__(env_fns, workers=workers, **kwargs)
        self._cores = sorted(os.sched_getaffinity(0)) if pin and hasattr(os, "sched_getaffinity") else []
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
        self._start_workers()

    def _spawn(self, w: int) -> None:
        slots = [(self.slots[s][0], self.slots[s][1]) for s in self.worker_slots[w]]
        lo, hi = slots[0][0], slots[-1][1]
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(
            target=_worker_main,
            name=f"twin-env-worker-{w}",
            args=(
                w,
                CloudpickleWrapper(self.env_fns[lo:hi]),
                slots,
                self._shared,
                child,
                self.autoreset_mode.value,
                self.cpu_of(w),
            ),
            daemon=True,
        )
        proc.start()
        child.close()  # the worker's end lives in the worker only, so its death shows as EOF here
        self._procs[w], self._conns[w] = proc, parent
        self._watch(w)

    def cpu_of(self, w: int) -> int | None:
        """The core worker ``w`` is bound to (None: not pinned)."""
        if not self._cores:
            return None
        return self._cores[-1 - w % len(self._cores)]

    @property
    def local_processes(self) -> int:
        return self.n_workers

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
                f"{self.describe_worker(w)} died while building its envs ({exit_reason(proc.exitcode)})"
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
            reason = self._kill_reason.pop(w, None) or f"died ({exit_reason(proc.exitcode)})"
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
