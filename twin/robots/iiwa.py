"""The KUKA LBR iiwa 14 R820, from pybullet_data: all of its numbers.

pybullet_data's iiwa has no tool, so the tool is mounted on its flange (``lbr_iiwa_link_7``):
the Franka hand for ``parallel_gripper``, a cup on a stem for ``suction``. Both put the tool
centre point 0.105 m from the flange face, as on the Panda.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import pybullet_data

from twin.robots.arm import ArmSpec, write_urdf
from twin.tools import parallel_gripper, suction

FLANGE = 0.045
"""Metres from the last joint's frame to the flange face, where a tool mounts. The tool is turned
half a turn about the flange axis, so that joint 7 sits mid-range when the tool points down with
its x axis along the base's."""


@functools.cache
def _urdf(tool: str) -> str:
    src = Path(pybullet_data.getDataPath()) / "kuka_iiwa" / "model.urdf"
    text = src.read_text()
    arm = text[: text.rindex("</robot>")].replace('filename="meshes/', f'filename="{src.parent.as_posix()}/meshes/')
    if tool == "parallel_gripper":
        mount = parallel_gripper.fragment("lbr_iiwa_link_7", (0.0, 0.0, FLANGE), (0.0, 0.0, math.pi))
    else:
        mount = suction.fragment("lbr_iiwa_link_7", cup_z=FLANGE + 0.08, stem=0.055, yaw=math.pi)
    return write_urdf(f"iiwa_{tool}", arm + mount + "\n</robot>\n")


SPEC = ArmSpec(
    model="iiwa",
    title="KUKA LBR iiwa 14 R820",
    urdf=_urdf,
    lower=(-2.9671, -2.0944, -2.9671, -2.0944, -2.9671, -2.0944, -3.0543),
    upper=(2.9671, 2.0944, 2.9671, 2.0944, 2.9671, 2.0944, 3.0543),
    rest=(0.0, 0.30, 0.0, -1.885, 0.0, 0.96, 0.0),  # elbow up, tool down 0.45 m out, 0.3 m up
    max_force=(320.0, 320.0, 176.0, 176.0, 110.0, 40.0, 40.0),
    gains=(0.3,) * 7,
    wrist_joint="tool_mount",
    shoulder_height=0.36,
    reach=0.80,  # of 0.82 m from the shoulder to the wrist centre, fully stretched
    min_reach=0.43,  # 0.41 m with the elbow folded to its 120 degree limit
    wrist_drop=0.231,  # wrist centre to flange 0.126 m, flange to tool centre point 0.105 m
)
