"""Robot arms with their end-of-arm tools and controllers.

The Franka Emika Panda comes from pybullet_data. Two tools:

* ``parallel_gripper``: the Panda hand. Its fingers are position-controlled with a force limit,
  so a part is held only by finger friction.
* ``suction``: a cup in place of the hand's fingers. Switching suction on grips nothing by
  itself: a seal forms (a fixed constraint with a force limit) only while the cup face is in real
  contact with a part, normal to it. Parts are never moved into the tool.
"""

from __future__ import annotations

import functools
import math
import tempfile
from operator import mul
from pathlib import Path

import numpy as np
import pybullet as pb
import pybullet_data
from scipy.linalg.lapack import dgels

from twin.layout import Robot as RobotConfig
from twin.world import World

DOWN = (1.0, 0.0, 0.0, 0.0)  # tool z axis pointing at the floor
ARM_JOINTS = list(range(7))
FINGER_JOINTS = [9, 10]
PANDA_EE_LINK = 11  # panda_grasptarget, between the fingertips
HAND_JOINT = 8  # panda_hand_joint: the flange-to-hand joint carrying the wrist force-torque sensor
SUCTION_CUP_LINK = 9
SUCTION_TCP_LINK = 10
FINGER_OPEN = 0.04
SHOULDER_HEIGHT = 0.333  # metres from the base to joint 2's axis
REACH = 0.855  # metres from the shoulder to the farthest tool centre point, tool pointing down
# IK null space: joint limits, ranges and a comfortable rest posture (rad)
_LOWER = [-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973]
_UPPER = [2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973]
_REST = [0.0, -0.3, 0.0, -2.2, 0.0, 1.9, 0.785]
_MAX_FORCE = [87.0] * 4 + [12.0] * 3
_REST_ARR = np.asarray(_REST)
_DAMPING = 0.01  # damping l of the least-squares IK step
_NULL_GAIN = 0.2  # fraction of the way back to the rest posture the null-space pull asks for per step
_ORIGIN = [0.0, 0.0, 0.0]
_GAINS = [0.3] * 7  # stiff enough to follow a 3 cm target within one 50 ms control step


@functools.cache
def suction_urdf() -> str:
    """A Panda URDF whose fingers are replaced by a suction cup; derived from pybullet_data's Panda."""
    src = Path(pybullet_data.getDataPath()) / "franka_panda" / "panda.urdf"
    text = src.read_text()
    cut = text.index('<link name="panda_leftfinger">')
    meshes = (src.parent / "meshes").as_posix() + "/"
    head = text[:cut].replace("package://meshes/", meshes)
    cup = """
  <link name="suction_cup">
    <inertial><origin xyz="0 0 0"/><mass value="0.05"/>
      <inertia ixx="1e-5" ixy="0" ixz="0" iyy="1e-5" iyz="0" izz="1e-5"/></inertial>
    <visual><geometry><cylinder radius="0.02" length="0.05"/></geometry>
      <material name="cup"><color rgba="0.15 0.15 0.15 1"/></material></visual>
    <collision><geometry><cylinder radius="0.02" length="0.05"/></geometry></collision>
  </link>
  <joint name="suction_cup_joint" type="fixed">
    <parent link="panda_hand"/><child link="suction_cup"/><origin xyz="0 0 0.08" rpy="0 0 0"/>
  </joint>
  <link name="suction_tcp">
    <inertial><mass value="0.0"/><inertia ixx="0" ixy="0" ixz="0" iyy="0" iyz="0" izz="0"/></inertial>
  </link>
  <joint name="suction_tcp_joint" type="fixed">
    <parent link="panda_hand"/><child link="suction_tcp"/><origin xyz="0 0 0.105" rpy="0 0 0"/>
  </joint>
</robot>
"""
    out = Path(tempfile.gettempdir()) / "factory_twin_panda_suction.urdf"
    tmp = out.with_suffix(f".{id(text)}.tmp")
    tmp.write_text(head + cup)
    tmp.replace(out)
    return str(out)


class Panda:
    """A Panda arm with its tool, controlled in joint space or by end-effector deltas (IK).

    Args:
        world: The world to build in.
        name: Unique body name, e.g. ``"panda-0"``.
        config: The layout's robot entry.
    """

    def __init__(self, world: World, name: str, config: RobotConfig) -> None:
        self.world = world
        self.name = name
        self.config = config
        self.tool = config.tool
        yaw = math.radians(config.base.yaw)
        base_orn = world.p.getQuaternionFromEuler([0, 0, yaw])
        self._base_rot = np.asarray(world.p.getMatrixFromQuaternion(base_orn)).reshape(3, 3)
        self._base_rot_rows = tuple(tuple(row) for row in self._base_rot.tolist())
        urdf = "franka_panda/panda.urdf" if self.tool == "parallel_gripper" else suction_urdf()
        self.id = world.load_urdf(name, urdf, config.base.position, base_orn, fixed_base=True)
        p = world.p
        self.ee_link = PANDA_EE_LINK if self.tool == "parallel_gripper" else SUCTION_TCP_LINK
        self.tool_links = set(FINGER_JOINTS) if self.tool == "parallel_gripper" else {SUCTION_CUP_LINK}
        for j in range(p.getNumJoints(self.id)):
            p.changeDynamics(self.id, j, linearDamping=0.0, angularDamping=0.0)
        if self.tool == "parallel_gripper":
            for j in FINGER_JOINTS:
                p.changeDynamics(self.id, j, lateralFriction=1.5, spinningFriction=0.002, frictionAnchor=1)
            if config.coupled_fingers:
                gear = p.createConstraint(
                    self.id, FINGER_JOINTS[0], self.id, FINGER_JOINTS[1], pb.JOINT_GEAR, [1, 0, 0], [0, 0, 0], [0, 0, 0]
                )
                p.changeConstraint(gear, gearRatio=-1, erp=0.1, maxForce=200)
        else:
            p.changeDynamics(self.id, SUCTION_CUP_LINK, lateralFriction=1.0)
        n_ik = 9 if self.tool == "parallel_gripper" else 7
        self._movable = list(range(7)) + (FINGER_JOINTS if n_ik == 9 else [])
        self._zeros = [0.0] * n_ik
        self._damping_rows = tuple(tuple(_DAMPING * (i == j) for j in range(n_ik)) for i in range(n_ik))
        self._finger_rhs = (0.0,) * (n_ik - 7)
        pad = [0.0] * (n_ik - 7)
        self._ik_kwargs = dict(
            lowerLimits=_LOWER + pad,
            upperLimits=_UPPER + [FINGER_OPEN] * len(pad),
            jointRanges=[u - lo for u, lo in zip(_UPPER, _LOWER, strict=True)] + [FINGER_OPEN] * len(pad),
            restPoses=_REST + [FINGER_OPEN] * len(pad),
            maxNumIterations=8,  # small steps from the current posture converge fast
            residualThreshold=1e-4,
        )
        self.base_position = np.asarray(config.base.position, dtype=float)
        # Home: the tool pointing down 0.45 m in front of the base, 0.3 m above it.
        fwd = np.array([math.cos(yaw), math.sin(yaw), 0.0])
        self.home_ee = self.base_position + 0.45 * fwd + np.array([0.0, 0.0, 0.3])
        self.home_q = self._solve_home()
        self.reset()

    # -- episode ----------------------------------------------------------------------------

    def _solve_home(self) -> np.ndarray:
        p = self.world.p
        for j, q in zip(ARM_JOINTS, _REST, strict=True):
            p.resetJointState(self.id, j, q)
        for _ in range(30):  # iterate IK on the real kinematics until the posture converges
            q = self._ik(self.home_ee)
            for j in ARM_JOINTS:
                p.resetJointState(self.id, j, q[j])
        return np.asarray(q, dtype=float)

    def reset(self) -> None:
        """Home posture, zero velocity, tool open, controller targets cleared."""
        p = self.world.p
        for j in ARM_JOINTS:
            p.resetJointState(self.id, j, self.home_q[j], 0.0)
        if self.tool == "parallel_gripper":
            for j in FINGER_JOINTS:
                p.resetJointState(self.id, j, FINGER_OPEN, 0.0)
        self._ee_cache: tuple | None = None
        self._joint_cache: tuple | None = None
        self._reset_at = self.world.steps
        self.held_constraint: int | None = None
        self.held_part: int | None = None
        self.suction_on = False
        self.gripper_closed = False
        self._fingers_commanded = False
        self.energy = 0.0
        self._q_target = self.home_q.tolist()
        self._send_arm(self._q_target)
        self.command_tool(close=False)

    # -- control ----------------------------------------------------------------------------

    def _ik(self, position: np.ndarray) -> np.ndarray:
        """Iterative IK to convergence (used once, for the home posture)."""
        q = self.world.p.calculateInverseKinematics(self.id, self.ee_link, list(position), DOWN, **self._ik_kwargs)
        return np.asarray(q[:7], dtype=float)

    def _diff_ik(self, position: list[float]) -> list[float]:
        """One damped-least-squares step from the current posture towards ``position``, tool down.

        Control steps are small (centimetres), so one linearised step is accurate to a fraction
        of a millimetre, and the loop closes at every control step. A null-space pull ``z``
        keeps the redundant elbow near its rest posture:
        ``dq = z + J^T (J J^T + l^2 I)^-1 (e - J z)``, which equals ``J+ e + (I - J+ J) z``
        with the damped pseudo-inverse ``J+``. It is also the least-squares solution of the
        stacked system ``[J; l I] dq = [e; l z]`` (it minimises ``|J dq - e|^2 + l^2 |dq - z|^2``),
        which one LAPACK call (dgels, a QR solve) takes as it comes, with no products formed
        first. The Jacobian and the error are both in the robot's base frame.
        """
        q_all, _, _ = self._joints()
        # All joint columns, fingers too: they do not move the tool centre point, so their columns
        # are zero, and their rows of l I hold them still.
        lin, ang = self.world.p.calculateJacobian(self.id, self.ee_link, _ORIGIN, q_all, self._zeros, self._zeros)
        pos, _, (qx, qy, qz, qw) = self._ee()
        # Error in the world frame: position, and orientation as 0.5 * sum_i(axis i x DOWN axis i),
        # which for DOWN (a half turn about x) and the tool quaternion (x, y, z, w) comes to
        # (2xw, 2xz, -2xy); then rotated into the base frame. Small vectors stay Python floats: at
        # this size numpy's per-call cost dominates.
        ex, ey, ez = position[0] - pos[0], position[1] - pos[1], position[2] - pos[2]
        rx, ry, rz = 2.0 * qx * qw, 2.0 * qx * qz, -2.0 * qx * qy
        (a, b, c), (d, e, f), (g, h, i) = self._base_rot_rows  # rows of the base rotation R
        rhs = (
            a * ex + d * ey + g * ez,
            b * ex + e * ey + h * ez,
            c * ex + f * ey + i * ez,
            a * rx + d * ry + g * rz,
            b * rx + e * ry + h * rz,
            c * rx + f * ry + i * rz,
            *[_DAMPING * _NULL_GAIN * (r - qi) for qi, r in zip(q_all, _REST, strict=False)],  # l z, arm
            *self._finger_rhs,  # l z, fingers: no pull
        )
        _, x, info = dgels((*lin, *ang, *self._damping_rows), rhs)
        if info != 0:  # [J; l I] has full column rank for any l > 0
            raise RuntimeError(f"LAPACK dgels failed in the IK step (info={info})")
        return [qi + dq for qi, dq, _ in zip(q_all, x.tolist(), _REST, strict=False)]

    def _send_arm(self, q: list[float]) -> None:
        self.world.p.setJointMotorControlArray(
            self.id, ARM_JOINTS, pb.POSITION_CONTROL, targetPositions=q, forces=_MAX_FORCE, positionGains=_GAINS
        )

    @property
    def q_target(self) -> np.ndarray:
        """The arm joints' current position targets."""
        return np.array(self._q_target)

    def set_joint_targets(self, q) -> None:
        """Position-control the seven arm joints to ``q`` (clipped to the joint limits)."""
        values = q if isinstance(q, list) else np.asarray(q, dtype=float).tolist()
        if len(values) != 7:
            raise ValueError(f"expected 7 arm joint targets, got {len(values)}")
        clipped = [lo if v < lo else hi if v > hi else v for v, lo, hi in zip(values, _LOWER, _UPPER)]  # noqa: B905
        self._send_arm(clipped)
        self._q_target = clipped

    def move_ee_to(self, position) -> None:
        """Drive the tool centre point towards ``position`` with the tool pointing down."""
        self.set_joint_targets(self._diff_ik(position if isinstance(position, list) else [float(v) for v in position]))

    def command_tool(self, close: bool) -> None:
        """Close/open the gripper, or switch suction on/off."""
        close = bool(close)
        if self.tool == "parallel_gripper":
            if close == self.gripper_closed and self._fingers_commanded:
                return  # the finger motors keep their last target
            self.gripper_closed, self._fingers_commanded = close, True
            target = 0.0 if close else FINGER_OPEN
            self.world.p.setJointMotorControlArray(
                self.id,
                FINGER_JOINTS,
                pb.POSITION_CONTROL,
                targetPositions=[target, target],
                forces=[self.config.grip_force] * 2,
            )
        else:
            self.suction_on = close
            if not close:
                self.release()

    # -- state ------------------------------------------------------------------------------

    def _ee(self) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
        """Tool centre point position, linear velocity and orientation quaternion, cached per step."""
        c = self._ee_cache
        if c is None or c[0] != self.world.steps:
            s = self.world.p.getLinkState(self.id, self.ee_link, computeLinkVelocity=1)
            c = self._ee_cache = (self.world.steps, s[4], s[6], s[5])
        return c[1], c[2], c[3]

    def ee_xyz(self) -> tuple[float, float, float]:
        """Tool centre point position as Python floats (world frame)."""
        return self._ee()[0]

    def ee_vel_xyz(self) -> tuple[float, float, float]:
        """Tool centre point linear velocity as Python floats (world frame)."""
        return self._ee()[1]

    def _joints(self) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
        """Positions, velocities and applied torques of the IK joints (arm, then fingers), cached per step."""
        c = self._joint_cache
        if c is None or c[0] != self.world.steps:
            q, dq, _, tau = zip(*self.world.p.getJointStates(self.id, self._movable), strict=True)
            c = self._joint_cache = (self.world.steps, q, dq, tau)
        return c[1], c[2], c[3]

    def ee_state(self) -> tuple[np.ndarray, np.ndarray]:
        """Tool centre point position and linear velocity (world frame), as new arrays."""
        pos, vel, _ = self._ee()
        return np.array(pos), np.array(vel)

    def joint_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Arm joint positions, velocities and applied motor torques."""
        q, dq, tau = self._joints()
        return np.asarray(q[:7]), np.asarray(dq[:7]), np.asarray(tau[:7])

    def wrist_wrench(self) -> tuple[float, float, float, float, float, float]:
        """Force (N) and torque (N m) at the wrist, world frame: PyBullet's joint force-torque
        sensor on the flange-to-hand joint (it includes the weight of the hand and what it holds).
        The sensor is switched on at the first call, which reads zeros."""
        p = self.world.p
        if not getattr(self, "_ft_on", False):
            p.enableJointForceTorqueSensor(self.id, HAND_JOINT, True)
            self._ft_on = True
            return (0.0,) * 6
        if self.world.steps == self._reset_at:
            return (0.0,) * 6  # no step since the reset: the sensor still holds the last episode's reading
        fx, fy, fz, mx, my, mz = p.getJointState(self.id, HAND_JOINT)[2]
        m = p.getMatrixFromQuaternion(p.getLinkState(self.id, HAND_JOINT)[5])
        rot = ((m[0], m[1], m[2]), (m[3], m[4], m[5]), (m[6], m[7], m[8]))
        f = tuple(r[0] * fx + r[1] * fy + r[2] * fz for r in rot)
        t = tuple(r[0] * mx + r[1] * my + r[2] * mz for r in rot)
        return (*f, *t)

    def finger_width(self) -> float:
        if self.tool != "parallel_gripper":
            return 0.0
        q = self._joints()[0]
        return q[7] + q[8]

    def update(self, dt: float, tool_contacts: dict[int, list]) -> None:
        """After a control step: meter energy and let a suction seal form or break.

        Args:
            dt: Control period in seconds.
            tool_contacts: Contact points of the tool links, by the other body's id.
        """
        _, dq, tau = self._joints()
        self.energy += sum(map(abs, map(mul, tau[:7], dq))) * dt  # arm joints: |torque x speed|
        if self.tool != "suction":
            return
        if self.held_constraint is not None:
            if self.held_part not in tool_contacts:  # seal lost: the part tore away
                self.release()
            return
        if not self.suction_on:
            return
        m = self.world.p.getMatrixFromQuaternion(self._ee()[2])
        tool_z = (m[2], m[5], m[8])
        for body, pts in tool_contacts.items():
            # A seal needs the cup face flat on the part: the contact normal along the tool axis.
            normals = [abs(float(np.dot(pt[7], tool_z))) for pt in pts if pt[3] == SUCTION_CUP_LINK]
            if normals and max(normals) > math.cos(math.radians(20)):
                self._attach(body)
                return

    def _attach(self, body: int) -> None:
        p = self.world.p
        cup = p.getLinkState(self.id, self.ee_link)
        part_pos, part_orn = p.getBasePositionAndOrientation(body)
        inv_pos, inv_orn = p.invertTransform(cup[4], cup[5])
        rel_pos, rel_orn = p.multiplyTransforms(inv_pos, inv_orn, part_pos, part_orn)
        cid = p.createConstraint(
            self.id,
            self.ee_link,
            body,
            -1,
            pb.JOINT_FIXED,
            [0, 0, 0],
            parentFramePosition=rel_pos,
            childFramePosition=[0, 0, 0],
            parentFrameOrientation=rel_orn,
        )
        p.changeConstraint(cid, maxForce=self.config.suction_force)
        self.held_constraint, self.held_part = cid, body

    def release(self) -> None:
        if self.held_constraint is not None:
            self.world.p.removeConstraint(self.held_constraint)
        self.held_constraint = None
        self.held_part = None

    def holding(self, tool_contacts: dict[int, list]) -> int | None:
        """Id of the part the tool holds, or None."""
        if self.tool == "suction":
            return self.held_part
        if not self.gripper_closed:
            return None
        for body, pts in tool_contacts.items():
            if {pt[3] for pt in pts} >= set(FINGER_JOINTS):  # both fingers on the same part
                return body
        return None
