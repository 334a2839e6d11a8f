"""A group of envs stepped in turn: the unit a worker process (or a Ray actor) owns.

The group does what ``gymnasium.vector.SyncVectorEnv`` does for its envs, in the same order, so
a pool of groups gives the transitions a ``SyncVectorEnv`` gives on the same seeds: with
same-step autoreset a finished env is reset within the step that ended it, and its last
observation and info travel as ``final``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

SAME_STEP = gym.vector.AutoresetMode.SAME_STEP
DISABLED = gym.vector.AutoresetMode.DISABLED

Record = tuple[dict[str, Any], tuple[Any, dict[str, Any]] | None]
"""What a step tells about one env beyond obs, reward and flags: its info and, when its episode
ended and it was reset (same-step autoreset), ``(final_obs, final_info)``."""


_MODES = {"same_step": SAME_STEP, "disabled": DISABLED, SAME_STEP.value: SAME_STEP, DISABLED.value: DISABLED}


def autoreset_mode(mode: str | gym.vector.AutoresetMode) -> gym.vector.AutoresetMode:
    """``"same_step"`` / ``"disabled"`` (or Gymnasium's enum) as Gymnasium's enum; others are refused."""
    if isinstance(mode, gym.vector.AutoresetMode):
        mode = mode.value
    if mode not in _MODES:
        raise ValueError(f"autoreset mode {mode!r} is not supported: use 'same_step' or 'disabled'")
    return _MODES[mode]


class EnvGroup:
    """``len(fns)`` envs, stepped one after the other."""

    def __init__(self, fns: Sequence[Callable[[], gym.Env]], mode: gym.vector.AutoresetMode) -> None:
        self.envs: list[gym.Env] = []
        try:
            for fn in fns:
                self.envs.append(fn())
        except BaseException:
            self.close()
            raise
        self.same_step = mode == SAME_STEP

    def reset(
        self, seeds: Sequence[int | None], options: dict[str, Any] | None, mask: Sequence[bool]
    ) -> list[tuple[int, Any, dict[str, Any]]]:
        """Reset the envs where ``mask`` holds; returns ``(index in group, obs, info)`` for each."""
        out = []
        for j, (env, seed, m) in enumerate(zip(self.envs, seeds, mask, strict=True)):
            if m:
                obs, info = env.reset(seed=seed, options=options)
                out.append((j, obs, info))
        return out

    def step(self, actions: np.ndarray, write: Callable[[int, Any, float, bool, bool], None]) -> list[Record]:
        """Step every env with its row of ``actions``; ``write(j, obs, reward, terminated, truncated)``."""
        records: list[Record] = []
        for j, env in enumerate(self.envs):
            obs, reward, terminated, truncated, info = env.step(actions[j].copy())
            final = None
            if self.same_step and (terminated or truncated):
                final = (obs, info)
                obs, info = env.reset()
            write(j, obs, float(reward), bool(terminated), bool(truncated))
            records.append((info, final))
        return records

    def close(self) -> None:
        for env in self.envs:
            with contextlib.suppress(Exception):  # best effort: the process is going away
                env.close()


def single_threaded() -> None:
    """Keep this process's numeric libraries to one thread each.

    Env workers run one per core; a BLAS or OpenMP pool inside each would oversubscribe the
    cores (the IK solve alone called into a multi-threaded BLAS).
    """
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # the env variables above still cover libraries loaded from now on
        pass
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def keep_parents_garbage() -> None:
    """In a forked worker: never garbage-collect what the parent left behind.

    Objects that were unreachable but not yet collected in the parent at fork time (a Ray
    client the parent has shut down, say) would otherwise be collected here, and their
    destructors can wait on threads that only existed in the parent: the worker hangs.
    """
    import gc

    gc.freeze()


def exit_reason(code: int | None) -> str:
    """A worker process's exit code in words ("killed by SIGKILL", "exit status 3")."""
    import signal

    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux), so no worker is orphaned."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def put(obs: Any, i: int, value: Any) -> None:
    """Write one env's observation into row ``i`` of a batch of observations (dicts and tuples too)."""
    if isinstance(obs, dict):
        for k, v in obs.items():
            put(v, i, value[k])
    elif isinstance(obs, tuple):
        for v, x in zip(obs, value, strict=True):
            put(v, i, x)
    else:
        obs[i] = value


def run_command(group: EnvGroup, slot: int, lo: int, command: tuple, arrays: Any) -> tuple:
    """Run one command on a group, writing into ``arrays``' ``_obs``/``_rew``/``_term``/``_trunc``."""
    obs, rew, term, trunc = arrays._obs, arrays._rew, arrays._term, arrays._trunc
    if command[0] == "step":
        act = arrays._act

        def write(j: int, o: Any, r: float, te: bool, tr: bool) -> None:
            i = lo + j
            put(obs, i, o)
            rew[i], term[i], trunc[i] = r, te, tr

        return ("step", slot, group.step(act[lo : lo + len(group.envs)], write))
    _, seeds, options, mask = command
    done = group.reset(seeds, options, mask)
    for j, o, _ in done:
        put(obs, lo + j, o)
        rew[lo + j], term[lo + j], trunc[lo + j] = 0.0, False, False
    return ("reset", slot, [(j, info) for j, _, info in done])
