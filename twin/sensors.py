"""Sensors: cameras (RGB, depth, segmentation) and the beam-break light barrier."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pybullet as pb

from twin.layout import Camera as CameraConfig
from twin.world import World


def gpu_driver_present() -> bool:
    """True when an NVIDIA driver is visible (EGL rendering can then run on the GPU)."""
    return os.path.exists("/dev/nvidia0") or os.path.exists("/dev/dri/renderD128")


def enable_egl(world: World) -> bool:
    """Load PyBullet's EGL renderer plugin when a GPU driver is present.

    Returns True when the plugin loaded; otherwise cameras use the CPU TinyRenderer.
    ``FACTORY_TWIN_RENDERER=tiny`` forces the TinyRenderer, ``=egl`` tries EGL regardless.
    """
    choice = os.environ.get("FACTORY_TWIN_RENDERER", "auto").lower()
    if choice == "tiny" or (choice == "auto" and not gpu_driver_present()):
        world.egl = False
        return False
    try:
        import pkgutil

        egl = pkgutil.get_loader("eglRenderer")
        plugin = world.p.loadPlugin(egl.get_filename(), "_eglRendererPlugin") if egl else -1
    except Exception:
        plugin = -1
    world.egl = plugin >= 0
    return world.egl


@dataclass
class CameraImages:
    rgb: np.ndarray
    """uint8 (H, W, 3)."""
    depth: np.ndarray
    """float32 (H, W), metres from the camera plane."""
    segmentation: np.ndarray
    """int32 (H, W), PyBullet body id per pixel (-1 for background)."""


class Camera:
    """A pinhole camera, fixed in the cell or carried by a robot's tool.

    Args:
        world: The world to render.
        config: The layout's camera entry.
        width, height: Image size instead of the entry's.
        carrier: For a camera with a ``mount``: a callable giving the carrying tool centre point's
            world position and orientation quaternion (x, y, z, w) now.
    """

    def __init__(
        self,
        world: World,
        config: CameraConfig,
        width: int | None = None,
        height: int | None = None,
        carrier: Callable[[], tuple[Sequence[float], Sequence[float]]] | None = None,
    ) -> None:
        self.world = world
        self.config = config
        self.width = width or config.width
        self.height = height or config.height
        if config.mount is not None and carrier is None:
            raise ValueError(f"camera {config.name!r} is mounted on robot {config.mount}: it needs a carrier")
        self.carrier = carrier if config.mount is not None else None
        self.view = world.p.computeViewMatrix(config.eye, config.target, config.up)
        self.proj = world.p.computeProjectionMatrixFOV(config.fov, self.width / self.height, config.near, config.far)
        self.light: dict[str, object] = {}
        """Lighting keyword arguments for the renderer (randomisation); empty for the default light."""
        self.fault: tuple[str, float, np.random.Generator] | None = None
        """A camera fault while on: its mode (``dropped``, ``frozen``, ``noisy``), its noise (8-bit
        levels) and the fault's own noise stream."""
        self._last: dict[tuple[int, int], CameraImages] = {}
        """The last good frame at each size it was rendered at (a frozen camera repeats it)."""
        self._projections: dict[tuple[int, int], Sequence[float]] = {(self.width, self.height): self.proj}

    def clear_fault(self) -> None:
        """End a camera fault and forget the last good frame (a new episode starts clean)."""
        self.fault, self._last = None, {}

    def resized(self, width: int, height: int) -> Camera:
        """The same camera (pose, field of view, carrier) giving images of another size."""
        return Camera(self.world, self.config, width, height, carrier=self.carrier)

    def set_variation(self, eye_offset=(0.0, 0.0, 0.0), target_offset=(0.0, 0.0, 0.0), light=None) -> None:
        """Move a fixed camera's eye and target by offsets (m) and set the lighting; the defaults
        put it back as the layout has it."""
        c = self.config
        eye = [e + d for e, d in zip(c.eye, eye_offset, strict=True)]
        target = [t + d for t, d in zip(c.target, target_offset, strict=True)]
        self.view = self.world.p.computeViewMatrix(eye, target, c.up)
        self.light = dict(light or {})

    def _view_now(self) -> Sequence[float]:
        """The view matrix: fixed, or from where the carrying tool is now."""
        if self.carrier is None:
            return self.view
        p = self.world.p
        pos, orn = self.carrier()
        c = self.config
        eye = p.multiplyTransforms(pos, orn, c.eye, (0, 0, 0, 1))[0]
        target = p.multiplyTransforms(pos, orn, c.target, (0, 0, 0, 1))[0]
        up = p.multiplyTransforms((0, 0, 0), orn, c.up, (0, 0, 0, 1))[0]  # a direction: rotated only
        return p.computeViewMatrix(eye, target, up)

    @property
    def intrinsics(self) -> np.ndarray:
        """3x3 pinhole matrix K in pixels."""
        fy = self.height / (2 * math.tan(math.radians(self.config.fov) / 2))
        return np.array([[fy, 0, self.width / 2], [0, fy, self.height / 2], [0, 0, 1]])

    def _projection(self, width: int, height: int) -> Sequence[float]:
        key = (width, height)
        if key not in self._projections:
            c = self.config
            self._projections[key] = self.world.p.computeProjectionMatrixFOV(c.fov, width / height, c.near, c.far)
        return self._projections[key]

    def _capture(self, flags: int, width: int, height: int) -> tuple:
        if self.world.egl is None:  # first render in this world: decide on the renderer now, so
            enable_egl(self.world)  # worlds that never render (state observations) never load EGL
        renderer = pb.ER_BULLET_HARDWARE_OPENGL if self.world.egl else pb.ER_TINY_RENDERER
        return self.world.p.getCameraImage(
            width,
            height,
            self._view_now(),
            self._projection(width, height),
            renderer=renderer,
            flags=flags,
            shadow=0,
            **self.light,
        )

    def rgb(self, size: tuple[int, int] | None = None) -> np.ndarray:
        """An RGB frame, uint8 (H, W, 3); while a camera fault is on, what the faulty camera gives.
        ``size`` (width, height) renders at another size than the camera's own, with the same pose,
        lighting and fault (a policy's resolution: the CPU renderer's cost grows with the pixels)."""
        return self.capture(rgb_only=True, size=size).rgb

    def capture(self, rgb_only: bool = False, size: tuple[int, int] | None = None) -> CameraImages:
        """RGB, metric depth and segmentation in one render, as the camera delivers them: while a
        camera fault is on, a ``dropped`` frame is black with no depth (every pixel at ``far``) and
        no segmentation (-1), a ``frozen`` one repeats the last good frame, and a ``noisy`` one has
        Gaussian noise on its RGB (the fault's 8-bit levels) and on its depth (the same share of
        each pixel's range). ``rgb_only`` skips the depth and segmentation buffers (cheaper); their
        arrays are then empty. A frozen camera whose last good frame was RGB only gives no depth
        (``far``) and no segmentation (-1) beside the repeated RGB."""
        mode = self.fault[0] if self.fault is not None else None
        w, h = size if size is not None else (self.width, self.height)
        blank = (0, 0) if rgb_only else (h, w)
        if mode == "dropped":
            return CameraImages(
                rgb=np.zeros((h, w, 3), dtype=np.uint8),
                depth=np.full(blank, self.config.far, dtype=np.float32),
                segmentation=np.full(blank, -1, dtype=np.int32),
            )
        if mode == "frozen" and (w, h) in self._last:
            last = self._last[(w, h)]
            if rgb_only or last.depth.size:
                return CameraImages(
                    last.rgb.copy(),
                    last.depth[: blank[0], : blank[1]].copy(),
                    last.segmentation[: blank[0], : blank[1]].copy(),
                )
            # the last good frame had no depth taken: the frozen camera has none to repeat
            return CameraImages(
                last.rgb.copy(), np.full(blank, self.config.far, np.float32), np.full(blank, -1, np.int32)
            )
        flags = pb.ER_NO_SEGMENTATION_MASK if rgb_only else 0
        _, _, px, depth_buf, seg = self._capture(flags, w, h)
        rgb = np.asarray(px, dtype=np.uint8).reshape(h, w, 4)[..., :3]
        if rgb_only:
            depth, seg_ids = np.zeros((0, 0), np.float32), np.zeros((0, 0), np.int32)
        else:
            z = np.asarray(depth_buf, dtype=np.float32).reshape(h, w)
            near, far = self.config.near, self.config.far
            depth = (far * near / (far - (far - near) * z)).astype(np.float32)
            seg_ids = np.asarray(seg, dtype=np.int32).reshape(h, w)  # body ids, -1 background
        images = CameraImages(rgb=rgb, depth=depth, segmentation=seg_ids)
        if mode == "noisy":
            stream, level = self.fault[2], self.fault[1]
            rgb = np.clip(rgb + stream.normal(0.0, level, rgb.shape), 0, 255).astype(np.uint8)
            if depth.size:
                depth = (depth * (1.0 + stream.normal(0.0, level / 255.0, depth.shape))).astype(np.float32)
            return CameraImages(rgb=rgb, depth=depth, segmentation=seg_ids)
        if mode is None:
            self._last[(w, h)] = images
        return images


class BeamBreak:
    """A light barrier across a conveyor; ``blocked`` names what breaks the beam."""

    def __init__(self, world: World, start: np.ndarray, end: np.ndarray) -> None:
        self.world = world
        self.start = [float(v) for v in start]
        self.end = [float(v) for v in end]
        self.blocked_by: int | None = None

    def read(self) -> int | None:
        """Body id breaking the beam (or None); also stored in ``blocked_by``."""
        hit = self.world.p.rayTest(self.start, self.end)[0]
        self.blocked_by = hit[0] if hit[0] >= 0 else None
        return self.blocked_by

    @property
    def blocked(self) -> bool:
        return self.blocked_by is not None


class RangeScanners:
    """The 2-D range scanners of several AGVs, read together in one batched ray cast.

    Each beam starts at its AGV's footprint edge (so an AGV never sees itself) and reads the
    distance from the AGV's centre to the first thing it hits, up to the scanner's range, plus
    seeded Gaussian noise. Readings are clipped to [0, max_range].

    Args:
        world: The world.
        configs: Each AGV's scanner (layout ``Scanner``).
        half_extents: Each AGV's footprint half extents (m), for where its beams start.
    """

    def __init__(self, world: World, configs: Sequence, half_extents: Sequence[tuple[float, float]]) -> None:
        self.world = world
        self.configs = list(configs)
        self._angles, self._start, self._span = [], [], []
        for c, (hx, hy) in zip(self.configs, half_extents, strict=True):
            fov = math.radians(c.fov)
            n = c.beams
            a = (np.arange(n) + 0.5) / n * fov - fov / 2 if c.fov < 360 else np.arange(n) / n * 2 * math.pi
            with np.errstate(divide="ignore"):
                edge = np.minimum(hx / np.abs(np.cos(a)), hy / np.abs(np.sin(a))) + 0.02
            start = np.minimum(edge, c.max_range)
            self._angles.append(a)
            self._start.append(start)
            self._span.append(c.max_range - start)
        self._noise = np.random.default_rng(0)
        self.faults: dict[int, tuple[str, float, np.random.Generator]] = {}
        """Scanners under a fault, by index: the mode (``dropped``, ``noisy``), its noise (m) and
        the fault's own noise stream."""

    def reset(self, rng: np.random.Generator) -> None:
        self._noise = np.random.default_rng(rng.integers(2**63))
        self.faults = {}

    def read(self, poses: Sequence[tuple[float, float, float]], masks: Sequence | None = None) -> list[np.ndarray]:
        """Ranges (m) of every scanner, for AGVs at ``poses`` (x, y, heading in radians).

        ``masks`` (one boolean array per scanner, or None for all its beams) casts only the
        beams a controller uses; the others read NaN.
        """
        masks = masks if masks is not None else [None] * len(poses)
        starts, ends, picks = [], [], []
        for (x, y, th), c, a, s, m in zip(poses, self.configs, self._angles, self._start, masks, strict=True):
            idx = np.arange(len(a)) if m is None else np.flatnonzero(m)
            a, s = a[idx], s[idx]
            cos, sin = np.cos(a + th), np.sin(a + th)
            z = np.full_like(a, c.height)
            starts.append(np.stack([x + s * cos, y + s * sin, z], axis=1))
            ends.append(np.stack([x + c.max_range * cos, y + c.max_range * sin, z], axis=1))
            picks.append(idx)
        hits = self.world.p.rayTestBatch(np.concatenate(starts).tolist(), np.concatenate(ends).tolist(), numThreads=1)
        frac = np.fromiter((h[2] for h in hits), dtype=np.float64, count=len(hits))
        out, k = [], 0
        for i, (c, s, span, idx) in enumerate(zip(self.configs, self._start, self._span, picks, strict=True)):
            r = np.full(len(s), np.nan)
            n = len(idx)
            r[idx] = s[idx] + frac[k : k + n] * span[idx]
            if c.noise:
                r[idx] += self._noise.normal(0.0, c.noise, n)
            fault = self.faults.get(i)
            if fault is not None and fault[0] == "dropped":
                r[idx] = c.max_range
            elif fault is not None:
                r[idx] += fault[2].normal(0.0, fault[1], n)
            r[idx] = np.clip(r[idx], 0.0, c.max_range)
            out.append(r)
            k += n
        return out
