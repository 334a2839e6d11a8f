"""WaferTransfer: carry wafers from their cassette slots through the load lock into the process
chamber and back, without touching anything."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from envs.core import Feature, Task

APPROACH = 0.3  # share of a transfer's progress for bringing the paddle under the wafer
HELD = 0.5  # ... for holding it
CARRY = 0.4  # ... for carrying it to where it goes (held + carry < 1: putting it down completes it)
DIST_SCALE = 10.0  # 1 / metres in the progress terms' 1 - tanh(DIST_SCALE * distance)
CONTACT_PENALTY = 0.25
STAGES = 4  # transfers per wafer: slot -> load lock -> process chamber -> load lock -> slot


class WaferTransfer(Task):
    """Move each wafer from its cassette slot through the load lock into the process chamber and
    back to its slot.

    **Task description:** an R-theta-Z robot with a 3 mm vacuum paddle serves a cassette (FOUP)
    of 300 mm wafers at a 10 mm pitch, a load lock and a process chamber, each behind a 30 mm
    slit. The paddle holds a wafer only by friction, helped by its vacuum pads while the wafer
    lies on them; accelerate too hard and the wafer slides. A chamber's cycle (load lock pump-down
    or vent, process recipe) starts once a wafer rests in it and the paddle is out, and a wafer
    must not be taken out before it ends. Each wafer goes slot, load lock, process chamber, load
    lock, slot. Actions: rates of the three axes (turn, extend, lift; each in [-1, 1] of 2 rad/s,
    0.5 m/s and 0.1 m/s) and the vacuum (> 0 on).

    **Randomizations:** each wafer's place in its slot (+-1 mm); the chambers' cycle times (load
    lock 2-3 s, process 4-6 s).

    **Difficulty knob:** ``wafers`` (1 up to the cassette's 3; 2 by default): how many, from the
    bottom slot up, go through the tool.

    **Success conditions:** every wafer of the episode back home after its round, with no wafer
    ever touching anything but its ledges and the paddle's top (a particle risk), none dropped and
    none taken out of a chamber mid-cycle. The episode terminates on success or on any of those
    failures; a 120 s time limit truncates it.

    Observations (``state``, 30 numbers): cos and sin of the turn, the extension and the height
    (m) of the paddle, the commanded rates as shares of the limits (3), the vacuum (1); the pad
    centre (3, m); the current wafer's pick-up or set-down point relative to the pad centre (3, m)
    and which of the two it is (1); the held wafer's offset on the paddle (3, m) and whether one
    is held (1); the current wafer's stage on its route, one-hot (5); load lock and process
    chamber cycling, and done (4); wafers still to go (share) and episode time (share of 120 s).

    **Dense reward** (staged, at most 1 per step): a transfer's progress is 0.3 * (1 - tanh(10 *
    d)) while the paddle is not holding the wafer, d from the pad centre to the wafer's centre;
    0.5 + 0.4 * (1 - tanh(10 * d)) while held, d to where it goes; 1 when it rests there. The
    episode's progress is the transfers done plus the current one's, over 4 per wafer; each step
    earns its change, less 0.25 per wafer contact. **Sparse reward:** 1 on success.

    ``info`` carries ``is_success``, ``wafers_done``, ``progress`` and, at the end, ``kpis``
    (``wafers_per_hour``, ``wafer_contacts``, ``wafer_slips``, ``peak_wafer_acceleration`` in
    m/s^2, ``process_chamber_utilisation``).
    """

    layout = "fab"
    drives = "wafer_robot"
    action_size = 4
    obs_modes = ("state",)
    obs_camera = "overview"
    render_camera = "overview"
    fresh_world = True  # a wafer on a friction paddle amplifies what PyBullet carries between episodes
    curriculum_stages = ({"wafers": 1},)
    """One wafer round the tool; then the task as made."""
    time_scale = 120.0
    default_knobs = {"wafers": 2}
    shares: ClassVar[dict[str, float]] = {"approach": APPROACH, "held": HELD, "carry": CARRY}
    """A transfer's stages as shares of its progress (see the reward table)."""
    failure_cost: ClassVar[float | None] = None
    """What a failure (a contact, a drop, an early pick) costs beyond the progress it takes back
    (None: it costs ``CONTACT_PENALTY`` per contact and keeps its progress)."""

    def __init__(self, twin, reward_type: str = "dense") -> None:
        super().__init__(twin, reward_type)
        fab = twin.fab
        if fab is None or not fab.wafers or None in fab.route_stations:
            raise ValueError(
                "WaferTransfer needs a layout with a cassette of wafers, a load lock and a process chamber"
            )
        self.fab = fab
        self.handler = fab.robot

    @classmethod
    def adapt_layout(cls, layout, wafers: int | None = None, **unknown):
        """The layout with the number of wafers in the first cassette set."""
        if unknown:
            raise ValueError(f"WaferTransfer has no setting {', '.join(map(repr, unknown))} (its settings: wafers)")
        if not layout.cassettes:
            raise ValueError("WaferTransfer needs a layout with [[cassettes]]")
        top = min(3, layout.cassettes[0].slots)
        if wafers is None:
            return layout
        if isinstance(wafers, bool) or not isinstance(wafers, int) or not 1 <= wafers <= top:
            raise ValueError(f"WaferTransfer: wafers must be a whole number from 1 to {top}, got {wafers!r}")
        first = layout.cassettes[0].model_copy(update={"wafers": wafers})
        return layout.model_copy(update={"cassettes": [first, *layout.cassettes[1:]]})

    # -- the current wafer --------------------------------------------------------------------

    def current(self):
        """The wafer on its way: the first not yet home."""
        return next((w for w in self.fab.wafers if w.stage < STAGES), None)

    def point(self, place: tuple[str, int]) -> list[float]:
        return self.fab.position(self.fab.by_name[place[0]], place[1])

    def goal(self) -> tuple[list[float], bool]:
        """Where the paddle should bring the current wafer's centre next, and whether that is to
        pick it up (False: to set it down)."""
        w = self.current()
        if w is None:
            return list(self.handler.pad_pose()[0]), True
        if w.held:
            return self.point(self.fab.next_place(w)), False
        return list(w.xyz), True

    def reset(self, rng: np.random.Generator) -> None:
        self._progress: float | None = None
        self._contacts = 0

    def decode(self, action) -> list[float]:
        """The axis rates (rad/s, m/s, m/s) that an action's first three numbers ask for."""
        return [a * m for a, m in zip(action[:3], self.handler.spec.max_rates, strict=True)]

    def encode(self, rates) -> list[float]:
        """The action numbers that ask for ``rates`` (the inverse of ``decode``)."""
        return [r / m for r, m in zip(rates, self.handler.spec.max_rates, strict=True)]

    def act(self, action: list[float]) -> None:
        self.handler.command(*self.decode(action))
        self.handler.vacuum(action[3] > 0)

    def observe(self) -> np.ndarray:
        h, fab = self.handler, self.fab
        (theta, r, z), _ = h.joint_state()
        pad, _ = h.pad_pose()
        goal, picking = self.goal()
        w = self.current()
        held = w is not None and w.held
        off = h.to_paddle(w.xyz) if held else (0.0, 0.0, 0.0)
        stage = [0.0] * (STAGES + 1)
        stage[w.stage if w is not None else STAGES] = 1.0
        lock, proc = fab.route_stations[0], fab.route_stations[1]
        cyc = [float(fab.cycles[n].state == s) for n in (lock, proc) for s in ("cycling", "done")]
        left = sum(x.stage < STAGES for x in fab.wafers) / len(fab.wafers)
        rates = [v / m for v, m in zip(h.rates, h.spec.max_rates, strict=True)]
        return np.array(
            (
                math.cos(theta), math.sin(theta), r, z, *rates, float(h.vacuum_on),
                *pad, goal[0] - pad[0], goal[1] - pad[1], goal[2] - pad[2], float(picking),
                *off, float(held), *stage, *cyc, left, self.twin.sim_time / self.time_scale,
            ),
            dtype=np.float32,
        )  # fmt: skip

    # -- scoring ----------------------------------------------------------------------------

    def transfer_progress(self) -> float:
        w = self.current()
        if w is None:
            return 0.0
        pad, _ = self.handler.pad_pose()
        sh = self.shares
        if w.held:
            d = math.dist(w.xyz, self.point(self.fab.next_place(w)))
            return sh["held"] + sh["carry"] * (1.0 - math.tanh(DIST_SCALE * d))
        return sh["approach"] * (1.0 - math.tanh(DIST_SCALE * math.dist(pad, w.xyz)))

    def evaluate(self) -> dict[str, Any]:
        fab, events = self.fab, self.twin.log.events
        done = sum(w.stage >= STAGES for w in fab.wafers)
        contacts = sum(e.kind == "wafer_contact" for e in events)
        failed = contacts > 0 or any(e.kind in ("dropped", "early_pick") for e in events)
        success = done == len(fab.wafers) and not failed
        transfers = sum(w.stage for w in fab.wafers)
        total = STAGES * len(fab.wafers)
        progress = 1.0 if success else min(1.0, (transfers + self.transfer_progress()) / total)
        before = self._progress
        gained = 0.0 if before is None else progress - before
        self._progress = progress
        new, self._contacts = contacts - self._contacts, contacts
        info: dict[str, Any] = {"wafers_done": done, "progress": progress}
        if success or failed:
            info["kpis"] = self.twin.kpis()
        gained -= CONTACT_PENALTY * new
        if failed and self.failure_cost is not None:
            gained = -(before or 0.0) - self.failure_cost  # the banked progress back, and more
        return {"success": success, "done": success or failed, "gained": gained, "info": info}

    def reward(self, ev: dict[str, Any]) -> float:
        if self.reward_type == "sparse":
            return float(ev["success"])
        return min(1.0, ev["gained"])

    def terminated(self, ev: dict[str, Any]) -> bool:
        return bool(ev["done"])


class WaferTransferV1(WaferTransfer):
    """WaferTransfer, version 1: the servo set-points observed, fine rates near stillness,
    rewards that teach.

    **Task description, randomizations, success conditions and knob:** as ``WaferTransfer-v0``.

    **Action:** each axis rate is its limit times ``a * |a|`` (a signed square): full rate at
    +-1 as before, and fine rates near 0 (a rate of a hundredth of the limit is the action 0.1,
    not 0.01), as the last tenths of a millimetre at a slot need; then the vacuum (> 0 on).

    **Observation** (``state``, 34 numbers): ``-v0``'s 30, then the axes' servo set-points (the
    positions the drives are told to hold: cos and sin of the turn, extension and height, m),
    which lead the measured positions by the drives' lag. Every number's name, unit and range:
    ``observation_features()``.

    **Dense reward:** each step earns the change in progress (transfers done plus the current
    one's stage, over 4 per wafer):

    ==========================  ===================================================
    stage                       progress of a transfer
    ==========================  ===================================================
    approach                    0.15 * (1 - tanh(10 * pad-wafer distance))
    held                        0.3 + 0.25 * (1 - tanh(10 * distance to where it goes))
    set down where it goes      1: the largest step of a transfer (+0.45)
    failure (a contact, a drop, all the episode's banked progress taken back, and
    an early pick: it ends it)  -0.25
    time limit                  the current transfer's progress taken back
    ==========================  ===================================================

    **Sparse reward:** 1 on success.
    """

    shares: ClassVar[dict[str, float]] = {"approach": 0.15, "held": 0.3, "carry": 0.25}
    failure_cost = 0.25
    settles_at_time_limit = True

    def decode(self, action) -> list[float]:
        return [a * abs(a) * m for a, m in zip(action[:3], self.handler.spec.max_rates, strict=True)]

    def encode(self, rates) -> list[float]:
        return [
            math.copysign(math.sqrt(abs(r) / m), r) for r, m in zip(rates, self.handler.spec.max_rates, strict=True)
        ]

    def observe(self) -> np.ndarray:
        th, r, z = self.handler.q_target
        return np.concatenate([super().observe(), np.asarray((math.cos(th), math.sin(th), r, z), np.float32)])

    def observation_features(self) -> list[Feature]:
        rel = (-2.0, 2.0)
        out: list[Feature] = [("turn_cos", "-", -1.0, 1.0), ("turn_sin", "-", -1.0, 1.0)]
        out += [("extension", "m", 0.0, 1.0), ("height", "m", 0.0, 2.0)]
        out += [(f"commanded_rate_{a}", "share of the limit", -1.0, 1.0) for a in ("turn", "extend", "lift")]
        out += [("vacuum", "0/1", 0.0, 1.0)] + [(f"pad_{a}", "m", -10.0, 10.0) for a in "xyz"]
        out += [(f"goal_minus_pad_{a}", "m", *rel) for a in "xyz"] + [("goal_is_pick", "0/1", 0.0, 1.0)]
        out += [(f"wafer_on_paddle_{a}", "m", -0.5, 0.5) for a in "xyz"] + [("wafer_held", "0/1", 0.0, 1.0)]
        out += [(f"stage_{k}", "0/1", 0.0, 1.0) for k in range(STAGES + 1)]
        out += [(f"{c}_{s}", "0/1", 0.0, 1.0) for c in ("load_lock", "process") for s in ("cycling", "done")]
        out += [("wafers_left", "share", 0.0, 1.0), ("time", "share of 120 s", 0.0, 2.0)]
        out += [("setpoint_turn_cos", "-", -1.0, 1.0), ("setpoint_turn_sin", "-", -1.0, 1.0)]
        out += [("setpoint_extension", "m", 0.0, 1.0), ("setpoint_height", "m", 0.0, 2.0)]
        return out

    def unsettled(self) -> float:
        if self.reward_type != "dense" or self._progress is None:
            return 0.0
        return self.transfer_progress() / (STAGES * len(self.fab.wafers))


TEACH_NEAR = (0.01, 0.005, 0.002)
"""Radians, metres, metres at which the ``-v2`` teach-point errors ``tanh(error / scale)`` saturate
(the last millimetres at a place)."""
TEACH_MID = (0.2, 0.05, 0.02)
"""The same at the scale where an axis brakes for a place (the last centimetres, tenths of a radian)."""


class WaferTransferV2(WaferTransferV1):
    """WaferTransfer, version 2: ``-v1`` with the taught station positions a wafer robot's
    controller holds, as errors from the servo set-points.

    **Task description, randomizations, success conditions, knob, action and rewards:** as
    ``WaferTransfer-v1``.

    **Observation** (``state``, 61 numbers): ``-v1``'s 34, then for the current transfer's
    source and its destination, each:

    ================================  ==================  ===========
    feature                           unit                range
    ================================  ==================  ===========
    turn to the station               rad                 [-3.2, 3.2]
    extension to the station          m                   [-1, 1]
    height to under, over its ledges  m                   [-2, 2]
    the same four, magnified for the  tanh(rad / 0.01),   [-1, 1]
    last millimetres                  tanh(m / 0.005),
                                      tanh(m / 0.002)
    the same four, magnified for      tanh(rad / 0.2),    [-1, 1]
    braking                           tanh(m / 0.05),
                                      tanh(m / 0.02)
    ================================  ==================  ===========

    then the extension to the retracted position (m, ``tanh(m / 0.005)`` and ``tanh(m / 0.05)``). The source is
    where the wafer lies (its own centre, as wafer-centring sensors see it, while it rests
    there); the destination is corrected by the carried wafer's offset on the paddle, so that
    it is set down centred. Under and over are the paddle heights that pass 6 mm under a
    place's ledges and carry a wafer 3 mm over them. With no wafer left, the errors read 0.
    Every number's name, unit and range: ``observation_features()``.
    """

    def _teach(self, place, wafer=None, carried: bool = False) -> tuple[float, float, float]:
        """The station's taught turn, extension and ledge height for ``place`` (at the wafer's own
        centre when it rests there; corrected for its offset on the paddle when carried)."""
        th, d, hgt = WaferTransferExpert.station(self, place)
        rx, ry = self.handler.config.position
        if wafer is not None and not carried and wafer.place == place:
            th = math.atan2(wafer.xyz[1] - ry, wafer.xyz[0] - rx)
            d = math.hypot(wafer.xyz[0] - rx, wafer.xyz[1] - ry)
        if wafer is not None and carried:
            ox, oy, _ = self.handler.to_paddle(wafer.xyz)
            d, th = d - ox, th - oy / d
        return th, d, hgt

    def observe(self) -> np.ndarray:
        q = self.handler.q_target
        w = self.current()
        errors: list[float] = []
        if w is None:
            errors = [0.0] * 24
        else:
            carried = w.held
            src = w.home if w.stage == 0 else (self.fab.route_stations[w.stage - 1], 0)
            for place in (src, self.fab.next_place(w)):
                th, d, hgt = self._teach(place, w, carried and place != src)
                dth = math.atan2(math.sin(th - q[0]), math.cos(th - q[0]))
                under = hgt - WaferTransferExpert.UNDER - q[2]
                over = hgt + WaferTransferExpert.OVER - q[2]
                raw = [dth, d - q[1], under, over]
                errors += raw
                for sc in (TEACH_NEAR, TEACH_MID):
                    errors += [math.tanh(v / k) for v, k in zip(raw, (sc[0], sc[1], sc[2], sc[2]), strict=True)]
        back = self.handler.spec.min_reach - q[1]
        errors += [back, math.tanh(back / TEACH_NEAR[1]), math.tanh(back / TEACH_MID[1])]
        return np.concatenate([super().observe(), np.asarray(errors, np.float32)])

    def observation_features(self) -> list[Feature]:
        out = super().observation_features()
        for which in ("source", "destination"):
            out += [(f"{which}_turn", "rad", -3.2, 3.2), (f"{which}_extension", "m", -1.0, 1.0)]
            out += [(f"{which}_height_under", "m", -2.0, 2.0), (f"{which}_height_over", "m", -2.0, 2.0)]
            for tag, sc in (("near", TEACH_NEAR), ("mid", TEACH_MID)):
                out += [(f"{which}_{tag}_turn", f"tanh(rad / {sc[0]:g})", -1.0, 1.0)]
                out += [(f"{which}_{tag}_extension", f"tanh(m / {sc[1]:g})", -1.0, 1.0)]
                out += [(f"{which}_{tag}_{h}", f"tanh(m / {sc[2]:g})", -1.0, 1.0) for h in ("under", "over")]
        out += [("retract", "m", -1.0, 1.0), ("retract_near", f"tanh(m / {TEACH_NEAR[1]:g})", -1.0, 1.0)]
        out += [("retract_mid", f"tanh(m / {TEACH_MID[1]:g})", -1.0, 1.0)]
        return out


class WaferTransferExpert:
    """A scripted wafer handler: for each transfer, retract, turn to the station and set the
    height just under the wafer (or just over the ledges), extend, lift with the vacuum on (or
    lower and let go), retract; every axis on a smooth profile within accelerations the vacuum
    holds (extension 1.5 m/s^2, turn 4 rad/s^2, lift 0.5 m/s^2), and it waits for a chamber's
    cycle to end before it reaches in.

    It keeps no state between calls: which move of the transfer is under way is read off the
    wafer (held, resting where, or between) and the axes' set-points against the two stations,
    and the rates it last commanded are the robot's own (``WaferRobot.rates``)."""

    ACCEL = (4.0, 1.5, 0.5)
    PAUSE_ACCEL = 0.15  # share of ACCEL it brakes with while the vacuum is weak
    ARRIVED = (1.5e-3, 1e-3, 3e-4)  # rad, m, m from a waypoint that count as there (noise in the
    # commands keeps the set-points from settling much closer)
    UNDER = 0.006  # metres the paddle's centre passes under a wafer's ledges
    OVER = 0.003  # metres a carried wafer's paddle centre rides above the ledges

    def __init__(self, env) -> None:
        self.env = env.unwrapped

    def reset(self) -> None:
        """Nothing to forget: the expert keeps no state between calls."""

    def _station(self, task: WaferTransfer, place: tuple[str, int]) -> tuple[float, float, float]:
        return self.station(task, place)

    @staticmethod
    def station(task: WaferTransfer, place: tuple[str, int]) -> tuple[float, float, float]:
        """The turn (rad), extension (m) and ledge height (m) the robot serves ``place`` at."""
        s = task.fab.by_name[place[0]]
        rx, ry = task.handler.config.position
        return math.atan2(s.xy[1] - ry, s.xy[0] - rx), math.hypot(s.xy[0] - rx, s.xy[1] - ry), s.heights[place[1]]

    def _axis_rate(self, k: int, err: float, prev: float, vmax: float, dt: float) -> float:
        a = self.ACCEL[k]
        want = math.copysign(min(vmax, math.sqrt(2 * 0.6 * a * abs(err)), abs(err) / dt), err)  # brakes early
        return min(max(want, prev - a * dt), prev + a * dt)

    def _on_paddle(self, task: WaferTransfer, w) -> bool:
        """Held, or lying on the pads between two contact readings (the vacuum holds it either way)."""
        if w.held:
            return True
        if w.place is not None:
            return False
        x, y, z = task.handler.to_paddle(w.xyz)
        return math.hypot(x, y) < 0.05 and -0.001 < z < 0.006

    def _nearest(self, task: WaferTransfer, w) -> tuple[str, int]:
        """The place nearest a wafer between paddle and ledges (set down or lifted this moment)."""
        best = None
        for st in task.fab.stations:
            a, c = st.local(w.xyz)
            for k, hgt in enumerate(st.heights):
                d = math.hypot(a, c) + abs(w.xyz[2] - hgt)
                if best is None or d < best[0]:
                    best = (d, (st.name, k))
        return best[1]

    def _source(self, task: WaferTransfer, w) -> tuple[str, int]:
        """Where the current wafer's transfer starts: the place its stage says it rests at."""
        return w.home if w.stage == 0 else (task.fab.route_stations[w.stage - 1], 0)

    def _set_down(self, task: WaferTransfer, q, vac_now: bool):
        """Finishing a set-down: the paddle still in under a wafer it has just let go (any wafer:
        the one it set down may be home and no longer the current one), not yet below its ledges.
        The move that takes it down clear, or None."""
        spec, tol_z = task.handler.spec, self.ARRIVED[2]
        if vac_now or q[1] <= spec.min_reach + self.ARRIVED[1]:
            return None
        for x in task.fab.wafers:
            if x.place is None or x.held:
                continue
            th, d, hgt = self._station(task, x.place)
            facing = abs(math.atan2(math.sin(q[0] - th), math.cos(q[0] - th))) < 0.05
            if facing and q[1] > d - 0.02 and hgt - self.UNDER + tol_z < q[2] < hgt + self.OVER - 0.0005:
                return (th, d, hgt - self.UNDER), False, None
        return None

    def _move(
        self, task, w, q, vac_now: bool, prev=(0.0, 0.0, 0.0)
    ) -> tuple[tuple[float | None, ...], bool, str | None]:
        """The move under way: a goal for each axis (None: keep it), the vacuum, and the chamber
        whose cycle it must wait for there (or None)."""
        fab, spec = task.fab, task.handler.spec
        r0, (tol_th, tol_r, tol_z) = spec.min_reach, self.ARRIVED
        if w is None:
            return self._set_down(task, q, vac_now) or ((None, r0, None), False, None)
        src, dst = self._source(task, w), fab.next_place(w)
        th_a, d_a, h_a = self._station(task, src)
        th_b, d_b, h_b = self._station(task, dst)
        carried = self._on_paddle(task, w)
        if not carried and w.place == src:  # under the wafer where it actually lies, not its slot's centre
            rx, ry = task.handler.config.position
            th_a, d_a = math.atan2(w.xyz[1] - ry, w.xyz[0] - rx), math.hypot(w.xyz[0] - rx, w.xyz[1] - ry)
        if carried:  # set it down centred: the pad goes where the wafer's offset on the paddle says
            ox, oy, _ = task.handler.to_paddle(w.xyz)
            d_b, th_b = d_b - ox, th_b - oy / d_b
        under_a, over_a, under_b, over_b = h_a - self.UNDER, h_a + self.OVER, h_b - self.UNDER, h_b + self.OVER

        def facing(th: float, tol: float = 0.05) -> bool:
            return abs(math.atan2(math.sin(q[0] - th), math.cos(q[0] - th))) < tol

        inside = q[1] > r0 + tol_r  # the paddle reaches into a station
        src_chamber = src[0] if src[0] in fab.cycles else None
        dst_chamber = dst[0] if dst[0] in fab.cycles else None
        if carried:  # carrying it from the source to the destination
            if inside and facing(th_a) and not facing(th_b):
                if q[2] < over_a - tol_z and q[1] > d_a - 0.01:
                    return (th_a, d_a, over_a), True, None  # lift it off its ledges
                return (th_a, r0, over_a), True, None  # out of the source
            if inside and facing(th_b):
                # there, and still: a wafer let go while the paddle still moves slides on off its place
                there = abs(q[1] - d_b) < tol_r and facing(th_b, tol_th) and abs(prev[1]) < 0.03
                if not there and (q[2] > over_b - tol_z or q[1] < d_b - 0.01):
                    # in over the destination's ledges (once going down at the place, it keeps going
                    # down); low and short of the place, it stops going in until it is back up
                    return (th_b, d_b if q[2] > over_b - 2 * tol_z else None, over_b), True, None
                return (th_b, d_b, under_b), False, None  # down onto them, letting go
            there = facing(th_b, 2 * tol_th) and abs(q[2] - over_b) < 2 * tol_z and abs(q[1] - r0) < 2 * tol_r
            if there and (dst_chamber is None or fab.cycles[dst_chamber].state == "empty"):
                return (th_b, d_b, over_b), True, None  # in over the destination's ledges
            return (th_b, r0, over_b), True, dst_chamber  # round and up (or down) to the destination
        # not held: it rests at the source, or is between paddle and ledges
        down = self._set_down(task, q, vac_now)
        if down is not None:
            return down
        at = w.place if w.place is not None else self._nearest(task, w)
        th_s, d_s, h_s = self._station(task, at)
        ready = src_chamber is None or fab.cycles[src_chamber].state == "done"
        if inside and facing(th_s) and q[1] > d_s - 0.02:  # under the wafer, at its place
            if vac_now and ready:  # lifting it (the vacuum says which way it was going): carry on
                return (th_s, d_s, h_s + self.OVER), True, None
            if q[2] > h_s - self.UNDER + tol_z:
                return (th_s, d_s, h_s - self.UNDER), False, None  # setting it down: carry on, below it
        if inside and facing(th_a) and abs(q[2] - under_a) < 2 * tol_z:
            if not ready:
                return (th_a, r0, under_a), False, None  # out, so that its chamber cycles
            if q[1] < d_a - tol_r:
                return (th_a, d_a, under_a), False, None  # in under it
            return (th_a, d_a, over_a), True, None  # up, vacuum on: pick it up
        if inside:
            return (None, r0, None), False, None  # out of wherever it is before turning
        if facing(th_a, 2 * tol_th) and abs(q[2] - under_a) < 2 * tol_z and ready:
            return (th_a, d_a, under_a), False, None
        return (th_a, r0, under_a), False, src_chamber  # round and to the height under it; wait

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        task: WaferTransfer = self.env.task
        h, fab = task.handler, task.fab
        dt = task.twin.control_dt
        w = task.current()
        prev = task.decode(task.pending[-1]) if task.pending else h.rates
        vac_now = float(task.pending[-1][3]) > 0 if task.pending else h.vacuum_on
        q = list(h.q_target)
        for a in task.pending:  # where the actions in flight (control latency) will take the set-points
            for k, rate in enumerate(task.decode(a)):
                q[k] += rate * h.speed_scale * dt
        goal, vac, wait = self._move(task, w, q, vac_now, prev)
        if h.grip < 1.0 and w is not None and (vac or self._on_paddle(task, w)):
            # the vacuum gauge reads low: brake gently (within what the weak grip holds) and hold
            # still, the wafer on the paddle, until the vacuum is back
            a = [k * self.PAUSE_ACCEL for k in self.ACCEL]
            rates = [min(max(0.0, r - a[k] * dt), r + a[k] * dt) for k, r in enumerate(prev)]
            return np.array([*task.encode(rates), 1.0 if vac else -1.0], dtype=np.float32)
        target = [q[k] if goal[k] is None else goal[k] for k in range(3)]
        target[0] = q[0] + math.atan2(math.sin(target[0] - q[0]), math.cos(target[0] - q[0]))
        errs = [target[k] - q[k] for k in range(3)]
        if wait is not None and all(abs(e) < tol for e, tol in zip(errs, self.ARRIVED, strict=True)):
            cyc = fab.cycles[wait]
            src = self._source(task, w)
            busy = cyc.state != "done" if wait == src[0] else cyc.state != "empty"
            if busy:  # there: wait for the chamber, braking to a stop
                errs = [0.0, 0.0, 0.0]
        rates = [self._axis_rate(k, errs[k], prev[k], h.spec.max_rates[k], dt) for k in range(3)]
        return np.array([*task.encode(rates), 1.0 if vac else -1.0], dtype=np.float32)
