"""Gymnasium environments on Factory Twin cells.

Importing this package registers every env; ``ENV_IDS`` lists them and ``EXPERTS`` maps each to
its scripted expert class (``EXPERTS[env_id](env)`` gives a callable ``obs -> action``).
"""

from __future__ import annotations

import difflib

import gymnasium as gym

from envs.core import FactoryEnv, Task
from envs.tasks.conveyor_pick import ConveyorPick, ConveyorPickExpert
from envs.tasks.reach import Reach, ReachExpert

_SPECS = {
    "FactoryReach-v0": (Reach, ReachExpert, 50, "Bring the tool to a target above the work table (goal obs for HER)."),
    "ConveyorPick-v0": (
        ConveyorPick,
        ConveyorPickExpert,
        640,
        "Pick parts arriving on a moving conveyor and place them in the bin before the belt's end.",
    ),
}

ENV_IDS: tuple[str, ...] = tuple(_SPECS)
EXPERTS = {env_id: spec[1] for env_id, spec in _SPECS.items()}
DESCRIPTIONS = {env_id: spec[3] for env_id, spec in _SPECS.items()}
TASKS: dict[str, type[Task]] = {env_id: spec[0] for env_id, spec in _SPECS.items()}

for _id, (_task, _expert, _steps, _desc) in _SPECS.items():
    if _id not in gym.registry:
        # The tests run Gymnasium's full check_env on every env and mode, so gym.make skips the
        # passive checker's per-step wrapper.
        gym.register(
            id=_id,
            entry_point="envs.core:FactoryEnv",
            max_episode_steps=_steps,
            kwargs={"task": _task},
            disable_env_checker=True,
        )


class UnknownEnvError(ValueError):
    pass


def check_env_id(env_id: str) -> str:
    """Return ``env_id`` if registered here, else raise naming the closest ids."""
    if env_id in _SPECS:
        return env_id
    close = difflib.get_close_matches(env_id, ENV_IDS, n=3, cutoff=0.4)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownEnvError(f"unknown env id {env_id!r}{hint} (known: {', '.join(ENV_IDS)})")


def make(env_id: str, **kwargs) -> gym.Env:
    """``gym.make`` for this package's ids, with a helpful error for unknown ones."""
    return gym.make(check_env_id(env_id), **kwargs)


__all__ = ["DESCRIPTIONS", "ENV_IDS", "EXPERTS", "FactoryEnv", "Task", "check_env_id", "make"]
