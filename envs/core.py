"""The Gymnasium side: a Task poses a problem on a Twin, FactoryEnv exposes it.

A task is robot-agnostic and small: it says what to randomise on reset, what to observe, how to
score (``evaluate()`` returns a dict from which reward, termination and info derive) and how an
expert would act. ``FactoryEnv`` does everything else once: spaces, action checks and clipping,
end-effector control, observation modes, rendering.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from twin import Twin
from twin.faults import side_rng
from twin.layout import FAULT_FAMILIES, CellLayout, find_layout, load_layout, with_robot, with_variation
from twin.robots import can_reach, reach_coverage

OBS_BOUND = 1000.0
"""Every feature of a state (and goal) observation lies in [-OBS_BOUND, OBS_BOUND], in its own
units, and observations are clipped to it. No feature comes near it in operation (metres within
a cell at most 100 m across, m/s, newtons, seconds to the next part, shares; the largest seen
over expert and random episodes of every task is 10.9), so clipping changes nothing a policy
sees; the bound makes the spaces finite, as checkers and normalisers expect."""

OBS_MODES = ("state", "goal", "rgb")

IMAGE_SIZES = (32, 256)
"""The smallest and largest side, in pixels, of the square images of the ``rgb`` observation."""
DEFAULT_IMAGE_SIZE = 84
MAX_FRAMES = 8
"""The most frames an ``rgb`` image may stack."""
PROPRIO_KEY = "proprio"
"""The key of the robot's own readings in an ``rgb`` observation (images are under camera names)."""


def arm_proprioception(robot) -> np.ndarray:
    """What an arm knows of itself, as a real one does: joint positions (rad), the tool centre
    point's position (m, from the joints) and velocity (m/s), the fingers' opening (m) and the tool's
    command (closed or suction on)."""
    q, _, _ = robot.joint_state()
    pos, vel = robot.ee_state()
    extra = np.array([robot.finger_width(), float(robot.tool_active)])
    return np.concatenate([q, pos, vel, extra]).astype(np.float32)


Feature = tuple[str, str, float, float]
"""One number of a state observation: its name, its unit, and the range it lies in (low, high)."""


def tool_features() -> list[Feature]:
    """What an arm's tool tells its controller: told to close (or suction on), for how long (or
    open, for how long), and whether it grips a part (both fingers on it, or a sealed cup)."""
    return [
        ("tool_closed", "0/1", 0.0, 1.0),
        ("tool_switched_s", "s (capped at 1)", 0.0, 1.0),
        ("tool_gripping", "0/1", 0.0, 1.0),
    ]


def tool_state(robot) -> tuple[float, float, float]:
    """The numbers of ``tool_features`` for ``robot`` now."""
    return (float(robot.tool_active), min(robot.tool_switched_s, 1.0), float(robot.gripping is not None))


NEAR_SCALE = 0.02
"""Metres at which a ``near`` feature reads tanh(1) = 0.76."""


def near(offset, scale: float = NEAR_SCALE) -> list[float]:
    """An offset (metres, per axis) magnified where it is small: ``tanh(offset / scale)``.
    Beside the raw offset, it lets a network resolve the last centimetres of an approach (a
    grasp's 6 mm tolerance is 0.3 of its range, where the raw offset's running spread of some
    0.3 m makes it 0.02), and reads +-1 beyond a few centimetres."""
    return [math.tanh(float(v) / scale) for v in offset]


def near_features(name: str, scale: float = NEAR_SCALE) -> list[Feature]:
    """The ``near`` features of the offset called ``name``."""
    return [(f"{name}_near_{a}", f"tanh(m / {scale:g})", -1.0, 1.0) for a in "xyz"]


class Task(ABC):
    """A problem posed on a twin.

    Subclasses set the class attributes and implement the abstract methods.
    """

    layout: ClassVar[str] = "default"
    """Bundled layout used when the env is made without ``layout=``."""
    drives: ClassVar[str] = "arm"
    """What the action drives: ``"arm"`` (the first robot's tool position, and its tool), or
    another robot (``"agv"``, ``"wafer_robot"``) through the task's own ``act`` over
    ``action_size`` numbers."""
    action_size: ClassVar[int] = 0
    """Numbers in the action of a task that does not drive an arm."""
    obs_modes: ClassVar[tuple[str, ...]] = ("state", "rgb")
    uses_tool: ClassVar[bool] = True
    """Whether the action has a fourth component that closes (> 0) or opens the tool."""
    max_step: ClassVar[float] = 0.03
    """Metres the tool target may move per control step at full action."""
    workspace: ClassVar[tuple[tuple[float, float, float], tuple[float, float, float]]]
    """Bounds (low, high) of the tool target, metres, world frame."""
    default_knobs: ClassVar[dict[str, Any]] = {}
    """Difficulty knobs applied when the env is made without them."""
    curriculum_stages: ClassVar[tuple[dict[str, Any], ...]] = ()
    """Easier settings of the knobs, easiest first, for a difficulty curriculum
    (``agents.collect.difficulty``); the task as made comes after the last."""
    task_knobs: ClassVar[tuple[str, ...]] = ()
    """Env kwargs that set the task itself (passed to its constructor), not the layout."""
    obs_camera: ClassVar[str] = "top"
    """The camera the ``rgb`` observation carries by default (the scene camera)."""
    extra_obs_cameras: ClassVar[tuple[str, ...]] = ()
    """More cameras the ``rgb`` observation carries by default (a wrist camera)."""
    render_camera: ClassVar[str] = "overview"
    pending: Sequence[list[float]] = ()
    """Actions sent but not yet applied (control latency), oldest first; set by the env."""
    fresh_world: ClassVar[bool] = False
    """Build a new twin (and task) at every reset instead of restoring the saved state. PyBullet's
    broadphase keeps a history that ``restoreState`` does not undo, so an episode can drift from a
    fresh process's run of the same seed after many steps; a task as sensitive to it as wafer
    handling pays a new build (tens of milliseconds) for episodes that depend on their seed alone.
    Code holding ``env.unwrapped.task`` or ``.twin`` across a reset must read them again."""

    reward_types: ClassVar[tuple[str, ...]] = ("dense", "sparse")
    """The ``reward_type`` values the task has."""

    def __init__(self, twin: Twin, reward_type: str = "dense") -> None:
        if reward_type not in self.reward_types:
            kinds = ", ".join(map(repr, self.reward_types))
            raise ValueError(f"{type(self).__name__}: reward_type must be one of {kinds}, got {reward_type!r}")
        self.twin = twin
        if self.drives == "arm" and not twin.robots:
            raise ValueError(f"{type(self).__name__} needs a layout with a robot arm ([[robots]]); this one has none")
        self.robot = twin.robots[0] if twin.robots else None
        self.reward_type = reward_type

    @classmethod
    def adapt_layout(cls, layout: CellLayout, **knobs: Any) -> CellLayout:
        """The layout with the task's difficulty knobs (env kwargs) applied; none by default."""
        if knobs:
            raise ValueError(f"{cls.__name__} takes no setting {', '.join(map(repr, knobs))}")
        return layout

    def act(self, action: list[float]) -> None:
        """Apply one checked, clipped action (tasks that do not drive an arm)."""
        raise NotImplementedError

    def reset(self, rng: np.random.Generator) -> None:
        """Randomise what the twin's own reset does not (goals, markers)."""

    @abstractmethod
    def observe(self) -> np.ndarray:
        """The state observation (float32 vector)."""

    def proprioception(self) -> np.ndarray:
        """The robot's readings of itself, the ``rgb`` observation's ``proprio`` (float32 vector):
        an arm's joints and tool (``arm_proprioception``); tasks driving another robot say their own."""
        if self.robot is None:
            raise NotImplementedError(f"{type(self).__name__} drives no arm: it says no proprioception")
        return arm_proprioception(self.robot)

    @abstractmethod
    def evaluate(self) -> dict[str, Any]:
        """Success, reward terms and anything ``info`` should carry, after a step."""

    @abstractmethod
    def reward(self, ev: dict[str, Any]) -> float:
        """Reward of the last step from ``evaluate()``'s dict."""

    def terminated(self, ev: dict[str, Any]) -> bool:
        return bool(ev["success"])

    def kpis(self) -> dict[str, float]:
        """The task's own KPIs, beside the cell's (``Twin.kpis``); none by default."""
        return {}

    def reach_points(self) -> list[tuple[str, tuple[float, float, float]]]:
        """Points the task asks the tool to reach, each with what it is (the layout check covers
        machines, trays and insertions already); the env refuses an arm that cannot reach one."""
        return []

    def reach_region(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """A box (low, high corners) the task draws tool targets from, or None; the env refuses an
        arm that reaches less than ``MIN_REGION_COVERAGE`` of it."""
        return None

    def observation_features(self) -> list[Feature] | None:
        """The state observation's numbers, in order: name, unit, range (low, high). None for the
        tasks that do not declare them (the ``-v0`` ones): their numbers lie in +-``OBS_BOUND``.
        Where declared, the observation space's bounds are these ranges and observations are
        clipped to them."""
        return None

    settles_at_time_limit: ClassVar[bool] = False
    """Whether the dense reward takes back, on the step the registered time limit ends the
    episode, the progress of work not finished (a part still held, a wafer half-way): nothing is
    earned by holding on to it until the clock runs out. (A different limit given to
    ``gym.make`` truncates where it says, settling only if it is the registered one.)"""

    def unsettled(self) -> float:
        """The progress banked in the dense reward for work not finished yet (see
        ``settles_at_time_limit``)."""
        return 0.0

    def achieved_goal(self) -> np.ndarray:
        raise NotImplementedError

    def desired_goal(self) -> np.ndarray:
        raise NotImplementedError

    def compute_reward(self, achieved: np.ndarray, desired: np.ndarray, info: Any) -> np.ndarray:
        raise NotImplementedError

    def goal_reward_spec(self) -> dict[str, Any] | None:
        """``compute_reward`` in a form a learner can evaluate with tensor operations, or None.

        ``{"type": "goal_distance", "threshold": d, "reward_type": "sparse" | "dense"}`` means
        ``-(||achieved - desired|| > d)`` (sparse) or ``-||achieved - desired||`` (dense), the
        Euclidean norm over the last axis, as float32.
        """
        return None


def _check_action(action: Any, shape: tuple[int, ...]) -> list[float]:
    """The action as floats clipped to [-1, 1]; a wrong shape, NaN or infinity raises ValueError."""
    a = action if isinstance(action, np.ndarray) and action.dtype.kind == "f" else np.asarray(action, dtype=np.float64)
    if a.shape != shape:
        raise ValueError(f"action must have shape {shape}, got {a.shape}")
    values = a.tolist()  # a few Python floats are cheaper to check and clip than an array
    if not all(map(math.isfinite, values)):
        raise ValueError(f"action contains NaN or infinite values: {values}")
    return [-1.0 if v < -1.0 else 1.0 if v > 1.0 else v for v in values]


MIN_REGION_COVERAGE = 0.95
"""Share of a task's target region an arm must reach (by its reach model) to be given the task."""


def _check_task_reach(task: Task) -> None:
    """Refuse an arm that cannot reach a point the task needs, or enough of its target region
    (naming the task, arm and point or share)."""
    spec, base = task.robot.spec, tuple(task.robot.config.base.position)
    region = task.reach_region()
    if region is not None:
        share = reach_coverage(spec.model, base, *region)
        if share < MIN_REGION_COVERAGE:
            raise ValueError(
                f"{type(task).__name__}: {task.robot.name} ({spec.title}) reaches only {share:.0%} of the task's "
                f"target region (at least {MIN_REGION_COVERAGE:.0%} needed) with its tool pointing down; use "
                "another arm or a layout that puts it within reach"
            )
    for what, point in task.reach_points():
        if not can_reach(spec.model, base, point):
            at = ", ".join(f"{v:.3g}" for v in point)
            raise ValueError(
                f"{type(task).__name__}: {task.robot.name} ({spec.title}) cannot reach {what} at ({at}) "
                "with its tool pointing down; use another arm or a layout that puts it within reach"
            )


class FactoryEnv(gym.Env):
    """A Gymnasium env running one Task on a Twin.

    Args:
        task: The Task class.
        obs_mode: ``"state"`` (Box), ``"goal"`` (Dict observation / achieved_goal /
            desired_goal, for goal-conditioned tasks) or ``"rgb"`` (Dict: one uint8 image
            (H, W, 3) per camera under the camera's name, and ``proprio``, the robot's readings of
            itself (``Task.proprioception``); none of the twin's state a robot could not sense).
        cameras: The ``rgb`` mode's cameras (layout names); default the task's ``obs_camera`` and
            ``extra_obs_cameras``.
        image_size: The side of the ``rgb`` mode's square images, 32 to 256 pixels (default 84);
            the cameras render at it.
        frames: Frames each ``rgb`` image stacks, 1 to 8 (default 1): the camera's last ``frames``
            frames along the channels, oldest first (``(H, W, 3 * frames)``), the first frame
            repeated after a reset; for a policy that must see motion (a belt's speed).
        robot_meshes: How the arms look to cameras: ``"visual"`` (their models' detailed meshes)
            or ``"collision"`` (their collision meshes, some ten times faster to render on a CPU);
            default ``"collision"`` in the ``rgb`` mode, else ``"visual"``. Physics is the same.
        reward_type: ``"dense"`` or ``"sparse"``; the pick-and-place tasks from ``-v1`` on also
            ``"staged"`` (see their reward).
        render_mode: ``None`` or ``"rgb_array"`` (640x480 frames from the ``overview`` camera).
        layout: Layout to build instead of the task's bundled one (path, name or CellLayout).
        robot: Arm model to put in place of the layout's (``"panda"`` or ``"iiwa"``), at the same
            bases with the same tools; refused when the new arm cannot reach what the cell needs.
        faults: ``"layout"`` (the layout's own ``[faults]``, none in the bundled layouts),
            ``"none"``, ``"all"`` (every fault family the cell has equipment for) or a list of
            family names (``twin.layout.FAULT_FAMILIES``); see ``twin.layout.with_variation``.
        randomize: None (the layout's own ``[randomization]``), False (none) or True (the
            layout's, else ``twin.layout.STANDARD_RANDOMIZATION``).
        **knobs: The task's difficulty settings (see its ``adapt_layout``), applied to the layout.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        task: type[Task],
        obs_mode: str = "state",
        reward_type: str = "dense",
        render_mode: str | None = None,
        layout: str | CellLayout | None = None,
        robot: str | None = None,
        faults: str | list[str] | None = "layout",
        randomize: bool | None = None,
        cameras: Sequence[str] | None = None,
        image_size: int | None = None,
        frames: int = 1,
        robot_meshes: str | None = None,
        **knobs: Any,
    ) -> None:
        if obs_mode not in task.obs_modes:
            raise ValueError(f"{task.__name__} supports obs_mode {list(task.obs_modes)}, got {obs_mode!r}")
        self._image_names, self._image_size = _check_images(obs_mode, cameras, image_size, task)
        if isinstance(frames, bool) or not isinstance(frames, int | np.integer) or not 1 <= frames <= MAX_FRAMES:
            raise ValueError(f"frames must be a whole number from 1 to {MAX_FRAMES}, got {frames!r}")
        if frames > 1 and obs_mode != "rgb":
            raise ValueError(f"frames= is a setting of obs_mode='rgb', not of obs_mode={obs_mode!r}")
        self._frames = int(frames)
        self._history: dict[str, deque[np.ndarray]] = {}
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.obs_mode = obs_mode
        self.render_mode = render_mode
        ref = layout if layout is not None else task.layout
        source = None
        knobs = {**task.default_knobs, **knobs}
        task_kwargs = {k: knobs.pop(k) for k in task.task_knobs if k in knobs}
        varied = faults != "layout" or randomize is not None
        if (knobs or robot is not None or varied) and not isinstance(ref, CellLayout):
            source = find_layout(ref)
            ref = load_layout(source)
        if robot is not None:
            if task.drives != "arm":
                raise ValueError(
                    f"{task.__name__} drives no arm (it drives the {task.drives}): it takes no robot= setting"
                )
            if not isinstance(robot, str):
                raise ValueError(f"robot must be a model name such as 'panda' or 'iiwa', got {robot!r}")
            ref = with_robot(ref, robot, str(source or "the layout"))
        if knobs:
            ref = task.adapt_layout(ref, **knobs)
        if varied:
            ref = with_variation(ref, faults, randomize, str(source or "the layout"))
        meshes = robot_meshes or ("collision" if obs_mode == "rgb" else "visual")
        self.twin = Twin(ref, source=source, robot_meshes=meshes)
        self._build = (source, task, reward_type, task_kwargs, meshes)
        self._resets = 0
        rnd = self.twin.layout.randomization
        self._latency_range, self._action_noise = rnd.latency, rnd.action_noise
        self._indicators = self.twin.layout.faults.indicators
        self._queue: deque[list[float]] = deque()
        self._noise_rng = np.random.default_rng(0)
        try:
            self.task = task(self.twin, reward_type, **task_kwargs)
            self._arm = task.drives == "arm"
            if self._arm:
                _check_task_reach(self.task)
            self.metadata = {**self.metadata, "render_fps": round(1.0 / self.twin.control_dt)}
            self._obs_cams = {n: self._camera(n) for n in self._image_names}
            self._render_cam = self._camera(task.render_camera) if render_mode == "rgb_array" else None
            n_act = (4 if task.uses_tool else 3) if self._arm else task.action_size
            self.action_space = spaces.Box(-1.0, 1.0, (n_act,), np.float32)
            self._action_shape = (n_act,)
            if self._arm:
                self._low, self._high = (tuple(float(v) for v in b) for b in self.task.workspace)
            self.observation_space = self._make_obs_space()
        except Exception:
            self.twin.close()
            raise

    def _rebuild(self) -> None:
        """A new twin and task in place of the old ones (``Task.fresh_world``)."""
        source, task_cls, reward_type, task_kwargs, meshes = self._build
        layout = self.twin.layout
        self.twin.close()
        self.twin = Twin(layout, source=source, robot_meshes=meshes)
        self.task = task_cls(self.twin, reward_type, **task_kwargs)
        self._obs_cams = {n: self._camera(n) for n in self._image_names}
        if self._render_cam is not None:
            size = (self._render_cam.width, self._render_cam.height)
            self._render_cam = self._camera(task_cls.render_camera).resized(*size)

    def _camera(self, name: str):
        try:
            return self.twin.cameras[name]
        except KeyError:
            raise ValueError(f"the layout has no camera named {name!r} (has {sorted(self.twin.cameras)})") from None

    def _make_obs_space(self) -> spaces.Space:
        self._resets += 1
        self.twin.reset(np.random.default_rng(0))
        self.task.reset(np.random.default_rng(0))
        n = self._state().shape[0]
        features = self.task.observation_features()
        if features is not None:
            if self._indicators:
                features = features + [(f"fault_{f}", "0/1", 0.0, 1.0) for f in FAULT_FAMILIES]
            if len(features) != n:
                raise ValueError(
                    f"{type(self.task).__name__} declares {len(features)} observation features, observes {n}"
                )
            self.state_features = features
            self._obs_low = np.array([f[2] for f in features], dtype=np.float32)
            self._obs_high = np.array([f[3] for f in features], dtype=np.float32)
        else:
            self.state_features = None
            self._obs_low = np.full(n, -OBS_BOUND, dtype=np.float32)
            self._obs_high = np.full(n, OBS_BOUND, dtype=np.float32)
        state = spaces.Box(self._obs_low, self._obs_high, (n,), np.float32)
        if self.obs_mode == "state":
            return state
        if self.obs_mode == "goal":
            g = self.task.achieved_goal().shape[0]
            return spaces.Dict(
                {
                    "observation": state,
                    "achieved_goal": spaces.Box(-OBS_BOUND, OBS_BOUND, (g,), np.float32),
                    "desired_goal": spaces.Box(-OBS_BOUND, OBS_BOUND, (g,), np.float32),
                }
            )
        side = self._image_size
        boxes = {k: spaces.Box(0, 255, (side, side, 3 * self._frames), np.uint8) for k in self._obs_cams}
        n_proprio = self.task.proprioception().shape[0]
        proprio = spaces.Box(-OBS_BOUND, OBS_BOUND, (n_proprio,), np.float32)
        return spaces.Dict({**boxes, PROPRIO_KEY: proprio})

    def _state(self) -> np.ndarray:
        state = self.task.observe().astype(np.float32, copy=False)
        if self._indicators:  # the layout lets the policy see which fault families are on
            state = np.concatenate([state, self.twin.fault_flags()])
        low = getattr(self, "_obs_low", None)
        if low is None:  # while the space is being made
            return np.clip(state, -OBS_BOUND, OBS_BOUND)
        return np.clip(state, low, self._obs_high)

    def _obs(self) -> Any:
        if self.obs_mode == "rgb":
            return self._images()
        state = self._state()
        if self.obs_mode == "state":
            return state
        return {
            "observation": state,
            "achieved_goal": np.clip(self.task.achieved_goal().astype(np.float32), -OBS_BOUND, OBS_BOUND),
            "desired_goal": np.clip(self.task.desired_goal().astype(np.float32), -OBS_BOUND, OBS_BOUND),
        }

    def _images(self) -> dict[str, np.ndarray]:
        """The ``rgb`` observation: each camera's frame at the policy's size, and the robot's readings."""
        side = (self._image_size, self._image_size)
        proprio = np.clip(self.task.proprioception(), -OBS_BOUND, OBS_BOUND).astype(np.float32, copy=False)
        images = {k: c.rgb(side) for k, c in self._obs_cams.items()}
        if self._frames > 1:
            for k, img in images.items():
                past = self._history.get(k)
                if past is None:  # the episode's first frame stands for the ones before it
                    past = self._history[k] = deque([img] * self._frames, maxlen=self._frames)
                else:
                    past.append(img)
                images[k] = np.concatenate(past, axis=2)
        return {**images, PROPRIO_KEY: proprio}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        lo, hi = self._latency_range
        if hi > 0 or self._action_noise > 0:  # side streams: the twin and task draw as without them
            draw = side_rng(self.np_random, "actions")
            latency = int(draw.integers(lo, hi + 1))
            self._queue = deque([[0.0] * self._action_shape[0]] * latency)
            self._noise_rng = np.random.default_rng(draw.integers(2**63))
        if self.task.fresh_world and self._resets:
            self._rebuild()
        self._resets += 1
        self.task.pending = self._queue
        self._history = {}
        self.twin.reset(self.np_random)
        self.task.reset(self.np_random)
        self._elapsed = 0
        return self._obs(), {"is_success": False}

    def _actuate(self, a: list[float]) -> list[float]:
        """The action that takes effect now: delayed by this episode's latency, with action noise."""
        if self._queue:
            self._queue.append(a)
            a = self._queue.popleft()
        if self._action_noise > 0:
            noise = self._noise_rng.normal(0.0, self._action_noise, len(a)).tolist()
            a = [min(max(v + n, -1.0), 1.0) for v, n in zip(a, noise, strict=True)]
        return a

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        a = self._actuate(_check_action(action, self._action_shape))
        task, twin = self.task, self.twin
        if self._arm:
            robot = task.robot
            step = task.max_step * robot.config.speed_override  # the pendant's override slows every move
            moved = zip(robot.ee_xyz(), a, self._low, self._high, strict=False)  # a may carry a 4th (tool) entry
            robot.move_ee_to([min(max(e + d * step, lo), hi) for e, d, lo, hi in moved])
            if task.uses_tool:
                twin.command_tool(robot, close=a[3] > 0)
        else:
            task.act(a)
        twin.step()
        ev = task.evaluate()
        info = {"is_success": bool(ev["success"]), **ev.get("info", {})}
        reward, terminated = float(task.reward(ev)), task.terminated(ev)
        self._elapsed = getattr(self, "_elapsed", 0) + 1
        limit = self._time_limit()
        if task.settles_at_time_limit and limit and self._elapsed >= limit and not terminated:
            taken = task.unsettled()  # the time limit ends it now: unfinished work earns nothing
            reward -= taken
            info["taken_back"] = taken
        return self._obs(), reward, terminated, False, info

    def _time_limit(self) -> int | None:
        """The registered time limit in steps (``gym.make`` sets the unwrapped env's spec without it)."""
        if getattr(self, "_limit", False) is False:
            try:
                self._limit = gym.spec(self.spec.id).max_episode_steps if self.spec is not None else None
            except gym.error.Error:
                self._limit = None
        return self._limit

    def task_camera_config(self):
        """Layout entry of the camera the ``rgb`` observation mode uses."""
        return self._camera(self.task.obs_camera).config

    @property
    def image_cameras(self) -> tuple[str, ...]:
        """The cameras of the ``rgb`` observation (empty in the other modes)."""
        return tuple(self._image_names)

    def set_render_size(self, width: int, height: int) -> None:
        """Render ``rgb_array`` frames at ``width`` x ``height`` pixels instead of the camera's size
        (smaller frames render faster: the CPU renderer's cost grows with the pixels)."""
        if self._render_cam is None:
            raise ValueError("set_render_size needs render_mode='rgb_array'")
        if not (16 <= width <= 4096 and 16 <= height <= 4096):
            raise ValueError(f"render size must be 16 to 4096 pixels a side, got {width}x{height}")
        self._render_cam = self._render_cam.resized(int(width), int(height))

    def kpis(self) -> dict[str, float]:
        """Production KPIs of the episode so far: the cell's and the task's own."""
        return {**self.twin.kpis(), **self.task.kpis()}

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return self._render_cam.rgb()

    def close(self) -> None:
        self.twin.close()


class FactoryGoalEnv(FactoryEnv):
    """A FactoryEnv in ``goal`` mode: the goal-env protocol (``compute_reward``) that HER uses.

    Only this class has ``compute_reward``, so checkers that recognise goal envs by that method
    (Stable-Baselines3's) see the state and image modes as the plain envs they are. Each step's
    reward is ``compute_reward`` of the observed (float32) goals, so relabelled rewards and
    collected ones agree to the last bit.
    """

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, _, terminated, truncated, info = super().step(action)
        reward = self.task.compute_reward(obs["achieved_goal"], obs["desired_goal"], info)
        return obs, float(reward), terminated, truncated, info

    def compute_reward(self, achieved_goal: np.ndarray, desired_goal: np.ndarray, info: Any) -> np.ndarray:
        """Reward for (possibly relabelled, batched) goals, as HER needs."""
        return self.task.compute_reward(achieved_goal, desired_goal, info)

    def goal_reward_spec(self) -> dict[str, Any] | None:
        """The task's ``compute_reward`` as a declaration learners evaluate on the GPU (see ``Task``)."""
        return self.task.goal_reward_spec()


def _check_images(obs_mode: str, cameras: Any, image_size: Any, task: type[Task]) -> tuple[tuple[str, ...], int]:
    """The ``rgb`` mode's cameras and image side, checked (ValueError naming the setting)."""
    if obs_mode != "rgb":
        for name, value in (("cameras", cameras), ("image_size", image_size)):
            if value is not None:
                raise ValueError(f"{name}= is a setting of obs_mode='rgb', not of obs_mode={obs_mode!r}")
        return (), DEFAULT_IMAGE_SIZE
    if image_size is None:
        image_size = DEFAULT_IMAGE_SIZE
    if isinstance(image_size, bool) or not isinstance(image_size, int | np.integer):
        raise ValueError(f"image_size must be a whole number of pixels, got {image_size!r}")
    lo, hi = IMAGE_SIZES
    if not lo <= int(image_size) <= hi:
        raise ValueError(f"image_size must be {lo} to {hi} pixels, got {image_size}")
    if cameras is None:
        names = (task.obs_camera, *task.extra_obs_cameras)
    else:
        if isinstance(cameras, str):
            cameras = [c for c in cameras.split(",") if c]
        names = tuple(cameras)
        bad = [c for c in names if not isinstance(c, str) or not c or c == PROPRIO_KEY]
        if bad or not names:
            raise ValueError(f"cameras must name one or more of the layout's cameras, got {cameras!r}")
        if len(set(names)) != len(names):
            raise ValueError(f"cameras names a camera twice: {list(names)}")
    return names, int(image_size)


def make_env(task: type[Task], obs_mode: str = "state", **kwargs: Any) -> FactoryEnv:
    """The registered envs' entry point: a FactoryGoalEnv in ``goal`` mode, else a FactoryEnv."""
    cls = FactoryGoalEnv if obs_mode == "goal" else FactoryEnv
    return cls(task, obs_mode=obs_mode, **kwargs)
