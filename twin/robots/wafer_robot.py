"""An R-theta-Z wafer-handling robot with a thin vacuum paddle: its numbers, URDF and driver.

The robot turns about its column (theta), lifts (z: the height of the paddle's centre) and
extends the paddle radially (r: the distance from the column's axis to the pad centre, where a
held wafer's centre sits). Each axis is a position-controlled motor whose set-point the
controller moves at every physics step, changing the rate linearly over a control step from the
last command to the new one (as a servo drive interpolates): a change of rate of dv in one 50 ms
step accelerates the axis at dv / 0.05 s, so a jerky command shakes the paddle.

The paddle holds a wafer only through friction: its vacuum pads pull a wafer that rests on them
down with ``vacuum_force`` (applied at every physics step while the wafer touches the paddle from
above and the vacuum is on), and the pads' friction then carries it. Accelerate harder than that
friction allows and the wafer slides on the paddle, as on a real one.

``python -m twin.robots.wafer_robot`` rewrites ``assets/robots/wafer_robot.urdf`` from ``SPEC``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from twin.layout import WaferRobot as WaferRobotConfig
from twin.paths import ASSETS_DIR
from twin.world import World

URDF_PATH = ASSETS_DIR / "robots" / "wafer_robot.urdf"
SLACK = 0.02
"""Metres the URDF's joint limits lie beyond the controller's range: the controller never drives
an axis into its limit, whose constraint would carry its impulses from one episode to the next."""


@dataclass(frozen=True)
class WaferRobotSpec:
    title: str = "R-theta-Z wafer-handling robot with a vacuum paddle"
    column_radius: float = 0.12
    column_height: float = 0.45
    paddle_thickness: float = 0.003
    """Metres."""
    paddle_width: float = 0.12
    paddle_tip: float = 0.09
    """Metres the paddle reaches beyond its pad centre."""
    paddle_tail: float = 0.5
    """Metres the blade runs back from the pad centre into the arm."""
    pad_size: tuple[float, float] = (0.06, 0.06)
    min_reach: float = 0.3
    """Metres from the axis to the pad centre, fully retracted ..."""
    max_reach: float = 0.75
    """... and fully extended."""
    z_min: float = 0.5
    """Lowest and highest paddle centre above the floor, metres."""
    z_max: float = 1.1
    max_rates: tuple[float, float, float] = (2.0, 0.5, 0.1)
    """Top speeds of theta (rad/s), r (m/s) and z (m/s): a full action."""
    forces: tuple[float, float, float] = (400.0, 300.0, 600.0)
    """Motor limits: N m for theta, N for r and z."""
    paddle_mass: float = 0.4


SPEC = WaferRobotSpec()


def urdf(spec: WaferRobotSpec = SPEC) -> str:
    """The robot's URDF, generated from ``spec``."""
    s = spec
    grey, dark, pad = "0.82 0.84 0.86 1", "0.3 0.32 0.35 1", "0.15 0.15 0.15 1"

    def inertial(m: float) -> str:
        i = m * 0.01
        return (
            f'<inertial><mass value="{m}"/><inertia ixx="{i}" ixy="0" ixz="0" iyy="{i}" iyz="0" izz="{i}"/></inertial>'
        )

    def box(size, xyz, rgba, collide):
        sz = " ".join(f"{v:.5g}" for v in size)
        at = " ".join(f"{v:.5g}" for v in xyz)
        geo = f'<origin xyz="{at}"/><geometry><box size="{sz}"/></geometry>'
        vis = f'<visual>{geo}<material name="c{rgba.replace(" ", "")}"><color rgba="{rgba}"/></material></visual>'
        return vis + (f"<collision>{geo}</collision>" if collide else "")

    blade_len = s.paddle_tip + s.paddle_tail
    blade_x = (s.paddle_tip - s.paddle_tail) / 2
    column = (
        f'<visual><origin xyz="0 0 {s.column_height / 2}"/><geometry><cylinder radius="{s.column_radius}" '
        f'length="{s.column_height}"/></geometry><material name="col"><color rgba="{grey}"/></material></visual>'
        f'<collision><origin xyz="0 0 {s.column_height / 2}"/><geometry><cylinder radius="{s.column_radius}" '
        f'length="{s.column_height}"/></geometry></collision>'
    )
    links = [
        f'<link name="base">{inertial(50.0)}{column}</link>',
        f'<link name="turret">{inertial(5.0)}{box((0.3, 0.2, 0.04), (0.0, 0, s.column_height + 0.02), dark, False)}</link>',
        f'<link name="arm">{inertial(2.0)}{box((0.2, 0.12, 0.05), (0.05, 0, -0.03), grey, False)}</link>',
        f'<link name="paddle">{inertial(s.paddle_mass)}'
        f"{box((blade_len, s.paddle_width, s.paddle_thickness), (blade_x, 0, 0), '0.7 0.72 0.75 1', True)}"
        f"{box((*s.pad_size, 0.0004), (0, 0, s.paddle_thickness / 2 + 0.0002), pad, False)}</link>",
    ]
    joints = [
        '<joint name="theta" type="revolute"><parent link="base"/><child link="turret"/><origin xyz="0 0 0"/>'
        f'<axis xyz="0 0 1"/><limit lower="-6.3" upper="6.3" effort="{s.forces[0]}" velocity="{s.max_rates[0]}"/></joint>',
        '<joint name="lift" type="prismatic"><parent link="turret"/><child link="arm"/><origin xyz="0 0 0"/>'
        f'<axis xyz="0 0 1"/><limit lower="{s.z_min - SLACK}" upper="{s.z_max + SLACK}" effort="{s.forces[2]}" '
        f'velocity="{s.max_rates[2]}"/></joint>',
        '<joint name="extend" type="prismatic"><parent link="arm"/><child link="paddle"/><origin xyz="0 0 0"/>'
        f'<axis xyz="1 0 0"/><limit lower="{s.min_reach - SLACK}" upper="{s.max_reach + SLACK}" effort="{s.forces[1]}" '
        f'velocity="{s.max_rates[1]}"/></joint>',
    ]
    return (
        f'<?xml version="1.0"?>\n<!-- {s.title}: generated by `python -m twin.robots.wafer_robot` from '
        'twin/robots/wafer_robot.py -->\n<robot name="wafer_robot">\n  ' + "\n  ".join(links + joints) + "\n</robot>\n"
    )


class WaferHandler:
    """The layout's wafer robot, built in the world.

    ``command(dtheta, dr, dz)`` sets the axis velocities (rad/s, m/s, m/s) the motors follow
    during the next control step; ``vacuum(on)`` switches the pads. ``hold_step()`` runs before
    every physics step (the twin registers it) and pulls down the wafer the pads touch.
    """

    def __init__(
        self, world: World, name: str, config: WaferRobotConfig, wafer_ids: list[int], spec: WaferRobotSpec = SPEC
    ) -> None:
        self.world, self.name, self.config, self.spec = world, name, config, spec
        p = world.p
        self.id = world.load_urdf(name, URDF_PATH, (*config.position, 0.0), fixed_base=True)
        joints = {p.getJointInfo(self.id, j)[1].decode(): j for j in range(p.getNumJoints(self.id))}
        self.joints = [joints["theta"], joints["extend"], joints["lift"]]
        self.paddle = joints["extend"]  # the paddle link's index is its joint's
        p.changeDynamics(self.id, self.paddle, lateralFriction=config.pad_friction)
        p.changeDynamics(self.id, -1, activationState=p.ACTIVATION_STATE_DISABLE_SLEEPING)
        self.wafer_ids = set(wafer_ids)
        self.home = (0.0, spec.min_reach, (spec.z_min + spec.z_max) / 2)
        self.reset()

    def reset(self, q: tuple[float, float, float] | None = None) -> None:
        p = self.world.p
        self.q_target = list(q if q is not None else self.home)
        for j, v in zip(self.joints, self.q_target, strict=True):
            p.resetJointState(self.id, j, v, 0.0)
        self.rates = [0.0, 0.0, 0.0]
        """The commanded rates (reached by the end of the control step)."""
        self._from = [0.0, 0.0, 0.0]
        self._now = [0.0, 0.0, 0.0]
        self._k = self._n = 1
        self.vacuum_on = False
        self.holding: int | None = None
        self.speed_scale = 1.0
        self.pad_scale = 1.0
        self.set_grip(1.0)
        self._apply()

    def set_grip(self, scale: float, pad_scale: float | None = None) -> None:
        """Vacuum force and pad friction at ``scale`` times nominal (a leak, worn pads: a fault; 1 is
        nominal); ``pad_scale`` also scales the pads' friction (this episode's randomisation)."""
        self.grip = scale
        if pad_scale is not None:
            self.pad_scale = pad_scale
        friction = self.config.pad_friction * scale * self.pad_scale
        self.world.p.changeDynamics(self.id, self.paddle, lateralFriction=friction)

    def command(self, dtheta: float, dr: float, dz: float) -> None:
        s = self.spec
        k = self.speed_scale
        self.rates = [min(max(v, -m * k), m * k) for v, m in zip((dtheta, dr, dz), s.max_rates, strict=True)]

    def vacuum(self, on: bool) -> None:
        self.vacuum_on = bool(on)

    def pre_step(self, dt: float) -> None:
        """Start a control step: the rates go from the last command to the new one over it."""
        self._from = list(self._now)
        self._k, self._n = 0, self.world.substeps

    def _advance(self) -> None:
        s = self.spec
        lo, hi = (-math.inf, s.min_reach, s.z_min), (math.inf, s.max_reach, s.z_max)
        self._k = min(self._k + 1, self._n)
        f, dt = self._k / self._n, self.world.physics_dt
        for k in range(3):
            rate = self._from[k] + (self.rates[k] - self._from[k]) * f
            q = min(max(self.q_target[k] + rate * dt, lo[k]), hi[k])
            self._now[k] = (q - self.q_target[k]) / dt
            self.q_target[k] = q
        self._apply()

    def _apply(self) -> None:
        p = self.world.p
        p.setJointMotorControlArray(
            self.id,
            self.joints,
            p.POSITION_CONTROL,
            targetPositions=self.q_target,
            targetVelocities=self._now,
            forces=[self.spec.forces[0], self.spec.forces[1], self.spec.forces[2]],
            positionGains=[0.3, 0.3, 0.3],
            velocityGains=[1.0, 1.0, 1.0],
        )

    def hold_step(self) -> None:
        """Before a physics step: move the set-points, and let the vacuum pull down the wafer
        resting on the paddle."""
        self._advance()
        self.holding = None
        if not self.vacuum_on:
            return
        p = self.world.p
        for c in p.getContactPoints(bodyA=self.id, linkIndexA=self.paddle):
            if (
                c[2] in self.wafer_ids and c[7][2] < -0.9 and c[8] < 0.0005
            ):  # the normal on the wafer points down: it lies on top
                self.holding = c[2]
                break
        if self.holding is not None:
            f = self.config.vacuum_force * self.grip
            pos, _ = p.getBasePositionAndOrientation(self.holding)
            p.applyExternalForce(self.holding, -1, [0.0, 0.0, -f], pos, p.WORLD_FRAME)
            p.applyExternalForce(self.id, self.paddle, [0.0, 0.0, f], pos, p.WORLD_FRAME)

    def joint_state(self) -> tuple[list[float], list[float]]:
        states = self.world.p.getJointStates(self.id, self.joints)
        return [s[0] for s in states], [s[1] for s in states]

    def pad_pose(self) -> tuple[tuple[float, float, float], float]:
        """The pad centre (m, world) and the paddle's heading (rad)."""
        pos, orn = self.world.p.getLinkState(self.id, self.paddle, computeForwardKinematics=True)[4:6]
        return pos, self.world.p.getEulerFromQuaternion(orn)[2]

    def to_paddle(self, xyz) -> tuple[float, float, float]:
        """A world point in the paddle's frame (x along the paddle, z up), from the pad centre."""
        (px, py, pz), th = self.pad_pose()
        dx, dy = xyz[0] - px, xyz[1] - py
        c, s = math.cos(th), math.sin(th)
        return dx * c + dy * s, -dx * s + dy * c, xyz[2] - pz


if __name__ == "__main__":
    URDF_PATH.write_text(urdf())
    print(f"wrote {URDF_PATH}")
