"""Episode workers for ``twin eval``: each runs one episode at a time under the suite's limits.

A policy from outside is code we did not write running on our machine. Every episode therefore
runs in a worker process that

- dies with the evaluation (``PR_SET_PDEATHSIG``), so a killed ``twin eval`` leaves no orphans;
- ignores Ctrl-C (the evaluation decides when workers stop);
- may grow by at most ``Limits.memory_mb`` of address space once started (``RLIMIT_AS``): a
  policy allocating more gets an allocation error, and its episode fails with that reason;
- is killed when one policy call runs past ``Limits.call_seconds`` or the episode past
  ``Limits.episode_seconds``; the episode fails with the limit that was crossed and a fresh
  worker takes the next episode.

A worker that dies (a crash in native code, the kernel's OOM killer, a stray ``kill -9``) is
reported, replaced, and its episode retried once in the fresh worker; a second death fails the
episode with the reason.
"""

from __future__ import annotations

import os
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing import get_context
from multiprocessing.connection import wait
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agents.collect.group import exit_reason

POLL_SECONDS = 0.1  # how often deadlines are checked while episodes run


class Limits(BaseModel):
    """What one evaluation episode may cost: ``[limits]`` in a suite; ``twin eval``'s
    ``--episode-seconds``, ``--call-seconds`` and ``--memory-mb`` override it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    episode_seconds: float = Field(300.0, gt=0, le=86_400, allow_inf_nan=False)
    """Wall-clock seconds one episode may take, env and policy together."""
    call_seconds: float = Field(2.0, gt=0, le=3_600, allow_inf_nan=False)
    """Wall-clock seconds one policy call (one action) may take."""
    memory_mb: int = Field(4096, ge=64, le=1_048_576)
    """Address space in MB an eval worker may add once started (policy, env and frames)."""

    def describe(self) -> dict[str, float]:
        return self.model_dump()


def _vm_size() -> int:
    """This process's current address-space size in bytes (Linux), else 0."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def limit_memory(extra_mb: int) -> None:
    """Cap this process's address space at its current size plus ``extra_mb`` (where supported)."""
    try:
        import resource
    except ImportError:  # not a POSIX system: no limit
        return
    base = _vm_size()
    if base == 0:
        return
    soft = base + extra_mb * 2**20
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _worker_main(conn, spec, limits: Limits, clock) -> None:
    from agents.collect.group import die_with_parent, keep_parents_garbage, single_threaded
    from agents.evaluation.runner import episode_error, run_episode

    keep_parents_garbage()
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    single_threaded()
    limit_memory(limits.memory_mb)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        job_id, job = msg
        try:
            result = run_episode(spec, *job, limits=limits, clock=clock)
        except MemoryError:
            result = episode_error(job, f"the episode ran out of memory (limit: {limits.memory_mb} MB per worker)")
        except Exception as exc:  # the env or the policy's loader failed: this episode fails, the run goes on
            result = episode_error(job, f"episode raised {type(exc).__name__}: {exc}")
        finally:
            clock.value = 0.0
        try:
            conn.send((job_id, result))
        except (OSError, ValueError, MemoryError) as exc:
            conn.send((job_id, episode_error(job, f"the episode's result could not be returned: {exc}")))


@dataclass
class _Worker:
    proc: Any
    conn: Any
    clock: Any
    job: int | None = None
    started: float = 0.0
    tried: set[int] = field(default_factory=set)


class EpisodeWorkers:
    """``n`` worker processes running episodes from a queue, with limits, restarts and one retry.

    Args:
        spec: The policy every worker loads (once per worker).
        n: Worker processes.
        limits: Per-episode time, per-call time and memory limits.
        notify: Called with a line for each worker that died or was stopped.
    """

    def __init__(self, spec, n: int, limits: Limits, notify: Callable[[str], None] | None = None) -> None:
        self.spec, self.n, self.limits = spec, max(1, n), limits
        self.notify = notify or (lambda line: None)
        self.ctx = get_context("fork")
        self.workers: list[_Worker] = []
        self.restarts = 0

    def _spawn(self) -> _Worker:
        parent, child = self.ctx.Pipe()
        clock = self.ctx.Value("d", 0.0, lock=False)
        proc = self.ctx.Process(target=_worker_main, args=(child, self.spec, self.limits, clock), daemon=True)
        proc.start()
        child.close()
        return _Worker(proc, parent, clock)

    def _replace(self, w: _Worker) -> _Worker:
        if w.proc.is_alive():
            w.proc.kill()
        w.proc.join(5)
        w.conn.close()
        self.restarts += 1
        fresh = self._spawn()
        self.workers[self.workers.index(w)] = fresh
        return fresh

    def run(self, jobs: list[tuple], on_result: Callable[[int, dict[str, Any]], None]) -> None:
        """Run every job (the arguments of ``run_episode`` after the policy); ``on_result(index, result)``
        is called in the caller's process as each episode ends, in completion order."""
        from agents.evaluation.runner import episode_error

        queue = deque(range(len(jobs)))
        attempts: dict[int, int] = {}
        self.workers = [self._spawn() for _ in range(min(self.n, len(jobs)))]
        try:
            while queue or any(w.job is not None for w in self.workers):
                for w in self.workers:
                    if w.job is None and queue:
                        w.job = queue.popleft()
                        w.started = time.monotonic()
                        w.conn.send((w.job, jobs[w.job]))
                busy = [w for w in self.workers if w.job is not None]
                ready = set(wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout=POLL_SECONDS))
                now = time.monotonic()
                for w in busy:
                    if w.conn in ready:
                        try:
                            job_id, result = w.conn.recv()
                        except (EOFError, OSError):
                            pass  # died while sending: handled below as a death
                        else:
                            w.job = None
                            on_result(job_id, result)
                            continue
                    job = jobs[w.job]
                    where = f"eval worker (pid {w.proc.pid}) running {job[0]} / {job[1]} / seed {job[2]}"
                    reason = None
                    call_started = w.clock.value
                    if call_started and time.time() - call_started > self.limits.call_seconds:
                        reason = f"a policy call ran past the {self.limits.call_seconds:g} s limit (call_seconds)"
                    elif now - w.started > self.limits.episode_seconds:
                        reason = f"the episode ran past the {self.limits.episode_seconds:g} s limit (episode_seconds)"
                    if reason is not None:
                        self.notify(f"{where}: {reason}; stopped it, the episode fails")
                        job_id = w.job
                        self._replace(w)
                        on_result(job_id, episode_error(job, reason))
                        continue
                    if w.proc.sentinel in ready or not w.proc.is_alive():
                        w.proc.join(1)
                        died = exit_reason(w.proc.exitcode)
                        job_id = w.job
                        attempts[job_id] = attempts.get(job_id, 0) + 1
                        self._replace(w)
                        if attempts[job_id] == 1:
                            self.notify(f"{where} died ({died}); started a fresh worker and retrying the episode once")
                            queue.appendleft(job_id)
                        else:
                            self.notify(f"{where} died again ({died}); the episode fails")
                            on_result(job_id, episode_error(job, f"the eval worker died twice running it ({died})"))
        finally:
            self.close()

    def close(self) -> None:
        for w in self.workers:
            try:
                if w.job is None and w.proc.is_alive():
                    w.conn.send(None)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 2.0
        for w in self.workers:
            if w.job is not None:
                w.proc.kill()
            w.proc.join(max(0.0, deadline - time.monotonic()))
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join(1)
            w.conn.close()
        self.workers = []
