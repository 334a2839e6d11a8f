"""Gymnasium environments on Factory Twin cells.

Importing this package registers every env; ``ENV_IDS`` lists them and ``EXPERTS`` maps each to
its scripted expert class (``EXPERTS[env_id](env)`` gives a callable ``obs -> action``).
"""

from __future__ import annotations

import difflib
import importlib
import warnings

import gymnasium as gym

from envs.core import FactoryEnv, Task
from envs.tasks.agv_deliver import AGVDeliver, AGVDeliverExpert, AGVDeliverV1, AGVDeliverV2
from envs.tasks.bin_sort import BinSort, BinSortExpert, BinSortV1
from envs.tasks.conveyor_pick import ConveyorPick, ConveyorPickExpert, ConveyorPickV1
from envs.tasks.machine_tend import MachineTend, MachineTendExpert, MachineTendV1
from envs.tasks.peg_insert import CoarsePegInsertExpert, PegInsert, PegInsertExpert, PegInsertV1
from envs.tasks.reach import Reach, ReachExpert
from envs.tasks.wafer_transfer import WaferTransfer, WaferTransferExpert, WaferTransferV1, WaferTransferV2

_SPECS = {
    "FactoryReach-v0": (Reach, ReachExpert, 50, "Bring the tool to a target above the work table (goal obs for HER)."),
    "ConveyorPick-v0": (
        ConveyorPick,
        ConveyorPickExpert,
        640,
        "Pick parts arriving on a moving conveyor and place them in the bin before the belt's end.",
    ),
    "MachineTend-v0": (
        MachineTend,
        MachineTendExpert,
        1200,
        "Load blanks from a tray into two machines and unload the finished parts to the output tray.",
    ),
    "BinSort-v0": (
        BinSort,
        BinSortExpert,
        800,
        "Sort inspected parts off a belt: good ones into the good bin, defective ones into the reject bin.",
    ),
    "PegInsert-v0": (
        PegInsert,
        CoarsePegInsertExpert,
        400,
        "Take the peg from its stand and insert it 3 cm deep into a hole with 1 mm of clearance.",
    ),
    "AGVDeliver-v0": (
        AGVDeliver,
        AGVDeliverExpert,
        1800,
        "Drive an AGV between racks and walking people to carry totes from the pickup to their drop-offs.",
    ),
    "WaferTransfer-v0": (
        WaferTransfer,
        WaferTransferExpert,
        2400,
        "Carry wafers from their cassette slots through the load lock and process chamber and back, touching nothing.",
    ),
    # Version 1: observations that carry what the task needs, rewards that teach, fine actions
    # where contact needs them (each task's docstring says what changed); the -v0 ids stay as they were.
    "ConveyorPick-v1": (
        ConveyorPickV1,
        ConveyorPickExpert,
        640,
        "ConveyorPick with the tool's state observed and rewards that teach (placing pays most).",
    ),
    "MachineTend-v1": (
        MachineTendV1,
        MachineTendExpert,
        1800,
        "MachineTend with the tool's state observed, rewards that teach and 90 s to finish.",
    ),
    "BinSort-v1": (
        BinSortV1,
        BinSortExpert,
        800,
        "BinSort with the tool's state observed and rewards that teach (sorting right pays most).",
    ),
    "PegInsert-v1": (
        PegInsertV1,
        PegInsertExpert,
        400,
        "PegInsert with a tared wrist sensor, 1 cm moves and rewards that teach (a crash costs).",
    ),
    "AGVDeliver-v1": (
        AGVDeliverV1,
        AGVDeliverExpert,
        1800,
        "AGVDeliver with a localised pose, tracked people, the dock to use, and rewards that teach.",
    ),
    "WaferTransfer-v1": (
        WaferTransferV1,
        WaferTransferExpert,
        2400,
        "WaferTransfer with the servo set-points observed, fine rates near stillness, rewards that teach.",
    ),
    # Version 2: what the equipment's own navigation or motion stack hands its controller.
    "AGVDeliver-v2": (
        AGVDeliverV2,
        AGVDeliverExpert,
        1800,
        "AGVDeliver-v1 with the planned path, the docking line, walking zones and people's closest approach.",
    ),
    "WaferTransfer-v2": (
        WaferTransferV2,
        WaferTransferExpert,
        2400,
        "WaferTransfer-v1 with the stations' taught positions as errors from the servo set-points.",
    ),
}

# Skills: each arm task cut down to one part within reach and a short episode (success is that
# part's), for the from-scratch comparisons researchers run first; the task's own knobs and
# scripted expert, a time limit about 1.5 times the expert's episode. `difficulty_curriculum`
# moves from the skill's settings to the production episode (`Task.curriculum_stages`).
SKILLS: dict[str, tuple[str, dict, int, str]] = {
    "ConveyorPickSkill-v1": (
        "ConveyorPick-v1",
        {"parts": 1},
        200,
        "One part arriving within 2 s: pick it off the belt and place it in the bin (expert: 140-151 steps).",
    ),
    "BinSortSkill-v1": (
        "BinSort-v1",
        {"parts": 1},
        200,
        "One inspected part arriving within 2 s: sort it into its bin (expert: 125-151 steps).",
    ),
    "PegInsertSkill-v1": (
        "PegInsert-v1",
        {},
        150,
        "PegInsert-v1's one peg, within a 7.5 s limit (expert: 88-90 steps).",
    ),
    "MachineTendSkill-v1": (
        "MachineTend-v1",
        {"blanks": 1},
        320,
        "One blank: load it into a machine, wait out the cycle, unload it to the output tray (expert: 212-221 steps).",
    ),
}
SKILL_IDS: tuple[str, ...] = tuple(SKILLS)
"""The skill configurations' ids (not in ``ENV_IDS``: the suites and scorecards cover the tasks)."""

ENV_IDS: tuple[str, ...] = tuple(_SPECS)
LATEST_IDS: tuple[str, ...] = tuple(
    max((i for i in _SPECS if i.rsplit("-", 1)[0] == name), key=lambda i: int(i.rsplit("-v", 1)[1]))
    for name in dict.fromkeys(i.rsplit("-", 1)[0] for i in _SPECS)
)
"""The newest version of each task, in ``ENV_IDS`` order (what ``standard-v3`` and ``smoke-v3`` cover)."""
EXPERTS = {env_id: spec[1] for env_id, spec in _SPECS.items()} | {k: _SPECS[v[0]][1] for k, v in SKILLS.items()}
DESCRIPTIONS = {env_id: spec[3] for env_id, spec in _SPECS.items()} | {k: v[3] for k, v in SKILLS.items()}
TASKS: dict[str, type[Task]] = {env_id: spec[0] for env_id, spec in _SPECS.items()} | {
    k: _SPECS[v[0]][0] for k, v in SKILLS.items()
}
ARMS: dict[str, tuple[str, ...]] = {env_id: ("panda", "iiwa") for env_id in _SPECS} | {
    "FactoryReach-v0": ("panda",),
    "AGVDeliver-v0": (),
    "WaferTransfer-v0": (),
    "AGVDeliver-v1": (),
    "WaferTransfer-v1": (),
    "AGVDeliver-v2": (),
    "WaferTransfer-v2": (),
}
"""The arms (``robot=`` models) each env runs with on its bundled layout; the env refuses the others.
The iiwa cannot fold close enough to its base for FactoryReach's near targets (it reaches 91% of
the target box with its tool pointing down). AGVDeliver drives an AGV and WaferTransfer a wafer robot; they take no arm."""
ARMS |= {k: ARMS[v[0]] for k, v in SKILLS.items()}

# The older ids stay registered and unchanged on purpose (existing policies, suites and references
# use them): Gymnasium's "out of date, consider upgrading" warning is not for them.
warnings.filterwarnings(
    "ignore",
    message=r".*The environment (" + "|".join(sorted({i.rsplit("-", 1)[0] for i in _SPECS})) + r")-v\d+ is out of date",
    category=DeprecationWarning,
)

_REGISTRATIONS = [(i, s[2], {"task": s[0]}) for i, s in _SPECS.items()] + [
    (i, steps, {"task": _SPECS[base][0], **knobs}) for i, (base, knobs, steps, _) in SKILLS.items()
]
for _id, _steps, _kwargs in _REGISTRATIONS:
    if _id not in gym.registry:
        # The tests run Gymnasium's full check_env on every env and mode, so gym.make skips the
        # passive checker's per-step wrapper.
        gym.register(
            id=_id,
            entry_point="envs.core:make_env",
            max_episode_steps=_steps,
            kwargs=_kwargs,
            disable_env_checker=True,
        )


class UnknownEnvError(ValueError):
    pass


class NoExpertError(ValueError):
    """The env has no scripted expert (a third-party env)."""


def check_env_id(env_id: str) -> str:
    """Return ``env_id`` if it names an env that can be made, else raise naming the closest ids.

    This package's ids, any id registered with Gymnasium, and Gymnasium's ``module:EnvId`` form
    (``panda_gym:PandaReach-v3``): the module is imported first, as ``gym.make`` does, so it
    registers its envs. The id is returned unchanged, so worker processes import the module too.
    """
    if env_id in _SPECS:
        return env_id
    module, sep, name = env_id.rpartition(":")
    if sep:
        if not module or not name:
            raise UnknownEnvError(f"env id {env_id!r}: expected MODULE:ENV_ID, such as panda_gym:PandaReach-v3")
        try:
            importlib.import_module(module)
        except Exception as exc:  # an import can fail in any way
            raise UnknownEnvError(
                f"env id {env_id!r}: cannot import module {module!r} ({type(exc).__name__}: {exc})"
            ) from None
        if name not in gym.registry:
            close = difflib.get_close_matches(name, list(gym.registry), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(f'{module}:{c}' for c in close)}?" if close else ""
            raise UnknownEnvError(f"env id {env_id!r}: importing {module!r} registered no env {name!r}{hint}")
        return env_id
    if env_id in gym.registry:
        return env_id
    close = difflib.get_close_matches(env_id, [*ENV_IDS, *gym.registry], n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownEnvError(
        f"unknown env id {env_id!r}{hint} (this package's: {', '.join(ENV_IDS)}; "
        "another package's as MODULE:ENV_ID, such as panda_gym:PandaReach-v3)"
    )


def is_factory_env(env_id: str) -> bool:
    """Whether ``env_id`` is one of this package's envs (they have experts, layouts and KPIs)."""
    return env_id in _SPECS


def make_expert(env_id: str, env: gym.Env):
    """The scripted expert of ``env`` (made from ``env_id``): a callable ``obs -> action``."""
    if env_id not in EXPERTS:
        raise NoExpertError(
            f"{env_id} has no scripted expert (experts exist for this package's envs: {', '.join(ENV_IDS)})"
        )
    return EXPERTS[env_id](env)


def make_student_expert(env_id: str, env: gym.Env):
    """The expert a student learning from observations is labelled by: the scripted expert, made
    to decide what the student's observation decides where the task says so (BinSort's sorts by
    the inspection sensor's reading, as the student must, not by the true defect)."""
    expert = make_expert(env_id, env)
    if hasattr(expert, "observable"):
        expert.observable = True
    return expert


def make(env_id: str, **kwargs) -> gym.Env:
    """``gym.make`` with a helpful error for unknown ids (accepts ``module:EnvId``)."""
    return gym.make(check_env_id(env_id), **kwargs)


__all__ = [
    "ARMS",
    "DESCRIPTIONS",
    "ENV_IDS",
    "EXPERTS",
    "LATEST_IDS",
    "FactoryEnv",
    "NoExpertError",
    "Task",
    "UnknownEnvError",
    "check_env_id",
    "is_factory_env",
    "make",
    "make_expert",
]
