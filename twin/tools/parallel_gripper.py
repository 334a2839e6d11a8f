"""The parallel-jaw gripper: the Franka hand from pybullet_data's Panda.

Its fingers are position-controlled with a force limit, so a part is held only by finger
friction. On the Panda the hand comes with the arm's own URDF; on another arm the same hand
(its links, meshes and joints, cut from that URDF) is mounted on the flange.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pybullet as pb
import pybullet_data

FINGER_OPEN = 0.04
"""Metres each finger travels from closed to open."""
FINGER_JOINT_NAMES = ("panda_finger_joint1", "panda_finger_joint2")
TCP_LINK_NAME = "panda_grasptarget"
"""The tool centre point: between the fingertips, 0.105 m from the hand's mounting face."""
ROOT_LINK_NAME = "panda_hand"
FINGER_FRICTION = 1.5


@functools.cache
def fragment(parent_link: str, xyz: tuple[float, float, float], rpy: tuple[float, float, float]) -> str:
    """URDF text for the hand, mounted on ``parent_link`` by a fixed joint named ``tool_mount``."""
    src = Path(pybullet_data.getDataPath()) / "franka_panda" / "panda.urdf"
    text = src.read_text()
    hand = text[text.index(f'<link name="{ROOT_LINK_NAME}">') : text.rindex("</robot>")]
    hand = hand.replace("package://meshes/", (src.parent / "meshes").as_posix() + "/")
    mount = (
        f'<joint name="tool_mount" type="fixed"><parent link="{parent_link}"/><child link="{ROOT_LINK_NAME}"/>'
        f'<origin xyz="{" ".join(map(str, xyz))}" rpy="{" ".join(map(str, rpy))}"/></joint>\n'
    )
    return mount + hand


class ParallelGripper:
    """The hand's runtime side, once the arm carrying it is loaded.

    Args:
        arm: The arm (``twin.robots.Arm``) whose body carries the hand.
        joints: Joint (= child link) index by name in the arm's body.
    """

    kind = "parallel_gripper"
    tcp_link_name = TCP_LINK_NAME
    open_position = FINGER_OPEN

    def __init__(self, arm, joints: dict[str, int]) -> None:
        self.arm = arm
        self.fingers = [joints[n] for n in FINGER_JOINT_NAMES]
        self.joints = self.fingers
        """The tool's own movable joints (the arm's IK carries them after its seven)."""
        self.links = frozenset(self.fingers)
        """The links that touch parts."""
        p = arm.world.p
        for j in self.fingers:
            p.changeDynamics(arm.id, j, lateralFriction=FINGER_FRICTION, spinningFriction=0.002, frictionAnchor=1)
        if arm.config.coupled_fingers:  # one drive for both fingers, as on the real hand
            gear = p.createConstraint(
                arm.id, self.fingers[0], arm.id, self.fingers[1], pb.JOINT_GEAR, [1, 0, 0], [0, 0, 0], [0, 0, 0]
            )
            p.changeConstraint(gear, gearRatio=-1, erp=0.1, maxForce=200)
        self.reset()

    def set_grip(self, scale: float) -> None:
        """Finger friction at ``scale`` times nominal (worn or oily pads; 1 is nominal)."""
        for j in self.fingers:
            self.arm.world.p.changeDynamics(self.arm.id, j, lateralFriction=FINGER_FRICTION * scale)

    def reset(self) -> None:
        self.set_grip(1.0)
        for j in self.fingers:
            self.arm.world.p.resetJointState(self.arm.id, j, FINGER_OPEN, 0.0)
        self.closed = False
        self._commanded = False
        self.switched_at: int | None = None
        """The control step (``World.steps``) at which the fingers were last told to close or open; None
        after a reset (open and at rest, as if switched long ago)."""

    @property
    def active(self) -> bool:
        return self.closed

    def command(self, close: bool) -> None:
        if close == self.closed and self._commanded:
            return  # the finger motors keep their last target
        if close != self.closed:
            self.switched_at = self.arm.world.steps
        self.closed, self._commanded = close, True
        target = 0.0 if close else FINGER_OPEN
        self.arm.world.p.setJointMotorControlArray(
            self.arm.id,
            self.fingers,
            pb.POSITION_CONTROL,
            targetPositions=[target, target],
            forces=[self.arm.config.grip_force] * 2,
        )

    def update(self, tool_contacts: dict[int, list]) -> None:
        """Nothing to do: friction alone holds a part."""

    def holding(self, tool_contacts: dict[int, list]) -> int | None:
        if not self.closed:
            return None
        for body, pts in tool_contacts.items():
            if {pt[3] for pt in pts} >= self.links:  # both fingers on the same part
                return body
        return None

    def release(self) -> None:
        """Nothing to let go of but the fingers' grip, which opening them does."""

    @property
    def held_part(self) -> int | None:
        return None
