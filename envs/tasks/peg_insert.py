"""PegInsert: take the peg from its stand and insert it into the chamfered hole to depth."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from envs.core import Feature, Task, near, near_features, tool_features, tool_state
from envs.motion import act_towards, pick_action, planned_ee

# The stages of the insertion as shares of the progress (an insertion to depth is 1).
APPROACH = 0.2  # tool nearing the peg: APPROACH * (1 - tanh(5 * distance to the grasp point))
GRASP = 0.2  # the peg is held clear of its stand (gates the stages below)
ALIGN = 0.3  # the peg's tip over the hole: ALIGN * (1 - tanh(20 * horizontal distance))
INSERT = 0.3  # the tip below the block's top face: INSERT * depth / required depth
FORCE_SCALE = 50.0  # newtons per unit of the force-torque numbers in the observation


class PegInsert(Task):
    """Insert the peg into the hole to depth without exceeding the force limit.

    **Task description:** a square brass peg (31 mm) stands upright on the table; a block beside
    it has a square hole (32 mm: 1 mm of clearance) with a 3 mm chamfer, all real collision
    geometry. The Panda must grasp the peg, carry it over the hole and push its tip at least
    3 cm below the block's top face. Contact between peg and block above 20 N is a jam (logged);
    above 60 N the insertion fails. The wrist force-torque sensor is in the observation.
    Actions: tool-position delta (3-D, up to 3 cm per 50 ms step) and a tool command (> 0 closes).

    **Randomizations:** the hole block's position, +-1 cm in x and y.

    **Difficulty knob:** ``clearance`` (metres between the hole's and the peg's sides, 0.0005 to
    0.005; the layout's is 1 mm): the peg is made that much narrower than the hole.

    **Success conditions:** the peg's tip is 3 cm deep in the hole and the contact force never
    passed the force limit. The episode terminates on success, on passing the force limit, or
    when the peg falls or is left outside the hole; a 20 s time limit truncates it.

    Observations (``state``, 23 numbers): tool position (3) and velocity (3), finger opening (1);
    peg position (3) and relative to the tool (3); the peg's tilt (radians, 1); the hole's mouth
    relative to the peg's tip (3); wrist force (3) and torque (3) in the world frame, in units of
    50 N and 50 N m (PyBullet's joint force-torque sensor on the hand joint: it includes the
    weight of the hand and the peg).

    **Dense reward** (staged, at most 1 per step): progress = 0.2 * (1 - tanh(5 * distance from
    the tool to the peg's grasp point)) while the peg is not held; once held clear of its stand
    0.2 + 0.2 + 0.3 * (1 - tanh(20 * horizontal tip-hole distance)) + 0.3 * min(1, depth / 3 cm);
    1 on success. Each step earns the change in progress. **Sparse reward:** 1 on success.

    ``info`` carries ``is_success``, ``depth`` (m), ``contact_force`` (N), ``progress`` and, at
    the end, ``kpis`` (``insertion-0_insertion_time`` from pick to depth in seconds,
    ``insertion-0_peak_force`` in N, ``insertion-0_jams``).
    """

    layout = "assembly"
    obs_modes = ("state", "rgb")
    max_step = 0.03
    shares: ClassVar[dict[str, float]] = {"approach": APPROACH, "grasp": GRASP, "align": ALIGN, "insert": INSERT}
    """Each stage's share of the progress (an insertion to depth is 1; see the reward table)."""
    failure_cost: ClassVar[float | None] = None
    """What a crash costs beyond the progress it takes back (None: a failure keeps its progress)."""
    curriculum_stages = ({"clearance": 0.004}, {"clearance": 0.002})
    """4 mm of clearance, then 2 mm; then the task as made."""

    def __init__(self, twin, reward_type: str = "dense") -> None:
        super().__init__(twin, reward_type)
        if not twin.insertions:
            raise ValueError("PegInsert needs a layout with an [[insertions]] station")
        self.station = twin.insertions[0]
        self.peg = self.station.peg
        base = self.robot.base_position
        self.workspace = ((*(base[:2] - 0.85), self.station.base[2] + 0.01), (*(base[:2] + 0.85), base[2] + 0.5))

    @classmethod
    def adapt_layout(cls, layout, clearance: float | None = None, **unknown: Any):
        """The layout with the clearance knob applied to its first insertion."""
        if unknown:
            raise ValueError(f"PegInsert has no setting {', '.join(map(repr, unknown))} (its settings: clearance)")
        if clearance is None:
            return layout
        if isinstance(clearance, bool) or not isinstance(clearance, int | float) or not 0.0005 <= clearance <= 0.005:
            raise ValueError(f"PegInsert: clearance must be a number of metres from 0.0005 to 0.005, got {clearance!r}")
        if not layout.insertions:
            raise ValueError("PegInsert's knobs need a layout with an [[insertions]] station")
        first = layout.insertions[0]
        changed = first.model_copy(update={"peg_width": first.hole_width - float(clearance)})
        return layout.model_copy(update={"insertions": [changed, *layout.insertions[1:]]})

    def grasp_point(self) -> np.ndarray:
        """Where the tool closes on the peg: 2 cm below its top face."""
        x, y, z = self.peg.xyz
        return np.array([x, y, z + self.peg.spec.half_height - 0.02])

    def held(self) -> bool:
        return self.peg.state == "held"

    def reset(self, rng: np.random.Generator) -> None:
        self.robot.wrist_wrench()  # switch the sensor on
        self._progress: float | None = None

    def observe(self) -> np.ndarray:
        robot, st = self.robot, self.station
        ex, ey, ez = robot.ee_xyz()
        px, py, pz = self.peg.xyz
        tx, ty, tz = st.peg_tip()
        hx, hy, hz = st.hole_top
        wrench = (v / FORCE_SCALE for v in robot.wrist_wrench())
        return np.array(
            (
                ex, ey, ez, *robot.ee_vel_xyz(), robot.finger_width(),
                px, py, pz, px - ex, py - ey, pz - ez,
                st.tilt(),
                hx - tx, hy - ty, hz - tz,
                *wrench,
            ),
            dtype=np.float32,
        )  # fmt: skip

    def evaluate(self) -> dict[str, Any]:
        st = self.station
        depth, force = st.depth(), st.contact_force()
        crashed = st.peak_force > st.config.force_limit
        success = st.inserted_at < math.inf and not crashed
        lost = self.peg.state in ("lost", "missed") or (self.peg.state == "placed" and not success)
        w = self.shares
        if success:
            progress = 1.0
        elif self.held():
            tip = st.peg_tip()
            off = math.hypot(tip[0] - st.hole_xy[0], tip[1] - st.hole_xy[1])
            progress = w["approach"] + w["grasp"] + w["align"] * (1.0 - math.tanh(20.0 * off))
            progress += w["insert"] * min(1.0, depth / st.config.depth)
        else:
            x, y, z = self.peg.xyz
            d = math.dist((x, y, z + self.peg.spec.half_height - 0.02), self.robot.ee_xyz())
            progress = w["approach"] * (1.0 - math.tanh(5.0 * d))
        before = self._progress
        gained = 0.0 if before is None else progress - before
        self._progress = progress
        done = success or crashed or lost
        if (crashed or lost) and not success and self.failure_cost is not None:
            gained = -(before or 0.0) - (self.failure_cost if crashed else 0.0)  # all banked progress, and more
        info: dict[str, Any] = {"depth": depth, "contact_force": force, "progress": progress}
        if done:
            info["kpis"] = self.twin.kpis()
        return {"success": success, "done": done, "gained": gained, "info": info}

    def reward(self, ev: dict[str, Any]) -> float:
        if self.reward_type == "sparse":
            return float(ev["success"])
        return min(1.0, ev["gained"])

    def terminated(self, ev: dict[str, Any]) -> bool:
        return bool(ev["done"])


MOUTH_SCALE = 0.005
"""Metres at which the magnified hole-mouth offset of ``-v1`` reads tanh(1): the peg's 0.5 mm of
clearance per side is a tenth of its range."""


class PegInsertV1(PegInsert):
    """PegInsert, version 1: a tared wrist sensor, fine moves, rewards that teach.

    **Task description, randomizations, success conditions and knob:** as ``PegInsert-v0``.

    **Action:** tool-position deltas of up to 1 cm per 50 ms step (``-v0``: 3 cm), so that the
    millimetre moves the insertion needs are a third of the action range, not a hundredth, and
    the tool command (> 0 closes).

    **Observation** (``state``, 32 numbers):

    ===========================  ==========  ============
    feature                      unit        range
    ===========================  ==========  ============
    tool x, y, z                 m           [-10, 10]
    tool velocity (3)            m/s         [-5, 5]
    finger opening               m           [0, 0.1]
    peg x, y, z                  m           [-10, 10]
    peg - tool (3)               m           [-10, 10]
    peg tilt                     rad         [0, 3.2]
    hole mouth - peg tip (3)     m           [-10, 10]
    wrist force, tared (3)       N           [-500, 500]
    wrist torque, tared (3)      N m         [-100, 100]
    tool closed, switched, grip  0/1, s, 0/1 [0, 1]
    peg - tool, magnified (3)    tanh(m/2cm) [-1, 1]
    mouth - tip, magnified (3)   tanh(m/5mm) [-1, 1]
    ===========================  ==========  ============

    The magnified offsets (``envs.core.near``) resolve the last centimetres of the grasp and the
    last millimetres over the hole, where the raw offsets' running spread would make them
    indistinguishable to a network. The wrist sensor is tared as a real force-torque sensor is: the static load of the hand (and
    of the peg, once it is lifted) is taken off, so what remains is the contact with the block.

    **Dense reward:** each step earns the change in progress:

    ====================  ===========================================================
    stage                 progress
    ====================  ===========================================================
    approach              0.1 * (1 - tanh(5 * tool distance to the grasp point))
    held (lifted)         0.2 + 0.2 * (1 - tanh(20 * tip-hole distance))
                          + 0.2 * min(1, depth / 3 cm)
    inserted              1: the largest step (+0.4 at least)
    crash (force limit)   every bit of banked progress taken back, and -0.5
    peg lost              every bit of banked progress taken back
    time limit            every bit of banked progress taken back
    ====================  ===========================================================

    **Sparse reward:** 1 on success.
    """

    max_step = 0.01
    shares: ClassVar[dict[str, float]] = {"approach": 0.1, "grasp": 0.1, "align": 0.2, "insert": 0.2}
    failure_cost = 0.5
    settles_at_time_limit = True

    def observe(self) -> np.ndarray:
        obs = super().observe()
        fx, fy, fz, mx, my, mz = self.robot.wrist_wrench()
        g = -self.twin.layout.physics.gravity[2]
        load = (self.robot.tool_mass + (self.peg.spec.mass if self.held() else 0.0)) * g
        if (fx, fy, fz) != (0.0, 0.0, 0.0):  # (the sensor reads zeros until the first step)
            fz -= load
        wrench = np.asarray((fx, fy, fz, mx, my, mz), dtype=np.float32)
        fine = near(obs[10:13]) + near(obs[14:17], MOUTH_SCALE)  # peg - tool, mouth - tip
        return np.concatenate([obs[:17], wrench, np.asarray([*tool_state(self.robot), *fine], np.float32)])

    def observation_features(self) -> list[Feature]:
        pos, vel = (-10.0, 10.0), (-5.0, 5.0)
        out: list[Feature] = [(f"tool_{a}", "m", *pos) for a in "xyz"]
        out += [(f"tool_v{a}", "m/s", *vel) for a in "xyz"] + [("finger_opening", "m", 0.0, 0.1)]
        out += [(f"peg_{a}", "m", *pos) for a in "xyz"] + [(f"peg_minus_tool_{a}", "m", *pos) for a in "xyz"]
        out += [("peg_tilt", "rad", 0.0, 3.2)] + [(f"mouth_minus_tip_{a}", "m", *pos) for a in "xyz"]
        out += [(f"wrist_force_{a}", "N (tared)", -500.0, 500.0) for a in "xyz"]
        out += [(f"wrist_torque_{a}", "N m (tared)", -100.0, 100.0) for a in "xyz"]
        return out + tool_features() + near_features("peg_minus_tool") + near_features("mouth_minus_tip", MOUTH_SCALE)

    def unsettled(self) -> float:
        return 0.0 if self.reward_type != "dense" or self._progress is None else self._progress


class PegInsertExpert:
    """A scripted fitter: grasp the peg, hover its tip over the hole, centre it there, then push
    down slowly while correcting the tip's horizontal error, backing off when the force rises.

    It keeps no state between calls: the stage is read off the peg (held or not), the tip's height
    above the hole's mouth and its horizontal error, with hysteresis bands (see ``envs.motion``)."""

    CLEAR = 0.04  # metres of the tip above the block's top face while carrying the peg over
    HOVER = 0.008  # metres of the tip above the block's top face while centring
    DESCENT = 0.004  # metres per step going in
    GAIN = 0.4  # share of the tip's remaining error corrected per step
    MOUTH_CENTRED: float | None = None
    """Metres: where set, the tip stops going in whenever it is further than this off the hole's
    axis, and centres first (None: it goes on in once in the mouth)."""

    def __init__(self, env) -> None:
        self.task: PegInsert = env.unwrapped.task

    def reset(self) -> None:
        """Nothing to forget: the expert keeps no state between calls."""

    def __call__(self, obs: Any) -> np.ndarray:
        task, st = self.task, self.task.station
        ee = planned_ee(task)
        peg = task.peg
        if not task.held():  # pick it off its stand and lift it until its tip clears the block
            g = task.grasp_point()
            lift = st.top_z + self.CLEAR + st.config.peg_length
            return pick_action(task, peg, g, g[2] + 0.1, tol=0.003, speed=0.5, lift=lift)
        tip = np.array(st.peg_tip())
        hx, hy, hz = st.hole_top
        err = np.array([hx - tip[0], hy - tip[1]])
        off = float(np.linalg.norm(err))
        height = tip[2] - hz
        if height < self.HOVER - 0.0015 and off < 0.003:  # in the mouth: push home
            down = -self.DESCENT if st.contact_force() < st.config.jam_force / 2 else 0.002
            if self.MOUTH_CENTRED is not None and off > self.MOUTH_CENTRED:
                down = 0.0  # off the axis: centre before going on in
            step = np.array([*np.clip(self.GAIN * err, -0.002, 0.002), down])
            return act_towards(ee, ee + step, close=True, max_step=task.max_step)
        centring = off < 0.01 or (off < 0.025 and height < self.CLEAR - 0.005)  # a band: no hunting between the two
        if centring and height < self.CLEAR + 0.01:  # over the hole: down to just above the mouth, centring
            want_z = self.HOVER - height
            still = np.linalg.norm(task.robot.ee_vel_xyz()) < 0.01
            if off < 0.0007 and abs(want_z) < 0.002 and still:
                want_z = -self.DESCENT  # centred and still: start in
            # a gain under 1: the arm follows its target a step or two late, and full steps ring
            step = np.array([*np.clip(self.GAIN * err, -0.003, 0.003), np.clip(self.GAIN * want_z, -0.006, 0.006)])
            if want_z == -self.DESCENT:
                step[2] = want_z
            return act_towards(ee, ee + step, close=True, max_step=task.max_step)
        # carry over the hole with the tip well clear of the block
        step = np.clip(np.array([*err, self.CLEAR - height]), -0.015, 0.015)
        return act_towards(ee, ee + step, close=True, max_step=task.max_step)


class CoarsePegInsertExpert(PegInsertExpert):
    """``PegInsert-v0``'s expert. Its 3 cm moves, with the standard randomisation's action noise and
    step of latency, leave the tip up to a millimetre off the hole's axis as it goes in, and the peg
    then strikes the hole's wall (a jam): it stops going in until it is centred to 0.4 mm."""

    MOUTH_CENTRED = 0.0004
