"""The Franka Emika Panda, from pybullet_data: all of its numbers.

With the ``parallel_gripper`` tool it is pybullet_data's URDF as it comes (arm and Franka hand).
With ``suction`` the hand's fingers are replaced by a cup (``twin.tools.suction``).
"""

from __future__ import annotations

import functools
from pathlib import Path

import pybullet_data

from twin.robots.arm import ArmSpec, write_urdf
from twin.tools import suction


@functools.cache
def _suction_urdf() -> str:
    """The Panda with a suction cup in place of the hand's fingers."""
    src = Path(pybullet_data.getDataPath()) / "franka_panda" / "panda.urdf"
    text = src.read_text()
    cut = text.index('<link name="panda_leftfinger">')
    head = text[:cut].replace("package://meshes/", (src.parent / "meshes").as_posix() + "/")
    return write_urdf("panda_suction", head + suction.fragment("panda_hand", cup_z=0.08) + "</robot>\n")


def _urdf(tool: str) -> str:
    return "franka_panda/panda.urdf" if tool == "parallel_gripper" else _suction_urdf()


SPEC = ArmSpec(
    model="panda",
    title="Franka Emika Panda",
    urdf=_urdf,
    lower=(-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973),
    upper=(2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973),
    rest=(0.0, -0.3, 0.0, -2.2, 0.0, 1.9, 0.785),
    max_force=(87.0,) * 4 + (12.0,) * 3,
    gains=(0.3,) * 7,  # stiff enough to follow a 3 cm target within one 50 ms control step
    wrist_joint="panda_hand_joint",
    shoulder_height=0.333,
    reach=0.70,  # of 0.719 m from the shoulder to the wrist centre, fully stretched
    wrist_drop=0.212,  # wrist centre to flange 0.107 m, flange to tool centre point 0.105 m
    wrist_out=0.088,  # the flange's offset from the last axis
)
