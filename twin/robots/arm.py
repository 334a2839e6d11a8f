"""A 7-joint arm with a tool, controlled in joint space or by end-effector deltas (IK).

The control code is the same for every arm; what differs between models (the URDF, joint limits,
a rest posture for the redundant elbow, motor torques, where the tool mounts, the reach) is an
``ArmSpec`` in the model's own module (``twin.robots.panda``, ``twin.robots.iiwa``).
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import re
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from operator import mul
from pathlib import Path

import numpy as np
import pybullet as pb
import pybullet_data
from scipy.linalg.lapack import dgels

from twin.layout import Robot as RobotConfig
from twin.tools import TOOLS
from twin.world import World

DOWN = (1.0, 0.0, 0.0, 0.0)  # tool z axis pointing at the floor
N_ARM = 7
DAMPING = 0.01  # damping l of the least-squares IK step
NULL_GAIN = 0.2  # fraction of the way back to the rest posture the null-space pull asks for per step
_ORIGIN = [0.0, 0.0, 0.0]


@dataclass(frozen=True)
class ArmSpec:
    """Everything model-specific about an arm."""

    model: str
    """The layout's ``model`` name."""
    title: str
    urdf: Callable[[str], str]
    """The URDF (a pybullet_data path or a file) of the arm carrying a tool, by tool name."""
    lower: tuple[float, ...]
    """Arm joint lower limits, rad."""
    upper: tuple[float, ...]
    rest: tuple[float, ...]
    """A comfortable posture, tool down, that the IK's null space pulls the elbow towards, rad."""
    max_force: tuple[float, ...]
    """Motor torque limits of the arm joints, N m."""
    gains: tuple[float, ...]
    """Position gains of the arm joints' motors."""
    wrist_joint: str
    """The flange-to-tool joint carrying the wrist force-torque sensor."""
    shoulder_height: float
    """Metres from the base to the shoulder (the second joint's axis)."""
    reach: float
    """Metres from the shoulder to the farthest point ``wrist_drop`` above the tool centre point,
    tool pointing down."""
    min_reach: float = 0.0
    """Metres from the shoulder to the nearest such point: the elbow's joint limit stops the arm
    folding closer."""
    wrist_drop: float = 0.0
    """Metres from the wrist centre down to the tool centre point with the tool pointing down; 0
    makes ``reach`` a plain sphere around the shoulder."""
    wrist_out: float = 0.0
    """Metres the tool centre point lies beyond the wrist centre, away from the base, with the tool
    pointing down (the Panda's flange is offset from its last axis)."""
    home_forward: float = 0.45
    """Home: the tool pointing down this far in front of the base (m) ..."""
    home_up: float = 0.3
    """... and this high above it (m)."""


def write_urdf(name: str, text: str) -> str:
    """Write a derived URDF to the temp folder, named by its content's hash (so processes and
    versions never overwrite each other's) and atomically; returns its path."""
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    out = Path(tempfile.gettempdir()) / f"factory_twin_{name}_{digest}.urdf"
    if not out.exists():
        tmp = out.with_suffix(f".{os.getpid()}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(text)
        tmp.replace(out)
    return str(out)


ROBOT_MESHES = ("visual", "collision")
"""How an arm looks to the cameras: its model's detailed ``visual`` meshes, or its ``collision``
meshes in their place (Panda: about 20 times fewer triangles, which the CPU renderer draws about 10
times faster). Only what cameras see changes: the links' collision shapes and inertia are the same."""


@functools.cache
def collision_look(urdf: str) -> str:
    """``urdf`` (a pybullet_data path or a file) with each link's visual mesh replaced by its
    collision mesh where the model has one under ``meshes/collision/``; written to the temp folder
    (``write_urdf``), its mesh paths made absolute."""
    src = Path(urdf) if Path(urdf).is_absolute() else Path(pybullet_data.getDataPath()) / urdf
    root = src.parent

    def absolute(m: re.Match) -> str:
        path = m.group(1).removeprefix("package://")
        return m.group(0) if Path(path).is_absolute() else f'filename="{(root / path).as_posix()}"'

    text = re.sub(r'filename="([^"]+)"', absolute, src.read_text())

    def swap(m: re.Match) -> str:
        coarse = Path(m.group(1)) / "collision" / f"{m.group(2)}.obj"
        return coarse.as_posix() if coarse.exists() else m.group(0)

    swapped = re.sub(r'([^"]*/meshes)/visual/(\w+)\.obj', swap, text)
    return write_urdf(f"{src.stem}_collision_look", swapped)


class Arm:
    """An arm of one model with its tool.

    Args:
        world: The world to build in.
        name: Unique body name, e.g. ``"panda-0"``.
        config: The layout's robot entry.
        spec: The model's numbers.
    """

    def __init__(self, world: World, name: str, config: RobotConfig, spec: ArmSpec) -> None:
        self.world = world
        self.name = name
        self.config = config
        self.spec = spec
        yaw = math.radians(config.base.yaw)
        base_orn = world.p.getQuaternionFromEuler([0, 0, yaw])
        self._base_rot = np.asarray(world.p.getMatrixFromQuaternion(base_orn)).reshape(3, 3)
        self._base_rot_rows = tuple(tuple(row) for row in self._base_rot.tolist())
        urdf = spec.urdf(config.tool)
        if world.robot_meshes == "collision":
            urdf = collision_look(urdf)
        self.id = world.load_urdf(name, urdf, config.base.position, base_orn, fixed_base=True)
        p = world.p
        joints = {}
        for j in range(p.getNumJoints(self.id)):
            info = p.getJointInfo(self.id, j)
            joints[info[1].decode()] = j
            joints[info[12].decode()] = j  # a link's index is its parent joint's
            p.changeDynamics(self.id, j, linearDamping=0.0, angularDamping=0.0)
        self.arm_joints = list(range(N_ARM))
        self.tool = TOOLS[config.tool](self, joints)
        self.tool_links = self.tool.links
        self.ee_link = joints[self.tool.tcp_link_name]
        self.wrist_joint = joints[spec.wrist_joint]
        self._ft_on = False  # the wrist sensor is switched on at the first reading
        self._lower, self._upper, self._rest = list(spec.lower), list(spec.upper), list(spec.rest)
        self._max_force, self._gains = list(spec.max_force), list(spec.gains)
        n_tool = len(self.tool.joints)
        n_ik = N_ARM + n_tool
        self._movable = self.arm_joints + list(self.tool.joints)
        self._zeros = [0.0] * n_ik
        # The stacked system [J; l I]: the l I rows are written once, the Jacobian rows each step
        # (into Fortran order, as LAPACK takes it, so that no conversion is made per call).
        self._stacked = np.zeros((6 + n_ik, n_ik), order="F")
        self._stacked[6:] = DAMPING * np.eye(n_ik)
        self._tool_rhs = (0.0,) * n_tool
        pad = [0.0] * n_tool
        opened = [self.tool.open_position] * n_tool
        self._ik_kwargs = dict(
            lowerLimits=self._lower + pad,
            upperLimits=self._upper + opened,
            jointRanges=[u - lo for u, lo in zip(self._upper, self._lower, strict=True)] + opened,
            restPoses=self._rest + opened,
            maxNumIterations=8,  # small steps from the current posture converge fast
            residualThreshold=1e-4,
        )
        self.base_position = np.asarray(config.base.position, dtype=float)
        fwd = np.array([math.cos(yaw), math.sin(yaw), 0.0])
        self.home_ee = self.base_position + spec.home_forward * fwd + np.array([0.0, 0.0, spec.home_up])
        self.home_q = np.asarray(config.home, dtype=float) if config.home is not None else self._solve_home()
        self.reset()

    # -- episode ----------------------------------------------------------------------------

    def _solve_home(self) -> np.ndarray:
        p = self.world.p
        for j, q in zip(self.arm_joints, self._rest, strict=True):
            p.resetJointState(self.id, j, q)
        for _ in range(30):  # iterate IK on the real kinematics until the posture converges
            q = self._ik(self.home_ee)
            for j in self.arm_joints:
                p.resetJointState(self.id, j, q[j])
        return np.asarray(q, dtype=float)

    def reset(self) -> None:
        """Home posture, zero velocity, tool open, controller targets cleared."""
        p = self.world.p
        for j in self.arm_joints:
            p.resetJointState(self.id, j, self.home_q[j], 0.0)
        self._ee_cache: tuple | None = None
        self._joint_cache: tuple | None = None
        self._reset_at = self.world.steps
        self.tool.reset()
        self.gripping: int | None = None
        """The part the tool grips after the last control step (both fingers on it while closed, or
        sealed by suction), or None; set by the twin."""
        self.energy = 0.0
        self._gains = list(self.spec.gains)
        self._q_target = self.home_q.tolist()
        self._send_arm(self._q_target)
        self.command_tool(close=False)

    # -- control ----------------------------------------------------------------------------

    def _ik(self, position: np.ndarray) -> np.ndarray:
        """Iterative IK to convergence (used once, for the home posture)."""
        q = self.world.p.calculateInverseKinematics(self.id, self.ee_link, list(position), DOWN, **self._ik_kwargs)
        return np.asarray(q[:N_ARM], dtype=float)

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
        # All joint columns, the tool's too: they do not move the tool centre point, so their
        # columns are zero, and their rows of l I hold them still.
        lin, ang = self.world.p.calculateJacobian(self.id, self.ee_link, _ORIGIN, q_all, self._zeros, self._zeros)
        pos, _, (qx, qy, qz, qw) = self._ee()
        # Error in the world frame: position, and orientation as 0.5 * sum_i(axis i x DOWN axis i),
        # which for DOWN (a half turn about x) and the tool quaternion (x, y, z, w) comes to
        # (2xw, 2xz, -2xy); then rotated into the base frame. Small vectors stay Python floats: at
        # this size numpy's per-call cost dominates.
        ex, ey, ez = position[0] - pos[0], position[1] - pos[1], position[2] - pos[2]
        rx, ry, rz = 2.0 * qx * qw, 2.0 * qx * qz, -2.0 * qx * qy
        (a, b, c), (d, e, f), (g, h, i) = self._base_rot_rows  # rows of the base rotation R
        rest = self._rest
        rhs = (
            a * ex + d * ey + g * ez,
            b * ex + e * ey + h * ez,
            c * ex + f * ey + i * ez,
            a * rx + d * ry + g * rz,
            b * rx + e * ry + h * rz,
            c * rx + f * ry + i * rz,
            *[DAMPING * NULL_GAIN * (r - qi) for qi, r in zip(q_all, rest, strict=False)],  # l z, arm
            *self._tool_rhs,  # l z, tool joints: no pull
        )
        stacked = self._stacked
        stacked[:3] = lin
        stacked[3:6] = ang
        _, x, info = dgels(stacked, rhs)  # it works on a copy: the l I rows stay
        if info != 0:  # [J; l I] has full column rank for any l > 0
            raise RuntimeError(f"LAPACK dgels failed in the IK step (info={info})")
        return [qi + dq for qi, dq, _ in zip(q_all, x.tolist(), rest, strict=False)]

    def _send_arm(self, q: list[float]) -> None:
        self.world.p.setJointMotorControlArray(
            self.id,
            self.arm_joints,
            pb.POSITION_CONTROL,
            targetPositions=q,
            forces=self._max_force,
            positionGains=self._gains,
        )

    @property
    def q_target(self) -> np.ndarray:
        """The arm joints' current position targets."""
        return np.array(self._q_target)

    def set_joint_targets(self, q) -> None:
        """Position-control the seven arm joints to ``q`` (clipped to the joint limits)."""
        values = q if isinstance(q, list) else np.asarray(q, dtype=float).tolist()
        if len(values) != N_ARM:
            raise ValueError(f"expected {N_ARM} arm joint targets, got {len(values)}")
        clipped = [lo if v < lo else hi if v > hi else v for v, lo, hi in zip(values, self._lower, self._upper)]  # noqa: B905
        self._send_arm(clipped)
        self._q_target = clipped

    def set_speed(self, scale: float) -> None:
        """Track joint targets ``scale`` times as fast as nominal (a drive slowdown; 1 is nominal)."""
        self._gains = [g * scale for g in self.spec.gains]
        self._send_arm(self._q_target)

    def set_base(self, position, yaw_deg: float) -> None:
        """Stand the base at ``position`` (m) turned to ``yaw_deg``, joints as they are (base jitter)."""
        p = self.world.p
        orn = p.getQuaternionFromEuler([0, 0, math.radians(yaw_deg)])
        p.resetBasePositionAndOrientation(self.id, list(position), orn)
        self._base_rot = np.asarray(p.getMatrixFromQuaternion(orn)).reshape(3, 3)
        self._base_rot_rows = tuple(tuple(row) for row in self._base_rot.tolist())
        shift = np.asarray(position, dtype=float) - self.base_position
        self.base_position = np.asarray(position, dtype=float)
        self.home_ee = self.home_ee + shift
        self._ee_cache = self._joint_cache = None

    def move_ee_to(self, position) -> None:
        """Drive the tool centre point towards ``position`` with the tool pointing down."""
        self.set_joint_targets(self._diff_ik(position if isinstance(position, list) else [float(v) for v in position]))

    def command_tool(self, close: bool) -> None:
        """Close/open the gripper, or switch suction on/off."""
        self.tool.command(bool(close))

    # -- state ------------------------------------------------------------------------------

    @property
    def tool_active(self) -> bool:
        """Whether the gripper is closed or the suction on."""
        return self.tool.active

    @property
    def tool_switched_s(self) -> float:
        """Seconds since the tool was last told to close or open (on or off): how long its
        fingers have had to close on a part, or to let it go (infinite when it has not been
        switched since the reset)."""
        if self.tool.switched_at is None:
            return math.inf
        return (self.world.steps - self.tool.switched_at) * self.world.control_dt

    @property
    def held_part(self) -> int | None:
        """The part a suction seal holds (a gripper's grasp is friction, read by ``holding``)."""
        return self.tool.held_part

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

    def ee_orientation(self) -> tuple[float, float, float, float]:
        """Tool orientation quaternion (x, y, z, w), world frame."""
        return self._ee()[2]

    def _joints(self) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
        """Positions, velocities and applied torques of the IK joints (arm, then tool), cached per step."""
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
        return np.asarray(q[:N_ARM]), np.asarray(dq[:N_ARM]), np.asarray(tau[:N_ARM])

    def wrist_wrench(self) -> tuple[float, float, float, float, float, float]:
        """Force (N) and torque (N m) at the wrist, world frame: PyBullet's joint force-torque
        sensor on the flange-to-tool joint (it includes the weight of the tool and what it holds).
        The sensor is switched on at the first call, which reads zeros."""
        p = self.world.p
        if not self._ft_on:
            p.enableJointForceTorqueSensor(self.id, self.wrist_joint, True)
            self._ft_on = True
            return (0.0,) * 6
        if self.world.steps == self._reset_at:
            return (0.0,) * 6  # no step since the reset: the sensor still holds the last episode's reading
        fx, fy, fz, mx, my, mz = p.getJointState(self.id, self.wrist_joint)[2]
        # The sensor reads in the tool's root link frame, which every tool keeps parallel to its
        # tool centre point's frame (whose orientation is read once per step anyway).
        m = p.getMatrixFromQuaternion(self._ee()[2])
        rot = ((m[0], m[1], m[2]), (m[3], m[4], m[5]), (m[6], m[7], m[8]))
        f = tuple(r[0] * fx + r[1] * fy + r[2] * fz for r in rot)
        t = tuple(r[0] * mx + r[1] * my + r[2] * mz for r in rot)
        return (*f, *t)

    @property
    def tool_mass(self) -> float:
        """Kilograms below the wrist force-torque sensor (the tool and its mount), from the model."""
        if getattr(self, "_tool_mass", None) is None:
            p = self.world.p
            parents = {j: p.getJointInfo(self.id, j)[16] for j in range(p.getNumJoints(self.id))}

            def below(j: int) -> bool:
                while j != -1:
                    if j == self.wrist_joint:
                        return True
                    j = parents[j]
                return False

            self._tool_mass = sum(p.getDynamicsInfo(self.id, j)[0] for j in parents if below(j))
        return self._tool_mass

    def finger_width(self) -> float:
        """Metres between the gripper's fingers (0 for a suction cup)."""
        if not self.tool.joints:
            return 0.0
        q = self._joints()[0]
        return q[N_ARM] + q[N_ARM + 1]

    def update(self, dt: float, tool_contacts: dict[int, list]) -> None:
        """After a control step: meter energy and let the tool grip or let go.

        Args:
            dt: Control period in seconds.
            tool_contacts: Contact points of the tool links, by the other body's id.
        """
        _, dq, tau = self._joints()
        self.energy += sum(map(abs, map(mul, tau[:N_ARM], dq))) * dt  # arm joints: |torque x speed|
        self.tool.update(tool_contacts)

    def release(self) -> None:
        """Let go of a part held by suction (a gripper lets go by opening)."""
        self.tool.release()

    def holding(self, tool_contacts: dict[int, list]) -> int | None:
        """Id of the part the tool holds, or None."""
        return self.tool.holding(tool_contacts)
