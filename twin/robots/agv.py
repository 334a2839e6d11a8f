"""A differential-drive AGV with a powered roller deck: every number about it, its URDF, and the
class that drives it.

Two driven wheels on the centre line and four casters carry a low chassis; on top, a roller deck
(a prismatic link that creeps sideways while it runs, like the belts of ``twin.equipment.conveyor``)
takes a tote on or hands it off over the AGV's left side. Wheels are velocity-controlled motors
with a torque limit and roll on the floor by friction, so the AGV slips, drifts and pushes as a
real one does. Wheel odometry integrates the wheel angles.

``python -m twin.robots.agv`` rewrites ``assets/robots/agv.urdf`` from ``SPEC``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from twin.layout import AGV as AGVConfig
from twin.paths import ASSETS_DIR
from twin.world import World

URDF_PATH = ASSETS_DIR / "robots" / "agv.urdf"


@dataclass(frozen=True)
class AGVSpec:
    title: str = "Roller-deck AGV (differential drive)"
    length: float = 0.9
    """Metres along its heading."""
    width: float = 0.6
    chassis_bottom: float = 0.05
    """Metres between the floor and the chassis."""
    chassis_top: float = 0.31
    chassis_mass: float = 60.0
    """Kilograms."""
    deck_size: tuple[float, float] = (0.84, 0.54)
    """Metres along and across the heading; the deck's top is ``deck_height`` above the floor."""
    deck_height: float = 0.35
    deck_mass: float = 3.0
    deck_force: float = 400.0
    """Newtons the deck's roller drive pushes with."""
    rail_height: float = 0.06
    """Metres the fore and aft rails stand above the deck (they keep a tote from sliding off as the
    AGV brakes); the sides are open for transfers."""
    wheel_radius: float = 0.08
    wheel_width: float = 0.05
    wheel_mass: float = 2.0
    track: float = 0.5
    """Metres between the wheels' contact points."""
    wheel_torque: float = 15.0
    """Newton metres each wheel motor gives at most."""
    wheel_friction: float = 1.0
    caster_radius: float = 0.03
    caster_lift: float = 0.002
    """Metres the casters stand clear of a flat floor, so the driven wheels carry the weight."""
    caster_xy: tuple[float, float] = (0.35, 0.2)
    dock_gap: float = 0.03
    """Metres between a station's dock end and a docked AGV's side."""

    def footprint(self, position, yaw_deg: float) -> tuple[tuple[float, float], tuple[float, float], float]:
        """Its rectangle on the floor at ``position``, heading ``yaw_deg``."""
        return (float(position[0]), float(position[1])), (self.length / 2, self.width / 2), float(yaw_deg)

    def dock_pose(self, station, side: int = 1) -> tuple[float, float, float]:
        """Where an AGV docks beside ``station`` (a layout ``Station``): x, y (m), heading (rad),
        with the station on its left (``side`` 1) or its right (-1)."""
        psi = math.radians(station.yaw)
        out = station.length / 2 + self.dock_gap + self.width / 2
        x, y = station.position[0] + out * math.cos(psi), station.position[1] + out * math.sin(psi)
        return x, y, math.atan2(math.sin(psi + side * math.pi / 2), math.cos(psi + side * math.pi / 2))

    def dock_rect(self, station):
        x, y, heading = self.dock_pose(station)
        return self.footprint((x, y), math.degrees(heading))


SPEC = AGVSpec()


def _box(size, xyz, rgba: str, collide: bool = True) -> str:
    s = " ".join(f"{v:.4g}" for v in size)
    at = " ".join(f"{v:.4g}" for v in xyz)
    geo = f'<origin xyz="{at}"/><geometry><box size="{s}"/></geometry>'
    col = f"<collision>{geo}</collision>" if collide else ""
    return f'<visual>{geo}<material name="m{rgba.replace(" ", "")}"><color rgba="{rgba}"/></material></visual>{col}'


def _inertia(m: float, x: float, y: float, z: float) -> str:
    return (
        f'<inertial><mass value="{m}"/><inertia ixx="{m * (y * y + z * z) / 12:.5g}" ixy="0" ixz="0" '
        f'iyy="{m * (x * x + z * z) / 12:.5g}" iyz="0" izz="{m * (x * x + y * y) / 12:.5g}"/></inertial>'
    )


def urdf(spec: AGVSpec = SPEC) -> str:
    """The AGV's URDF, generated from ``spec``."""
    s = spec
    body, rail, dark = "0.95 0.55 0.1 1", "0.25 0.25 0.27 1", "0.1 0.1 0.1 1"
    h = s.chassis_top - s.chassis_bottom
    zc = (s.chassis_top + s.chassis_bottom) / 2
    rail_x = s.length / 2 - 0.01
    rail_z = s.deck_height + s.rail_height / 2 - 0.01
    rails = "".join(_box((0.02, s.width, s.rail_height + 0.02), (sx * rail_x, 0, rail_z), rail) for sx in (-1, 1))
    deck_t = s.deck_height - s.chassis_top
    links = [
        f'<link name="chassis">{_inertia(s.chassis_mass, s.length, s.width, h)}'
        f"{_box((s.length, s.width, h), (0, 0, zc), body)}{rails}</link>",
        f'<link name="deck">{_inertia(s.deck_mass, *s.deck_size, deck_t)}'
        f"{_box((*s.deck_size, deck_t), (0, 0, 0), dark)}"
        + "".join(
            _box((s.deck_size[0] - 0.02, 0.012, 0.002), (0, y, deck_t / 2 + 0.001), rail, collide=False)
            for y in (-0.2, -0.1, 0.0, 0.1, 0.2)
        )
        + "</link>",
    ]
    joints = [
        '<joint name="deck_roller" type="prismatic"><parent link="chassis"/><child link="deck"/>'
        f'<origin xyz="0 0 {s.chassis_top + deck_t / 2:.4g}"/><axis xyz="0 1 0"/>'
        f'<limit lower="-0.1" upper="0.1" effort="{s.deck_force}" velocity="1"/></joint>'
    ]
    r, w = s.wheel_radius, s.wheel_width
    iw = s.wheel_mass * (3 * r * r + w * w) / 12
    for side, y in (("left", s.track / 2), ("right", -s.track / 2)):
        cyl = f'<origin rpy="1.5708 0 0"/><geometry><cylinder radius="{r}" length="{w}"/></geometry>'
        links.append(
            f'<link name="{side}_wheel"><inertial><mass value="{s.wheel_mass}"/>'
            f'<inertia ixx="{iw:.5g}" ixy="0" ixz="0" iyy="{s.wheel_mass * r * r / 2:.5g}" iyz="0" izz="{iw:.5g}"/>'
            f'</inertial><visual>{cyl}<material name="tyre"><color rgba="{dark}"/></material></visual>'
            f"<collision>{cyl}</collision></link>"
        )
        joints.append(
            f'<joint name="{side}_wheel" type="continuous"><parent link="chassis"/><child link="{side}_wheel"/>'
            f'<origin xyz="0 {y} {r}"/><axis xyz="0 1 0"/></joint>'
        )
    cr = s.caster_radius
    for i, (sx, sy) in enumerate(((1, 1), (1, -1), (-1, 1), (-1, -1))):
        sphere = f'<origin xyz="0 0 0"/><geometry><sphere radius="{cr}"/></geometry>'
        links.append(
            f'<link name="caster_{i}"><inertial><mass value="0.2"/><inertia ixx="1e-4" ixy="0" ixz="0" iyy="1e-4" '
            f'iyz="0" izz="1e-4"/></inertial><visual>{sphere}<material name="caster"><color rgba="{rail}"/>'
            f"</material></visual><collision>{sphere}</collision></link>"
        )
        joints.append(
            f'<joint name="caster_{i}" type="fixed"><parent link="chassis"/><child link="caster_{i}"/>'
            f'<origin xyz="{sx * s.caster_xy[0]} {sy * s.caster_xy[1]} {cr + s.caster_lift}"/></joint>'
        )
    return (
        f'<?xml version="1.0"?>\n<!-- {s.title}: generated by `python -m twin.robots.agv` from twin/robots/agv.py -->\n'
        '<robot name="agv">\n  ' + "\n  ".join(links + joints) + "\n</robot>\n"
    )


class AGV:
    """One AGV on the floor, built from its layout entry.

    ``command(v, w)`` sets the speed (m/s) and turn rate (rad/s) it drives towards, within its
    limits and acceleration; the wheel motors do the rest. ``update(dt)`` after each control step
    reads its state, integrates the odometry, the distance travelled and the wheels' energy.
    """

    def __init__(self, world: World, name: str, config: AGVConfig, spec: AGVSpec = SPEC) -> None:
        self.world, self.name, self.config, self.spec = world, name, config, spec
        p = world.p
        yaw = math.radians(config.yaw)
        self.id = world.load_urdf(name, URDF_PATH, (*config.position, 0.0), p.getQuaternionFromEuler([0, 0, yaw]))
        joints = {p.getJointInfo(self.id, j)[1].decode(): j for j in range(p.getNumJoints(self.id))}
        self.wheels = [joints["left_wheel"], joints["right_wheel"]]
        self.deck_joint = joints["deck_roller"]
        self.deck_link = self.deck_joint
        for j in self.wheels:
            p.changeDynamics(self.id, j, lateralFriction=spec.wheel_friction)
        for i in range(4):
            p.changeDynamics(
                self.id, joints[f"caster_{i}"], lateralFriction=0.0, rollingFriction=0.0, spinningFriction=0.0
            )
        p.changeDynamics(self.id, self.deck_link, lateralFriction=0.8)
        p.changeDynamics(self.id, -1, activationState=p.ACTIVATION_STATE_DISABLE_SLEEPING)
        self._start = (float(config.position[0]), float(config.position[1]), yaw)
        self.reset()

    @property
    def _dt(self) -> float:
        return self.world.control_dt

    def reset(self) -> None:
        """At the start, standing, with controller, odometry and counters cleared.

        The joints and base are reset explicitly (not only through the twin's restored physics
        state), which also clears what the motors carried over from the last episode.
        """
        p = self.world.p
        x, y, yaw = self._start
        p.resetBasePositionAndOrientation(self.id, [x, y, 0.0], p.getQuaternionFromEuler([0, 0, yaw]))
        p.resetBaseVelocity(self.id, [0, 0, 0], [0, 0, 0])
        for j in (*self.wheels, self.deck_joint):
            p.resetJointState(self.id, j, 0.0, 0.0)
        self.v_cmd = self.w_cmd = 0.0  # the ramped command
        self.v_goal = self.w_goal = 0.0
        self.deck_speed = 0.0
        self.odom = list(self._start)
        self.odom_vel = (0.0, 0.0)
        self.pose = self._start
        self.vel = (0.0, 0.0)
        self._wheel_angles = (0.0, 0.0)
        self.distance = 0.0
        self.energy = 0.0
        self.speed_scale = 1.0
        """A drive slowdown: the speed and turn-rate limits at this share of nominal."""
        self._apply()

    def command(self, v: float, w: float) -> None:
        """Drive towards speed ``v`` (m/s, forward positive) and turn rate ``w`` (rad/s, left positive)."""
        c, k = self.config, self.speed_scale
        self.v_goal = min(max(v, -c.max_speed * k), c.max_speed * k)
        self.w_goal = min(max(w, -c.max_turn_rate * k), c.max_turn_rate * k)

    def run_deck(self, speed: float) -> None:
        """Run the deck's rollers at ``speed`` m/s towards the AGV's left (negative: its right); 0 stops them."""
        self.deck_speed = speed

    def pre_step(self, dt: float) -> None:
        """Ramp the command within the acceleration limit and set the motors for the next control step."""
        c = self.config
        dv, dw = c.max_accel * dt, c.max_accel * dt / (self.spec.track / 2)
        self.v_cmd += min(max(self.v_goal - self.v_cmd, -dv), dv)
        self.w_cmd += min(max(self.w_goal - self.w_cmd, -dw), dw)
        self._apply()

    def _apply(self) -> None:
        p, s = self.world.p, self.spec
        half = s.track / 2
        left = (self.v_cmd - self.w_cmd * half) / s.wheel_radius
        right = (self.v_cmd + self.w_cmd * half) / s.wheel_radius
        p.setJointMotorControlArray(
            self.id, self.wheels, p.VELOCITY_CONTROL, targetVelocities=[left, right], forces=[s.wheel_torque] * 2
        )
        # the deck creeps with its rollers through its centre during a step and is put back
        # before the next one (it stays within the chassis' sides at up to 1 m/s at 10 Hz)
        p.resetJointState(self.id, self.deck_joint, -self.deck_speed * self._dt / 2, self.deck_speed)
        if self.deck_speed:
            p.setJointMotorControl2(
                self.id, self.deck_joint, p.VELOCITY_CONTROL, targetVelocity=self.deck_speed, force=s.deck_force
            )
        else:
            p.setJointMotorControl2(
                self.id, self.deck_joint, p.POSITION_CONTROL, targetPosition=0.0, force=s.deck_force
            )

    def update(self, dt: float) -> None:
        """Read the pose and wheels after a control step: odometry, distance, energy."""
        p, s = self.world.p, self.spec
        (x, y, _), orn = p.getBasePositionAndOrientation(self.id)
        yaw = p.getEulerFromQuaternion(orn)[2]
        (vx, vy, _), (_, _, wz) = p.getBaseVelocity(self.id)
        c, sn = math.cos(yaw), math.sin(yaw)
        self.distance += math.hypot(x - self.pose[0], y - self.pose[1])
        self.pose, self.vel = (x, y, yaw), (vx * c + vy * sn, wz)
        (al, wl, _, tl), (ar, wr, _, tr) = p.getJointStates(self.id, self.wheels)
        self.energy += (abs(tl * wl) + abs(tr * wr)) * dt
        dl, dr = (al - self._wheel_angles[0]) * s.wheel_radius, (ar - self._wheel_angles[1]) * s.wheel_radius
        self._wheel_angles = (al, ar)
        ds, dth = (dl + dr) / 2, (dr - dl) / s.track
        ox, oy, oth = self.odom
        mid = oth + dth / 2
        self.odom = [
            ox + ds * math.cos(mid),
            oy + ds * math.sin(mid),
            math.atan2(math.sin(oth + dth), math.cos(oth + dth)),
        ]
        self.odom_vel = (ds / dt, dth / dt)

    def to_local(self, xy) -> tuple[float, float]:
        """A floor point in the AGV's frame (x ahead, y to its left), from its true pose."""
        x, y, th = self.pose
        dx, dy = xy[0] - x, xy[1] - y
        c, s = math.cos(th), math.sin(th)
        return dx * c + dy * s, -dx * s + dy * c


if __name__ == "__main__":
    URDF_PATH.parent.mkdir(parents=True, exist_ok=True)
    URDF_PATH.write_text(urdf())
    print(f"wrote {URDF_PATH}")
