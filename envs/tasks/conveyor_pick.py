"""ConveyorPick: pick parts off a moving belt into a bin before they reach its end."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from envs.core import Feature, Task, tool_features, tool_state
from envs.motion import act_towards, planned_ee, planned_tool, route_length, via_around_base
from twin.parts import TERMINAL, Part

_NO_PART = (0.0,) * 11  # the target-part block of the observation when no part is in play

# The stages of one part's pick, as shares of that part's progress (a placed part counts 1).
INTERCEPT = 0.3  # tool approaching the part: INTERCEPT * (1 - tanh(5 * tool-part distance))
GRASP = 0.2  # the part is held
LIFT = 0.2  # held and raised up to LIFT_CLEAR above the belt
LIFT_CLEAR = 0.08  # metres above its height on the belt that count as clear of it
CARRY = 0.2  # held, moving towards the drop point over the bin: CARRY * (1 - tanh(5 * distance))
RELEASED = INTERCEPT + GRASP + LIFT + CARRY  # let go over the bin, still falling into it


class ConveyorPick(Task):
    """Pick every arriving part off the conveyor and place it in the bin.

    **Task description:** parts (cubes and cylinders) arrive one by one on a moving belt. The
    Panda must grasp each (parallel-jaw friction grasp, or suction in a suction layout), lift it
    off the belt and release it inside the bin before it reaches the beam-break at the belt's
    end. Actions: tool-position delta (3-D, up to 3 cm per 50 ms step) and a tool command
    (> 0 closes the gripper / switches suction on).

    **Randomizations:** the feeder's seeded part stream: arrival times, part types, position
    across the belt and yaw of each part.

    **Success conditions:** every part of the episode is placed in the bin. The episode
    terminates when every part is placed, missed (reached the end) or lost (dropped outside
    the bin); a 32 s time limit truncates it.

    **Difficulty knobs** (env kwargs, applied to the layout's first feeder and conveyor):
    ``parts`` (parts per episode, 1-50), ``belt_speed`` (m/s, 0.02-0.3) and
    ``arrival_interval`` (seconds between arrivals: a number, or a ``[low, high]`` range drawn
    uniformly; 1-60 s).

    Observations (``state``, 23 numbers): tool position (3) and velocity (3), finger opening
    (1); for the target part (the held part, else the one furthest down the belt): position (3),
    position relative to the tool (3), velocity (3), present (1), held (1); bin centre relative
    to the tool (3); seconds to the next arrival (1, capped at 10); fraction of the episode's
    parts still to come or in play (1).

    **Dense reward** (staged and gated, at most 1 per step): the episode's progress, in parts,
    is the number placed plus the stage reached on the target part:

    ====================  =============================================================
    stage                 progress on the target part
    ====================  =============================================================
    intercept             0.3 * (1 - tanh(5 * tool-part distance)), part on the belt
    grasp                 + 0.2 once the part is held (gates the stages below)
    lift                  + 0.2 * min(1, rise above its height on the belt / 8 cm); 1
                          over the bin's opening
    carry                 + 0.2 * (1 - tanh(5 * part-drop point distance)), drop point
                          10 cm above the bin's rim
    release               0.9 while the released part falls into the bin (over its opening)
    placed                1 (the part counts among the placed; the next part's stages
                          begin)
    ====================  =============================================================

    Each step's reward is the change in progress: the reward for a stage is paid when it is
    reached and taken back when it is lost (a dropped part, a part that rides off the belt), so
    an episode's return is the number of parts placed (less the progress at reset) and nothing
    is gained by holding a part instead of placing it or by prolonging the episode. The largest
    step is a placement (at most 1, clipped there should two parts settle in one step).
    ``info["stage"]`` names the target part's stage and ``info["progress"]`` the progress.
    **Sparse reward:** +1 per placement.

    ``info`` carries ``is_success``, ``parts_placed``, ``parts_arrived``, ``stage`` and
    ``progress`` every step and ``kpis`` (see ``twin.events.compute_kpis``) when the last part
    is done.
    """

    layout = "default"
    obs_modes = ("state", "rgb")
    obs_camera = "scene"
    shares: ClassVar[dict[str, float]] = {
        "intercept": INTERCEPT,
        "grasp": GRASP,
        "lift": LIFT,
        "carry": CARRY,
        "release": RELEASED,
    }
    """Each stage's share of a part's progress (a placed part is 1; see the reward table)."""
    distance_scale: ClassVar[float] = 5.0
    """Per metre: the intercept and carry stages pay their shares times 1 - tanh(distance_scale *
    the tool-part and part-drop point distances)."""
    grasp_when_gripped: ClassVar[bool] = False
    """Pay the grasp stage as soon as the fingers grip the part (else once it is lifted off)."""
    workspace = ((-0.7, -0.7, 0.755), (0.75, 0.3, 1.25))
    knob_names = ("parts", "belt_speed", "arrival_interval")
    curriculum_stages = ({"parts": 1, "belt_speed": 0.05}, {"parts": 1}, {"parts": 2})
    """One part on a belt at half speed, one part, two parts; then the task as made."""

    def __init__(self, twin, reward_type: str = "dense") -> None:
        super().__init__(twin, reward_type)
        if not twin.conveyors or not twin.bins or not twin.layout.feeders:
            raise ValueError("ConveyorPick needs a layout with a conveyor, a feeder and a bin")
        self.bin = twin.bins[0]
        self.conveyor = next(iter(twin.conveyors.values()))
        self._drop_list = self.drop_for_bin(self.bin)
        self.drop_point = np.array(self._drop_list)
        self._seen = 0
        self._scan_cache: tuple | None = None

    @classmethod
    def adapt_layout(
        cls,
        layout,
        parts: int | None = None,
        belt_speed: float | None = None,
        arrival_interval: float | tuple[float, float] | list[float] | None = None,
        **unknown: Any,
    ):
        """The layout with the difficulty knobs applied (see the class docstring)."""
        if unknown:
            raise ValueError(
                f"{cls.__name__} has no setting {', '.join(map(repr, unknown))} "
                f"(its settings: {', '.join(cls.knob_names)})"
            )
        if not layout.feeders or not layout.conveyors:
            raise ValueError(f"{cls.__name__}'s knobs need a layout with a feeder and a conveyor")
        feeder = layout.feeders[0]
        feeder_changes: dict[str, Any] = {}
        if parts is not None:
            if isinstance(parts, bool) or not isinstance(parts, int | np.integer) or not 1 <= parts <= 50:
                raise ValueError(f"{cls.__name__}: parts must be a whole number from 1 to 50, got {parts!r}")
            feeder_changes["parts_per_episode"] = int(parts)
        if arrival_interval is not None:
            lo_hi = _range(arrival_interval, f"{cls.__name__}: arrival_interval")
            if not 1.0 <= lo_hi[0] <= lo_hi[1] <= 60.0:
                raise ValueError(
                    f"{cls.__name__}: arrival_interval must lie within 1-60 s with low <= high, got {arrival_interval!r}"
                )
            feeder_changes["interval"] = lo_hi
        feeders = [feeder.model_copy(update=feeder_changes), *layout.feeders[1:]]
        conveyors = list(layout.conveyors)
        if belt_speed is not None:
            if isinstance(belt_speed, bool) or not isinstance(belt_speed, int | float) or not 0.02 <= belt_speed <= 0.3:
                raise ValueError(
                    f"{cls.__name__}: belt_speed must be a number of m/s from 0.02 to 0.3, got {belt_speed!r}"
                )
            name = feeder.conveyor
            k = int(name.rpartition("-")[2]) if name.startswith("conveyor-") else 0
            conveyors[k] = conveyors[k].model_copy(update={"speed": float(belt_speed)})
        return layout.model_copy(update={"feeders": feeders, "conveyors": conveyors})

    def reach_points(self) -> list[tuple[str, tuple[float, float, float]]]:
        """Above each bin the task drops into."""
        return [(f"the drop point above {b.name}", tuple(self.drop_for_bin(b))) for b in self.task_bins()]

    def task_bins(self) -> list:
        """The bins parts go into."""
        return [self.bin]

    def drop_for_bin(self, b) -> list[float]:
        """Where the tool releases a part over bin ``b``: 10 cm above its rim."""
        return (b.center + np.array([0.0, 0.0, b.height + 0.1])).tolist()

    def reset(self, rng: np.random.Generator) -> None:
        self._seen = 0
        self._scan_cache = None
        self._progress: float | None = None

    def _scan(self) -> tuple[Part | None, float, int, int, int, int, bool]:
        """One pass over the parts per step: target part, seconds to the next arrival, and counts.

        Returns (target, to_next, total, left, placed, arrived, done), cached until the next step.
        """
        steps = self.twin.world.steps
        if self._scan_cache is not None and self._scan_cache[0] == steps:
            return self._scan_cache[1]
        t = self.twin.sim_time
        dx, dy = self.conveyor.dir_xy
        held = best = None
        best_along = -math.inf
        to_next, total, left, placed, arrived, done = 10.0, 0, 0, 0, 0, True
        for p in self.twin.parts:
            state = p.state
            if state == "parked":
                continue
            total += 1
            if state == "queued":
                to_next = min(to_next, p.arrival_time - t)
                left += 1
                done = False
                continue
            arrived += 1
            if state == "placed":
                placed += self.placed_right(p)
            if state in TERMINAL:
                continue
            left += 1  # in play: on the belt, held or loose
            done = False
            if state == "held" and held is None:
                held = p
            x, y, _ = p.xyz
            if x * dx + y * dy > best_along:
                best, best_along = p, x * dx + y * dy
        result = (held or best, to_next, total, left, placed, arrived, done)
        self._scan_cache = (steps, result)
        return result

    def bin_for(self, part: Part):
        """The bin ``part`` belongs in."""
        return self.bin

    def drop_for(self, part: Part) -> list[float]:
        """Where the tool releases ``part``: 10 cm above its bin's rim."""
        return self._drop_list

    def placed_right(self, part: Part) -> bool:
        """Whether a placed part lies in the bin it belongs in."""
        return True

    def target_part(self) -> Part | None:
        """The held part, else the in-play part furthest down the belt."""
        return self._scan()[0]

    def observe(self) -> np.ndarray:
        robot = self.robot
        ex, ey, ez = robot.ee_xyz()
        part, to_next, total, left, _, _, _ = self._scan()
        if part is None:
            part_obs = _NO_PART
        else:
            px, py, pz = part.xyz
            held = 1.0 if part.state == "held" else 0.0
            part_obs = (px, py, pz, px - ex, py - ey, pz - ez, *part.vel_xyz, 1.0, held)
        dx, dy, dz = self._drop_list
        return np.array(
            (
                ex,
                ey,
                ez,
                *robot.ee_vel_xyz(),
                robot.finger_width(),
                *part_obs,
                dx - ex,
                dy - ey,
                dz - ez,
                to_next,
                left / max(total, 1),
                *self._more_obs(ex, ey, ez, part),
            ),
            dtype=np.float32,
        )

    def _more_obs(self, ex: float, ey: float, ez: float, part: Part | None) -> tuple[float, ...]:
        """Numbers a subclass appends to the observation (given the tool position and target part)."""
        return ()

    def evaluate(self) -> dict[str, Any]:
        events = self.twin.log.events
        placed_now = bad_now = 0
        if len(events) > self._seen:
            for e in events[self._seen :]:
                placed_now += e.kind == "placed" and self.placed_right(self.twin.part(e.part))
                bad_now += e.kind in ("missed", "dropped")
            self._seen = len(events)
        part, _, n_total, _, n_placed, n_arrived, done = self._scan()
        stage, share = self._stage(part)
        progress = n_placed + share
        gained = 0.0 if self._progress is None else progress - self._progress
        self._progress = progress
        info: dict[str, Any] = {
            "parts_placed": n_placed,
            "parts_arrived": n_arrived,
            "stage": stage,
            "progress": progress,
        }
        if done:
            info["kpis"] = self.twin.kpis()
        return {
            "success": done and n_placed == n_total,
            "done": done,
            "placed_now": placed_now,
            "bad_now": bad_now,
            "gained": gained,
            "share_done": progress / n_total if n_total else 0.0,
            "info": info,
        }

    def _stage(self, part: Part | None) -> tuple[str, float]:
        """The target part's stage and its share of progress (see the class docstring)."""
        if part is None:
            return "none", 0.0
        xyz = part.xyz
        w, scale = self.stage_shares()
        if part.state == "held":
            if self.bin_for(part).above(xyz):
                lift = 1.0  # over the bin is clear of the belt: lowering into it costs nothing
            else:
                rest = float(part.arrival_pose[0][2]) if part.arrival_pose is not None else self.conveyor.surface_z
                lift = min(1.0, max(0.0, (xyz[2] - rest) / LIFT_CLEAR))  # from where it rode on the belt
            carry = 1.0 - math.tanh(scale * self.carry_distance(xyz, part))
            stage = "carry" if lift >= 1.0 else "lift" if lift > 0.25 else "grasp"
            return stage, w["intercept"] + w["grasp"] + w["lift"] * lift + w["carry"] * carry
        if part.state == "loose" and self.bin_for(part).above(xyz):
            return "release", w["release"]
        if self.robot.gripping == part.id and self.grasp_when_gripped:
            return "grasp", w["intercept"] + w["grasp"]
        return "intercept", w["intercept"] * (1.0 - math.tanh(scale * math.dist(xyz, self.robot.ee_xyz())))

    def carry_distance(self, xyz: np.ndarray, part: Part) -> float:
        """Metres from a held part at ``xyz`` to its drop point, as the carry stage measures them."""
        return math.dist(xyz, self.drop_for(part))

    def stage_shares(self) -> tuple[dict[str, float], float]:
        """The stages' shares of a part's progress and the distance scale (per metre)."""
        return self.shares, self.distance_scale

    def reward(self, ev: dict[str, Any]) -> float:
        if self.reward_type == "sparse":
            return float(ev["placed_now"])
        return min(1.0, ev["gained"])

    def terminated(self, ev: dict[str, Any]) -> bool:
        return bool(ev["done"])


def _range(value: Any, name: str) -> tuple[float, float]:
    """A number or a [low, high] pair as a (low, high) tuple of finite floats."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        pair = (float(value), float(value))
    elif (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        pair = (float(value[0]), float(value[1]))
    else:
        raise ValueError(f"{name} must be a number or a [low, high] pair, got {value!r}")
    if not all(map(math.isfinite, pair)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return pair


def pick_features(bins: int = 1) -> list[Feature]:
    """ConveyorPick's state observation (``-v0``'s numbers; BinSort adds its own after them)."""
    pos, rel, vel = (-10.0, 10.0), (-10.0, 10.0), (-5.0, 5.0)
    out: list[Feature] = [(f"tool_{a}", "m", *pos) for a in "xyz"]
    out += [(f"tool_v{a}", "m/s", *vel) for a in "xyz"]
    out += [("finger_opening", "m", 0.0, 0.1)]
    out += [(f"part_{a}", "m", *pos) for a in "xyz"]
    out += [(f"part_minus_tool_{a}", "m", *rel) for a in "xyz"]
    out += [(f"part_v{a}", "m/s", *vel) for a in "xyz"]
    out += [("part_present", "0/1", 0.0, 1.0), ("part_held", "0/1", 0.0, 1.0)]
    out += [(f"drop_minus_tool_{a}", "m", *rel) for a in "xyz"]
    out += [("seconds_to_next_part", "s (capped at 10)", 0.0, 10.0), ("parts_left", "share", 0.0, 1.0)]
    return out


class PickV1:
    """The ``-v1`` changes of the pick-and-place tasks (ConveyorPick, BinSort), over ``-v0``.

    * The observation ends with the tool's state: told to close (0/1), seconds since it was
      told to close or open (capped at 1), and whether it grips a part (0/1), as a gripper's
      controller reports them; the scripted expert acts on them, so a student can too.
    * Rewards that teach: small shaping stages (a grasp counts once the fingers grip), the
      placement the largest step of all, and the progress on a part still unplaced when the time
      limit ends the episode taken back on that step.
    """

    shares: ClassVar[dict[str, float]] = {"intercept": 0.1, "grasp": 0.1, "lift": 0.1, "carry": 0.15, "release": 0.5}
    staged_shares: ClassVar[dict[str, float]] = {
        "intercept": 0.1,
        "grasp": 0.1,
        "lift": 0.2,
        "carry": 0.3,
        "release": 0.8,
    }
    """The staged reward's stages: each step after the grip pays more than holding still (lifting
    +0.2, carrying up to +0.3 more), and letting go over the bin more than any held state."""
    staged_distance_scale: ClassVar[float] = 1.5
    """Per metre: the drop point is about 1.3 m from where a part is picked, around the arm's
    base (and the tool starts half a metre from an arriving part); at the dense reward's scale (5
    per metre) the carry stage pays nothing until the last 30 cm of it."""
    grasp_when_gripped = True
    settles_at_time_limit = True
    reward_types = ("dense", "sparse", "staged")

    def reward(self, ev: dict[str, Any]) -> float:
        if self.reward_type == "staged":
            return float(ev["share_done"])
        return super().reward(ev)

    def carry_distance(self, xyz: np.ndarray, part: Part) -> float:
        if self.reward_type == "staged":  # along the route around the arm's base, as the expert goes
            return route_length(xyz, self.drop_for(part), self.robot.base_position)
        return super().carry_distance(xyz, part)

    def stage_shares(self) -> tuple[dict[str, float], float]:
        if self.reward_type == "staged":
            return self.staged_shares, self.staged_distance_scale
        return super().stage_shares()

    def terminated(self, ev: dict[str, Any]) -> bool:
        # staged: the episode runs to its time limit, a placed part paying on every step after
        return self.reward_type != "staged" and super().terminated(ev)

    def observe(self) -> np.ndarray:
        return np.concatenate([super().observe(), np.asarray(tool_state(self.robot), dtype=np.float32)])

    def observation_features(self) -> list[Feature]:
        return self.base_features() + tool_features()

    def base_features(self) -> list[Feature]:
        return pick_features()

    def unsettled(self) -> float:
        if self.reward_type != "dense" or self._progress is None:
            return 0.0
        return max(0.0, self._progress - self._scan()[4])  # the progress beyond the parts placed


class ConveyorPickV1(PickV1, ConveyorPick):
    """ConveyorPick, version 1: the tool's state in the observation, rewards that teach.

    **Task description, randomizations, success conditions and knobs:** as ``ConveyorPick-v0``.

    **Observation** (``state``, 26 numbers): ``-v0``'s 23, then the tool's state (below). Every
    number's name, unit and range: ``observation_features()`` (the task reference lists them).

    ==================  ================  ==========
    feature             unit              range
    ==================  ================  ==========
    tool x, y, z        m                 [-10, 10]
    tool velocity (3)   m/s               [-5, 5]
    finger opening      m                 [0, 0.1]
    part x, y, z        m                 [-10, 10]
    part - tool (3)     m                 [-10, 10]
    part velocity (3)   m/s               [-5, 5]
    part present        0/1               [0, 1]
    part held           0/1               [0, 1]
    drop - tool (3)     m                 [-10, 10]
    to next part        s (capped at 10)  [0, 10]
    parts left          share             [0, 1]
    tool closed         0/1               [0, 1]
    tool switched       s (capped at 1)   [0, 1]
    tool gripping       0/1               [0, 1]
    ==================  ================  ==========

    **Dense reward:** each step earns the change in progress (parts placed plus the target
    part's stage), as in ``-v0``, with these stages:

    ====================  ==============================================================
    stage                 progress on the target part
    ====================  ==============================================================
    intercept             0.1 * (1 - tanh(5 * tool-part distance))
    grasp                 0.2 once the fingers grip the part
    lift                  + 0.1 * min(1, rise above the belt / 8 cm)
    carry                 + 0.15 * (1 - tanh(5 * part-drop point distance))
    release               0.5 while it falls into the bin (letting go there pays)
    placed                1: the largest step of a part (+0.5)
    time limit            the target part's progress is taken back on the last step
    ====================  ==============================================================

    A missed or dropped part's progress is taken back when it is lost. **Sparse reward:** +1 per
    placement.

    **Staged reward** (``reward_type="staged"``, for learners without demonstrations): each step
    earns the progress itself, as a share of the episode's parts (0 to 1), not its change. The
    episode is never terminated, only truncated at its time limit, so a placed part pays on every
    step after it and a lost one pays nothing more (robotics suites' dense rewards work this way:
    being near the part pays while it lasts, which a learner that starts from nothing can find).
    Its stages are wider and larger after the grip than the dense reward's, so that every step
    from the grip to the bin pays more than the one before (holding a part still on the belt is
    the plateau learners without demos stop on):

    ====================  ==============================================================
    stage                 progress on the target part
    ====================  ==============================================================
    intercept             0.1 * (1 - tanh(1.5 * tool-part distance))
    grasp                 0.2 once the fingers grip the part
    lift                  + 0.2 * min(1, rise above the belt / 8 cm)
    carry                 + 0.3 * (1 - tanh(1.5 * part-drop point distance)), the
                          distance along the route around the arm's base where the
                          straight path passes within 40 cm of its axis (the arm cannot
                          fold through itself): about 1.3 m from where a part is picked
    release               0.8 while it falls into the bin
    placed                1
    ====================  ==============================================================

    Success is reported as in the other rewards.
    """


class ConveyorPickExpert:
    """A scripted picker: intercept the part on the belt, grasp, lift, carry to the bin, release.

    It remembers nothing between calls: each call works out from the twin's state where the pick
    stands (what the tool grips, whether the gripper is closed or still opening, where the tool is
    against the part and the bin, with hysteresis bands on those distances), so it can be asked at
    any state, as DAgger asks it of the states a learner visits.
    """

    HOVER = 0.07  # metres above the part before descending
    MIN_GRASP = 0.028  # lowest grasp point above the belt: the fingertips, 11 mm below it, stay clear
    # of the belt even when the arm overshoots its descent by a centimetre
    LIFT_Z = 0.93
    RELEASE_Z = 0.84
    OPENED = 0.035  # metres between the fingers that count as open (fully open: 0.08)
    SETTLE = 0.25  # seconds the fingers close on a part before it is lifted
    OPENING = 0.3  # seconds the fingers take to open clear of a part they held

    def __init__(self, env) -> None:
        self.task: ConveyorPick = env.unwrapped.task

    def reset(self) -> None:
        """Nothing to forget: the expert keeps no state between calls."""

    def _act(self, ee: np.ndarray, target: np.ndarray, close: bool, speed: float = 1.0) -> np.ndarray:
        return act_towards(ee, target, close, self.task.max_step, speed)

    def _via(self, ee: np.ndarray, goal: np.ndarray) -> np.ndarray:
        return via_around_base(ee, goal, self.task.robot.base_position)

    def grasp_point(self, part: Part) -> np.ndarray:
        """Where the fingers close on ``part``: leading the moving part by the controller's lag of
        about two control steps (and the actions in flight), a little above its centre so the
        fingertips stay clear of the belt."""
        task = self.task
        lead = (2 + len(task.pending)) * task.twin.control_dt
        grasp = part.pos + part.vel * lead + np.array([0.0, 0.0, 0.006])
        if part.spec.half_height < self.MIN_GRASP - 0.006:  # a small part: keep the fingertips off the belt
            grasp[2] = max(grasp[2], task.conveyor.surface_z + self.MIN_GRASP)
        return grasp

    def drop_for(self, part: Part) -> list[float]:
        """Where it releases ``part`` (over the bin it belongs in)."""
        return self.task.drop_for(part)

    def _with_belt(self, ee: np.ndarray) -> np.ndarray:
        """The tool's target a step ahead while it rides along with the belt (closing on a part)."""
        task = self.task
        lead = (1 + len(task.pending)) * task.twin.control_dt
        return ee + task.conveyor.velocity * lead

    def __call__(self, obs: Any) -> np.ndarray:
        task = self.task
        robot = task.robot
        ee = planned_ee(task)
        part = task.target_part()
        gripped = robot.gripping
        suction = not robot.tool.joints
        closed = planned_tool(task)
        if part is not None and gripped == part.id and closed:
            if not suction and part.state != "held" and robot.tool_switched_s < self.SETTLE:
                return self._act(ee, self._with_belt(ee), close=True)  # let the grip build up
            return self._carry(ee, part)
        if closed:  # closed (or suction on, or about to be) without a part in it
            closing = (
                part is not None
                and part.state == "on_conveyor"
                and np.linalg.norm(ee - part.pos - (0.0, 0.0, 0.006))
                < 0.025  # not led: the part jolts as it is gripped
                and (suction or robot.finger_width() > 0.004)
            )
            if closing:  # the fingers are on their way round the part: ride along with the belt
                return self._act(ee, self._with_belt(ee), close=True)
            return self._act(ee, ee, close=False)  # missed, slipped or released: let go first
        if not suction and (robot.finger_width() < self.OPENED or robot.tool_switched_s < self.OPENING):
            return self._act(ee, ee, close=False)  # still opening: let the fingers clear the part
        # only parts riding the belt: a part just released is still in play until it settles in the
        # bin, and chasing it there would drive the fingers into the cell
        if part is None or part.state != "on_conveyor" or float(part.pos @ task.conveyor.direction) <= -0.5:
            waiting = task.conveyor.center + np.array([-0.25, 0.0, 0.0])
            waiting[2] = self.LIFT_Z
            return self._act(ee, waiting, close=False)
        grasp = self.grasp_point(part)
        if np.linalg.norm(ee - grasp) < 0.008:
            return self._act(ee, grasp, close=True)
        hover = grasp + np.array([0.0, 0.0, self.HOVER])
        xy = float(np.linalg.norm((ee - grasp)[:2]))
        # over the part (a slowed drive trails a moving part by more than a centimetre), or on the way down
        over = xy < 0.015 and abs(ee[2] - hover[2]) < 0.03
        descending = xy < 0.02 and ee[2] < hover[2] - 0.01
        if over or descending:  # down onto the part, slower over the last centimetres (the arm lags)
            return self._act(ee, grasp, close=False, speed=1.0 if ee[2] > grasp[2] + 0.04 else 0.5)
        return self._act(ee, hover, close=False)

    def _carry(self, ee: np.ndarray, part: Part) -> np.ndarray:
        """The part is in the fingers: lift it straight up, carry it over its bin, lower, release.
        The part, not the tool, goes over the bin's centre: a part held off-centre in the fingers
        would otherwise land on the rim."""
        drop = np.array(self.drop_for(part), dtype=float)
        if part.state == "held":
            drop[:2] -= np.asarray(part.xyz[:2]) - np.asarray(self.task.robot.ee_xyz()[:2])
        xy = float(np.hypot(ee[0] - drop[0], ee[1] - drop[1]))
        if xy < 0.02 or (xy < 0.04 and ee[2] < self.LIFT_Z - 0.01):  # over the bin: lower, then let go
            if ee[2] < self.RELEASE_Z + 0.01 and xy < 0.015:
                return self._act(ee, ee, close=False)
            return self._act(ee, np.array([drop[0], drop[1], self.RELEASE_Z]), close=True, speed=0.7)
        if part.state != "held" or ee[2] < self.LIFT_Z - 0.03:  # lift straight up, clear of the belt
            return self._act(ee, np.array([ee[0], ee[1], self.LIFT_Z]), close=True)
        above_bin = np.array([drop[0], drop[1], self.LIFT_Z])
        return self._act(ee, self._via(ee, above_bin), close=True, speed=0.7)
