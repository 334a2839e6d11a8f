"""The suction cup: a vacuum tool whose seal forms only on real contact.

Switching suction on grips nothing by itself: a seal forms (a fixed constraint with a force
limit) only while the cup face is in real contact with a part, normal to it. Parts are never
moved into the tool, and a part pulled harder than the seal holds tears away.
"""

from __future__ import annotations

import math

import pybullet as pb

CUP_LINK_NAME = "suction_cup"
TCP_LINK_NAME = "suction_tcp"
CUP_RADIUS = 0.02
CUP_LENGTH = 0.05
STEM_RADIUS = 0.018
SEAL_ANGLE = math.radians(20)
"""Largest angle between the contact normal and the tool axis at which a seal forms."""
CUP_FRICTION = 1.0


def fragment(parent_link: str, cup_z: float, stem: float = 0.0, yaw: float = 0.0) -> str:
    """URDF text for the cup (centred ``cup_z`` below ``parent_link``'s origin) and its tool centre
    point at the cup face; with ``stem`` > 0 a tube of that length carries the cup from the
    parent link (for an arm with no hand of its own to carry it), turned by ``yaw`` (rad) about
    the tool axis."""
    tcp_z = cup_z + CUP_LENGTH / 2
    cup_parent, z = parent_link, cup_z
    out = ""
    if stem > 0:
        out += f"""
  <link name="suction_stem">
    <inertial><origin xyz="0 0 {stem / 2}"/><mass value="0.2"/>
      <inertia ixx="1e-4" ixy="0" ixz="0" iyy="1e-4" iyz="0" izz="1e-5"/></inertial>
    <visual><origin xyz="0 0 {stem / 2}"/><geometry><cylinder radius="{STEM_RADIUS}" length="{stem}"/></geometry>
      <material name="stem"><color rgba="0.55 0.57 0.6 1"/></material></visual>
    <collision><origin xyz="0 0 {stem / 2}"/><geometry><cylinder radius="{STEM_RADIUS}" length="{stem}"/></geometry>
    </collision>
  </link>
  <joint name="tool_mount" type="fixed">
    <parent link="{parent_link}"/><child link="suction_stem"/><origin xyz="0 0 {cup_z - CUP_LENGTH / 2 - stem}" rpy="0 0 {yaw}"/>
  </joint>"""
        cup_parent, z = "suction_stem", stem + CUP_LENGTH / 2
        tcp_parent, tz = "suction_stem", stem + CUP_LENGTH
    else:
        tcp_parent, tz = parent_link, tcp_z
    out += f"""
  <link name="{CUP_LINK_NAME}">
    <inertial><origin xyz="0 0 0"/><mass value="0.05"/>
      <inertia ixx="1e-5" ixy="0" ixz="0" iyy="1e-5" iyz="0" izz="1e-5"/></inertial>
    <visual><geometry><cylinder radius="{CUP_RADIUS}" length="{CUP_LENGTH}"/></geometry>
      <material name="cup"><color rgba="0.15 0.15 0.15 1"/></material></visual>
    <collision><geometry><cylinder radius="{CUP_RADIUS}" length="{CUP_LENGTH}"/></geometry></collision>
  </link>
  <joint name="suction_cup_joint" type="fixed">
    <parent link="{cup_parent}"/><child link="{CUP_LINK_NAME}"/><origin xyz="0 0 {z}" rpy="0 0 0"/>
  </joint>
  <link name="{TCP_LINK_NAME}">
    <inertial><mass value="0.0"/><inertia ixx="0" ixy="0" ixz="0" iyy="0" iyz="0" izz="0"/></inertial>
  </link>
  <joint name="suction_tcp_joint" type="fixed">
    <parent link="{tcp_parent}"/><child link="{TCP_LINK_NAME}"/><origin xyz="0 0 {tz}" rpy="0 0 0"/>
  </joint>
"""
    return out


class SuctionCup:
    """The cup's runtime side, once the arm carrying it is loaded.

    Args:
        arm: The arm (``twin.robots.Arm``) whose body carries the cup.
        joints: Joint (= child link) index by name in the arm's body.
    """

    kind = "suction"
    tcp_link_name = TCP_LINK_NAME
    open_position = 0.0
    joints: list[int] = []  # nothing on the cup moves

    def __init__(self, arm, joints: dict[str, int]) -> None:
        self.arm = arm
        self.cup = joints[CUP_LINK_NAME]
        self.links = frozenset((self.cup,))
        arm.world.p.changeDynamics(arm.id, self.cup, lateralFriction=CUP_FRICTION)
        self.held_constraint: int | None = None
        self.held_part: int | None = None
        self.grip = 1.0
        self.reset()

    def set_grip(self, scale: float) -> None:
        """Seal force at ``scale`` times nominal (a leak; 1 is nominal)."""
        self.grip = scale
        if self.held_constraint is not None:
            self.arm.world.p.changeConstraint(self.held_constraint, maxForce=self.arm.config.suction_force * scale)

    def reset(self) -> None:
        self.grip = 1.0
        self.release()
        self.on = False
        self.switched_at: int | None = None
        """The control step (``World.steps``) at which the suction was last switched on or off; None
        after a reset (open and at rest, as if switched long ago)."""

    @property
    def active(self) -> bool:
        return self.on

    def command(self, close: bool) -> None:
        if close != self.on:
            self.switched_at = self.arm.world.steps
        self.on = close
        if not close:
            self.release()

    def update(self, tool_contacts: dict[int, list]) -> None:
        """Let a seal form or break after a control step."""
        if self.held_constraint is not None:
            if self.held_part not in tool_contacts:  # seal lost: the part tore away
                self.release()
            return
        if not self.on:
            return
        m = self.arm.world.p.getMatrixFromQuaternion(self.arm.ee_orientation())
        tool_z = (m[2], m[5], m[8])
        for body, pts in tool_contacts.items():
            # A seal needs the cup face flat on the part: the contact normal along the tool axis.
            normals = [abs(sum(a * b for a, b in zip(pt[7], tool_z, strict=True))) for pt in pts if pt[3] == self.cup]
            if normals and max(normals) > math.cos(SEAL_ANGLE):
                self._attach(body)
                return

    def _attach(self, body: int) -> None:
        arm = self.arm
        p = arm.world.p
        cup = p.getLinkState(arm.id, arm.ee_link)
        part_pos, part_orn = p.getBasePositionAndOrientation(body)
        inv_pos, inv_orn = p.invertTransform(cup[4], cup[5])
        rel_pos, rel_orn = p.multiplyTransforms(inv_pos, inv_orn, part_pos, part_orn)
        cid = p.createConstraint(
            arm.id,
            arm.ee_link,
            body,
            -1,
            pb.JOINT_FIXED,
            [0, 0, 0],
            parentFramePosition=rel_pos,
            childFramePosition=[0, 0, 0],
            parentFrameOrientation=rel_orn,
        )
        p.changeConstraint(cid, maxForce=arm.config.suction_force * self.grip)
        self.held_constraint, self.held_part = cid, body

    def release(self) -> None:
        if self.held_constraint is not None:
            self.arm.world.p.removeConstraint(self.held_constraint)
        self.held_constraint = None
        self.held_part = None

    def holding(self, tool_contacts: dict[int, list]) -> int | None:
        return self.held_part
