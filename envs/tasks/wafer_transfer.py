"""WaferTransfer: carry wafers from their cassette slots through the load lock into the process
chamber and back, without touching anything."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from envs.core import Task

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

    Observations (``state``, 31 numbers): cos and sin of the turn, the extension and the height
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

    def act(self, action: list[float]) -> None:
        rates = self.handler.spec.max_rates
        self.handler.command(action[0] * rates[0], action[1] * rates[1], action[2] * rates[2])
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
        if w.held:
            d = math.dist(w.xyz, self.point(self.fab.next_place(w)))
            return HELD + CARRY * (1.0 - math.tanh(DIST_SCALE * d))
        return APPROACH * (1.0 - math.tanh(DIST_SCALE * math.dist(pad, w.xyz)))

    def evaluate(self) -> dict[str, Any]:
        fab, events = self.fab, self.twin.log.events
        done = sum(w.stage >= STAGES for w in fab.wafers)
        contacts = sum(e.kind == "wafer_contact" for e in events)
        failed = contacts > 0 or any(e.kind in ("dropped", "early_pick") for e in events)
        success = done == len(fab.wafers) and not failed
        transfers = sum(w.stage for w in fab.wafers)
        total = STAGES * len(fab.wafers)
        progress = 1.0 if success else min(1.0, (transfers + self.transfer_progress()) / total)
        gained = 0.0 if self._progress is None else progress - self._progress
        self._progress = progress
        new, self._contacts = contacts - self._contacts, contacts
        info: dict[str, Any] = {"wafers_done": done, "progress": progress}
        if success or failed:
            info["kpis"] = self.twin.kpis()
        return {"success": success, "done": success or failed, "gained": gained - CONTACT_PENALTY * new, "info": info}

    def reward(self, ev: dict[str, Any]) -> float:
        if self.reward_type == "sparse":
            return float(ev["success"])
        return min(1.0, ev["gained"])

    def terminated(self, ev: dict[str, Any]) -> bool:
        return bool(ev["done"])


class WaferTransferExpert:
    """A scripted wafer handler: for each transfer, retract, turn to the station and set the
    height just under the wafer (or just over the ledges), extend, lift with the vacuum on (or
    lower and let go), retract; every axis on a smooth profile within accelerations the vacuum
    holds (extension 1.5 m/s^2, turn 4 rad/s^2, lift 0.5 m/s^2), and it waits for a chamber's
    cycle to end before it reaches in."""

    ACCEL = (4.0, 1.5, 0.5)
    PAUSE_ACCEL = 0.15  # share of ACCEL it brakes with while the vacuum is weak
    ARRIVED = (1.5e-3, 1e-3, 3e-4)  # rad, m, m from a waypoint that count as there (noise in the
    # commands keeps the set-points from settling much closer)
    UNDER = 0.006  # metres the paddle's centre passes under a wafer's ledges
    OVER = 0.003  # metres a carried wafer's paddle centre rides above the ledges

    def __init__(self, env) -> None:
        self.env = env.unwrapped
        self.reset()

    def reset(self) -> None:
        self._plan: list[tuple[tuple[float | None, float | None, float | None], bool, str | None]] = []
        self._rates = [0.0, 0.0, 0.0]

    def _station(self, task: WaferTransfer, place: tuple[str, int]) -> tuple[float, float, float]:
        s = task.fab.by_name[place[0]]
        rx, ry = task.handler.config.position
        return math.atan2(s.xy[1] - ry, s.xy[0] - rx), math.hypot(s.xy[0] - rx, s.xy[1] - ry), s.heights[place[1]]

    def _make_plan(self, task: WaferTransfer, w) -> None:
        spec = task.handler.spec
        r0 = spec.min_reach
        th_a, d_a, h_a = self._station(task, w.place)
        th_b, d_b, h_b = self._station(task, task.fab.next_place(w))
        src = w.place[0] if w.place[0] in task.fab.cycles else None
        dst = task.fab.next_place(w)[0]
        dst = dst if dst in task.fab.cycles else None
        self._plan = [
            ((None, r0, None), False, None),
            ((th_a, r0, h_a - self.UNDER), False, src),  # waits for the source chamber's cycle to end
            ((th_a, d_a, h_a - self.UNDER), False, None),
            ((th_a, d_a, h_a + self.OVER), True, None),
            ((th_a, r0, h_a + self.OVER), True, None),
            ((th_b, r0, h_b + self.OVER), True, dst),  # and for the destination to be free
            ((th_b, d_b, h_b + self.OVER), True, None),
            ((th_b, d_b, h_b - self.UNDER), False, None),
            ((th_b, r0, h_b - self.UNDER), False, None),
        ]

    def _axis_rate(self, k: int, err: float, prev: float, vmax: float, dt: float) -> float:
        a = self.ACCEL[k]
        want = math.copysign(min(vmax, math.sqrt(2 * 0.6 * a * abs(err)), abs(err) / dt), err)  # brakes early
        return min(max(want, prev - a * dt), prev + a * dt)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        task: WaferTransfer = self.env.task
        h, fab = task.handler, task.fab
        dt = task.twin.control_dt
        w = task.current()
        if w is None:
            return np.zeros(4, dtype=np.float32)
        if not self._plan and w.place is not None and not w.held:  # the last transfer's moves are done
            self._make_plan(task, w)
        if not self._plan:
            return np.array([0, 0, 0, -1.0], dtype=np.float32)
        goal, vac, wait = self._plan[0]
        if h.grip < 1.0 and (vac or w.held):
            # the vacuum gauge reads low: brake gently (within what the weak grip holds) and hold
            # still, the wafer on the paddle, until the vacuum is back
            a = [k * self.PAUSE_ACCEL for k in self.ACCEL]
            self._rates = [min(max(0.0, r - a[k] * dt), r + a[k] * dt) for k, r in enumerate(self._rates)]
            rates = [r / m for r, m in zip(self._rates, h.spec.max_rates, strict=True)]
            return np.array([*rates, 1.0 if vac else -1.0], dtype=np.float32)
        q = list(h.q_target)
        for a in task.pending:  # where the actions in flight (control latency) will take the set-points
            for k in range(3):
                q[k] += a[k] * h.spec.max_rates[k] * h.speed_scale * dt
        target = [q[k] if goal[k] is None else goal[k] for k in range(3)]
        target[0] = q[0] + math.atan2(math.sin(target[0] - q[0]), math.cos(target[0] - q[0]))
        errs = [target[k] - q[k] for k in range(3)]
        rates = [self._axis_rate(k, errs[k], self._rates[k], h.spec.max_rates[k], dt) for k in range(3)]
        arrived = all(abs(e) < tol for e, tol in zip(errs, self.ARRIVED, strict=True))
        if arrived and wait is not None:
            cyc = fab.cycles[wait]
            busy = cyc.state != "done" if wait == (w.place[0] if w.place else None) else cyc.state != "empty"
            if busy:
                arrived = False
        if arrived:
            self._plan.pop(0)
        self._rates = rates
        return np.array([rates[k] / h.spec.max_rates[k] for k in range(3)] + [1.0 if vac else -1.0], dtype=np.float32)
