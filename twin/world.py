"""One PyBullet client behind a small, name-based API.

The rest of the twin never handles raw PyBullet body ids: bodies are registered under unique
names (``"panda-0"``, ``"conveyor-0"``, ``"part-cube-3"``) and looked up by name.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pybullet as pb
import pybullet_data
from pybullet_utils.bullet_client import BulletClient

Vec3 = Sequence[float]
Quat = Sequence[float]


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Silence what PyBullet's C code prints on connect (it writes to file descriptor 1)."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


class _Client(BulletClient):
    """BulletClient that binds each PyBullet function to its client once, not on every call.

    PyBullet's functions act on client 0 when given no ``physicsClientId``, so the client with id
    0 (the only one in a typical worker process) calls them as they are, without the keyword
    argument that every other client's calls carry.
    """

    def __getattr__(self, name: str) -> Any:
        if self._client == 0 and name != "disconnect":
            attr = getattr(pb, name)
            self.__dict__[name] = attr
            return attr
        attr = super().__getattr__(name)
        if name != "disconnect":
            self.__dict__[name] = attr
        return attr


@dataclass(frozen=True)
class Mark:
    """A square painted on a body's top face (visual only): side in metres and colour; with
    ``all_faces`` also one on each of its four sides (so it shows from any side)."""

    side: float
    rgba: tuple[float, float, float, float]
    all_faces: bool = False


class World:
    """A PyBullet physics client with a fixed physics rate and control substeps.

    Args:
        physics_hz: Physics rate; each PyBullet step advances ``1 / physics_hz`` seconds.
        substeps: Physics steps per control step (the control rate is ``physics_hz / substeps``).
        gravity: Gravity vector in m/s^2.
        gui: Open the PyBullet GUI instead of the headless DIRECT client.
        solver_iterations: Constraint solver iterations per physics step.
    """

    def __init__(
        self,
        physics_hz: float = 240.0,
        substeps: int = 12,
        gravity: Vec3 = (0.0, 0.0, -9.81),
        gui: bool = False,
        solver_iterations: int = 50,
    ) -> None:
        if physics_hz <= 0 or substeps < 1:
            raise ValueError(f"physics_hz must be > 0 and substeps >= 1, got {physics_hz}, {substeps}")
        self.physics_hz = float(physics_hz)
        self.substeps = int(substeps)
        self.gui = gui
        self.robot_meshes = "visual"
        """Which meshes arms built in this world show the cameras (``twin.robots.arm.ROBOT_MESHES``)."""
        with _quiet_stdout():
            self.client: BulletClient | None = _Client(connection_mode=pb.GUI if gui else pb.DIRECT)
        self.p.setAdditionalSearchPath(pybullet_data.getDataPath())
        self.p.setGravity(*gravity)
        self.p.setPhysicsEngineParameter(
            fixedTimeStep=self.physics_dt,
            numSubSteps=0,
            numSolverIterations=solver_iterations,
            deterministicOverlappingPairs=1,
        )
        if gui:
            self.p.configureDebugVisualizer(pb.COV_ENABLE_GUI, 0)
        self.physics_time = 0.0
        """Wall-clock seconds spent inside ``stepSimulation`` by ``step()`` (for benchmarks)."""
        self.steps = 0
        """Count of ``step()`` calls and state restores: a key for caches of body states."""
        self.substep_hooks: list = []
        """Callables run before every physics step (a vacuum gripper's hold, say)."""
        self._bodies: dict[str, int] = {}
        self._names: dict[int, str] = {}
        self.egl: bool | None = None
        """Whether cameras render with the EGL plugin; None until the first render decides."""

    # -- basics -----------------------------------------------------------------------------

    @property
    def p(self) -> BulletClient:
        """The underlying client (for the few calls this wrapper does not cover)."""
        if self.client is None:
            raise RuntimeError("the World has been closed")
        return self.client

    @property
    def physics_dt(self) -> float:
        return 1.0 / self.physics_hz

    @property
    def control_dt(self) -> float:
        return self.substeps / self.physics_hz

    def close(self) -> None:
        """Disconnect the client; safe to call twice."""
        if self.client is not None:
            with contextlib.suppress(pb.error):
                self.client.disconnect()
            self.client = None

    def __enter__(self) -> World:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # a World dropped without close() must not leak its client
        with contextlib.suppress(Exception):
            self.close()

    # -- bodies -----------------------------------------------------------------------------

    def _register(self, name: str, body_id: int) -> int:
        self._bodies[name] = body_id
        self._names[body_id] = name
        return body_id

    def _check_new(self, name: str) -> None:
        if name in self._bodies:
            raise ValueError(f"a body named {name!r} already exists")

    def body(self, name: str) -> int:
        """PyBullet id of the body called ``name``."""
        try:
            return self._bodies[name]
        except KeyError:
            raise KeyError(f"no body named {name!r}; bodies: {sorted(self._bodies)}") from None

    def name_of(self, body_id: int) -> str | None:
        return self._names.get(body_id)

    @property
    def body_names(self) -> list[str]:
        return list(self._bodies)

    def num_bodies(self) -> int:
        """Bodies in the PyBullet world (not only the named ones)."""
        return self.p.getNumBodies()

    def load_urdf(
        self,
        name: str,
        path: str | os.PathLike[str],
        position: Vec3 = (0, 0, 0),
        orientation: Quat = (0, 0, 0, 1),
        fixed_base: bool = False,
        flags: int = 0,
        scale: float = 1.0,
    ) -> int:
        """Load a URDF under a unique name."""
        self._check_new(name)
        path = str(path)
        try:
            body_id = self.p.loadURDF(
                path, position, orientation, useFixedBase=fixed_base, flags=flags, globalScaling=scale
            )
        except pb.error as exc:
            raise FileNotFoundError(f"cannot load URDF {path!r} for {name!r}: {exc}") from None
        return self._register(name, body_id)

    def create_box(
        self,
        name: str,
        half_extents: Vec3,
        position: Vec3,
        orientation: Quat = (0, 0, 0, 1),
        mass: float = 0.0,
        rgba: Sequence[float] = (0.6, 0.6, 0.6, 1.0),
        friction: float = 0.8,
        visual: bool = True,
        mark: Mark | None = None,
        collision: bool = True,
    ) -> int:
        """A box body; ``mass=0`` makes it static; ``mark`` paints a square on its top face;
        ``collision=False`` makes it visual only (nothing touches it)."""
        self._check_new(name)
        col = self.p.createCollisionShape(pb.GEOM_BOX, halfExtents=list(half_extents)) if collision else -1
        if not visual:
            vis = -1
        elif mark is None:
            vis = self.p.createVisualShape(pb.GEOM_BOX, halfExtents=list(half_extents), rgbaColor=list(rgba))
        else:
            vis = self._marked(pb.GEOM_BOX, dict(halfExtents=list(half_extents)), half_extents[2], rgba, mark)
        body_id = self.p.createMultiBody(mass, col, vis, list(position), list(orientation))
        self.p.changeDynamics(body_id, -1, lateralFriction=friction)
        return self._register(name, body_id)

    def create_cylinder(
        self,
        name: str,
        radius: float,
        height: float,
        position: Vec3,
        orientation: Quat = (0, 0, 0, 1),
        mass: float = 0.0,
        rgba: Sequence[float] = (0.6, 0.6, 0.6, 1.0),
        friction: float = 0.8,
        mark: Mark | None = None,
    ) -> int:
        self._check_new(name)
        col = self.p.createCollisionShape(pb.GEOM_CYLINDER, radius=radius, height=height)
        if mark is None:
            vis = self.p.createVisualShape(pb.GEOM_CYLINDER, radius=radius, length=height, rgbaColor=list(rgba))
        else:
            vis = self._marked(pb.GEOM_CYLINDER, dict(radius=radius, length=height), height / 2, rgba, mark)
        body_id = self.p.createMultiBody(mass, col, vis, list(position), list(orientation))
        self.p.changeDynamics(body_id, -1, lateralFriction=friction)
        return self._register(name, body_id)

    def _marked(self, shape: int, dims: dict, top: float, rgba: Sequence[float], mark: Mark) -> int:
        """A visual shape with a square mark (visual only) lying on its top face, ``top`` above its
        centre, and with ``mark.all_faces`` one on each side (the faces at +-x and +-y)."""
        half, t = mark.side / 2, 0.0005
        patches = [([half, half, t], [0.0, 0.0, top + t])]
        if mark.all_faces:
            hx, hy = dims["halfExtents"][:2] if "halfExtents" in dims else (dims["radius"],) * 2
            side = min(half, 0.8 * top)  # within the side face's height
            across = min(half, 0.5 * hx) if "radius" in dims else half  # flat on a curved side: keep it narrow
            patches += [([t, across, side], [sx * (hx + t), 0.0, 0.0]) for sx in (1, -1)]
            patches += [([across, t, side], [0.0, sy * (hy + t), 0.0]) for sy in (1, -1)]
        return self.p.createVisualShapeArray(
            [shape] + [pb.GEOM_BOX] * len(patches),
            halfExtents=[dims.get("halfExtents", [0, 0, 0])] + [e for e, _ in patches],
            radii=[dims.get("radius", 0.0)] + [0.0] * len(patches),
            lengths=[dims.get("length", 0.0)] + [0.0] * len(patches),
            rgbaColors=[list(rgba)] + [list(mark.rgba)] * len(patches),
            visualFramePositions=[[0, 0, 0]] + [p for _, p in patches],
        )

    def create_compound(
        self,
        name: str,
        boxes: Sequence[tuple[Vec3, Vec3]],
        position: Vec3,
        rgba: Sequence[float] = (0.6, 0.6, 0.6, 1.0),
        friction: float = 0.8,
    ) -> int:
        """A static body made of boxes, each given as ``(half_extents, local_position)``."""
        self._check_new(name)
        halfs = [list(h) for h, _ in boxes]
        offsets = [list(o) for _, o in boxes]
        col = self.p.createCollisionShapeArray(
            [pb.GEOM_BOX] * len(boxes), halfExtents=halfs, collisionFramePositions=offsets
        )
        vis = self.p.createVisualShapeArray(
            [pb.GEOM_BOX] * len(boxes),
            halfExtents=halfs,
            visualFramePositions=offsets,
            rgbaColors=[list(rgba)] * len(boxes),
        )
        body_id = self.p.createMultiBody(0.0, col, vis, list(position))
        self.p.changeDynamics(body_id, -1, lateralFriction=friction)
        return self._register(name, body_id)

    def create_plane(self, name: str = "floor", friction: float = 0.8) -> int:
        self._check_new(name)
        body_id = self.p.loadURDF("plane.urdf")
        self.p.changeDynamics(body_id, -1, lateralFriction=friction)
        return self._register(name, body_id)

    # -- state of bodies --------------------------------------------------------------------

    def pose(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        pos, orn = self.p.getBasePositionAndOrientation(self.body(name))
        return np.asarray(pos), np.asarray(orn)

    def velocity(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        lin, ang = self.p.getBaseVelocity(self.body(name))
        return np.asarray(lin), np.asarray(ang)

    def set_pose(self, name: str, position: Vec3, orientation: Quat = (0, 0, 0, 1)) -> None:
        self.p.resetBasePositionAndOrientation(self.body(name), list(position), list(orientation))

    def set_velocity(self, name: str, linear: Vec3 = (0, 0, 0), angular: Vec3 = (0, 0, 0)) -> None:
        self.p.resetBaseVelocity(self.body(name), list(linear), list(angular))

    def contacts(self, a: str, b: str | None = None, link_a: int = -2) -> list[Any]:
        """Contact points of body ``a`` (optionally with body ``b``, optionally one link of ``a``)."""
        kwargs: dict[str, int] = {"bodyA": self.body(a)}
        if b is not None:
            kwargs["bodyB"] = self.body(b)
        if link_a != -2:
            kwargs["linkIndexA"] = link_a
        return list(self.p.getContactPoints(**kwargs))

    # -- stepping and state -----------------------------------------------------------------

    def step(self, n: int | None = None) -> None:
        """Advance ``n`` physics steps (default: one control step)."""
        # One stepSimulation call per physics step: PyBullet's own numSubSteps keeps a time
        # accumulator that restoreState does not reset, which would make episodes depend on history.
        step = self.p.stepSimulation
        hooks = self.substep_hooks
        t0 = time.perf_counter()
        if hooks:
            for _ in range(self.substeps if n is None else int(n)):
                for hook in hooks:
                    hook()
                step()
        else:
            for _ in range(self.substeps if n is None else int(n)):
                step()
        self.physics_time += time.perf_counter() - t0
        self.steps += 1

    def forget_contacts(self, bodies: Sequence[int]) -> None:
        """Drop the cached contacts of ``bodies`` (every link): PyBullet warm-starts new contacts
        from cached ones even across ``restore_state``, so a state restored with them still
        around would depend on what ran before."""
        p = self.p
        links = [(b, link) for b in bodies for link in range(-1, p.getNumJoints(b))]
        for body, link in links:
            p.setCollisionFilterGroupMask(body, link, 0, 0)
        p.performCollisionDetection()
        for body, link in links:
            p.setCollisionFilterGroupMask(body, link, 1, -1)

    def save_state(self) -> int:
        """Snapshot the whole physics state in memory; returns its id."""
        return self.p.saveState()

    def restore_state(self, state_id: int) -> None:
        self.p.restoreState(stateId=state_id)
        self.steps += 1

    def remove_state(self, state_id: int) -> None:
        self.p.removeState(state_id)
