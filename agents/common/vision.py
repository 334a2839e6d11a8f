"""Policies that see: image observations inside the agents' flat-vector contract.

An ``rgb`` observation (``envs.core``) is a Dict of uint8 images ``(H, W, 3)``, one per camera, and
``proprio``, the robot's readings of itself. Agents flatten it like any Dict (keys in sorted order,
each image in its own H, W, channel order, RGB, 0 to 255 as float32), so replay, workers, checkpoints
and the ONNX ``obs`` input carry it as they carry a state vector; ``ImageLayout`` says where each
camera's pixels lie in that vector, and the networks here read them back out:

* ``PixelNorm``: the observation normaliser, running statistics for the non-pixel features and a
  fixed map of every pixel to [-1, 1];
* ``Encoder``: one small convolutional encoder per camera (three layers, as the Atari DQN's,
  scaled to the 32 to 256 pixel images), each to ``features`` numbers through LayerNorm and tanh,
  beside the normalised proprioception; ``VisionActor`` fuses them with an MLP (the students' and
  PPO's networks), and SAC shares one encoder between its critics and its actor (DrQ);
* ``random_shift``: DrQ's augmentation (Kostrikov et al. 2020), each image padded by ``pad``
  pixels at its edges and cropped back at a random offset, per sample; it makes imitation and RL
  from pixels work on little data.

Stored labelled states keep their pixels as uint8 (``PixelStore``): a quarter of the memory.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from agents.common.nets import RunningNorm, mlp
from agents.common.spaces import ImageLayout


class PixelNorm(RunningNorm):
    """A ``RunningNorm`` whose pixel features keep fixed statistics (mean 127.5, spread 127.5: pixels
    read -1 to 1); ``update`` moves only the others'."""

    def __init__(self, layout: ImageLayout, min_std: float = 0.0) -> None:
        super().__init__(layout.dim, min_std=min_std)
        mask = torch.as_tensor(layout.pixel_mask)
        self.register_buffer("pixels", mask, persistent=False)
        self.mean[mask] = 127.5
        self.var[mask] = 127.5**2

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        keep = ~self.pixels
        v = x.reshape(-1, x.shape[-1])[:, keep].double()  # the pixels' statistics stay as they are
        b_mean, b_var, b_n = v.mean(0), v.var(0, unbiased=False), v.shape[0]
        mean, var, n = self.mean[keep].double(), self.var[keep].double(), self.count
        tot = n + b_n
        delta = b_mean - mean
        m2 = var * n + b_var * b_n + delta.square() * n * b_n / tot
        self.mean[keep] = (mean + delta * b_n / tot).float()
        self.var[keep] = (m2 / tot).float()
        self.count.copy_(tot)

    def vector(self, v: torch.Tensor) -> torch.Tensor:
        """The non-pixel features alone (``[batch, vector_dim]``), normalised as ``forward`` does."""
        keep = ~self.pixels
        var = self.var[keep].clamp(min=self.min_var)
        return ((v - self.mean[keep]) / torch.sqrt(var + self.eps)).clamp(-self.clip, self.clip)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the floor on the spread must not apply to pixels: their spread is fixed
        var = torch.where(self.pixels, self.var, self.var.clamp(min=self.min_var))
        return ((x - self.mean) / torch.sqrt(var + self.eps)).clamp(-self.clip, self.clip)


def _conv_stack(side: tuple[int, int], channels: int = 3) -> tuple[nn.Sequential, int]:
    """The encoder's convolutions for images of ``side`` (height, width), and its output size."""
    h, w = side
    # large images get the Atari network's 8x8 stride-4 entry; small ones a 4x4 stride-2 one
    first = (8, 4) if min(h, w) >= 64 else (4, 2)
    layers, c = [], channels
    for out, (k, s) in zip((32, 64, 64), (first, (4, 2), (3, 1)), strict=True):
        conv = nn.Conv2d(c, out, k, s)
        nn.init.orthogonal_(conv.weight, math.sqrt(2))
        nn.init.zeros_(conv.bias)
        layers += [conv, nn.ReLU()]
        h, w, c = (h - k) // s + 1, (w - k) // s + 1, out
    return nn.Sequential(*layers, nn.Flatten()), c * h * w


class Encoder(nn.Module):
    """From a normalised flat observation to features: a convolutional encoder per camera,
    ``features`` numbers each (linear, LayerNorm, tanh), concatenated with the non-pixel features
    (``out_dim`` in all)."""

    def __init__(self, layout: ImageLayout, features: int = 64) -> None:
        super().__init__()
        self.layout = layout
        self.encoders = nn.ModuleDict()
        for c in layout.cameras:
            conv, n = _conv_stack((c.height, c.width), c.channels)
            self.encoders[c.key] = nn.Sequential(conv, nn.Linear(n, features), nn.LayerNorm(features), nn.Tanh())
        self.register_buffer("vector_idx", torch.as_tensor(np.flatnonzero(~layout.pixel_mask)), persistent=False)
        self.out_dim = features * len(layout.cameras) + layout.vector_dim

    def images(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each camera's images ``[batch, C, H, W]`` out of flat observations."""
        return {
            c.key: x[:, c.start : c.start + c.size].reshape(-1, c.height, c.width, c.channels).permute(0, 3, 1, 2)
            for c in self.layout.cameras
        }

    def encode(self, images: dict[str, torch.Tensor], vector: torch.Tensor) -> torch.Tensor:
        """From each camera's normalised images ``[batch, 3, H, W]`` and the normalised non-pixel features."""
        return torch.cat([*(self.encoders[c.key](images[c.key]) for c in self.layout.cameras), vector], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(self.images(x), x.index_select(1, self.vector_idx))


class VisionActor(Encoder):
    """From a normalised flat observation to actions (pre-squash): the ``Encoder``'s features, then
    an MLP of ``depth`` layers of ``width``."""

    def __init__(
        self, layout: ImageLayout, n_out: int, width: int, depth: int, features: int = 64, out_gain: float = 1.0
    ) -> None:
        super().__init__(layout, features)
        self.head = mlp(self.out_dim, n_out, width, depth, out_gain=out_gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(super().forward(x))

    def fuse(self, images: dict[str, torch.Tensor], vector: torch.Tensor) -> torch.Tensor:
        """From each camera's normalised images ``[batch, 3, H, W]`` and the normalised non-pixel features."""
        return self.head(self.encode(images, vector))


def shift_images(img: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Images ``[batch, C, H, W]`` each shifted by up to ``pad`` pixels each way (its edge pixels
    repeated), a shift drawn per image: DrQ's random shift, as two gathers."""
    if pad <= 0:
        return img
    n, c, h, w = img.shape
    dtype = img.dtype
    x = img if dtype.is_floating_point else img.float()
    x = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    dy = torch.randint(0, 2 * pad + 1, (n, 1, 1, 1), device=img.device, generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n, 1, 1, 1), device=img.device, generator=generator)
    rows = (dy + torch.arange(h, device=img.device).view(1, 1, h, 1)).expand(n, c, h, w + 2 * pad)
    x = x.gather(2, rows)
    cols = (dx + torch.arange(w, device=img.device).view(1, 1, 1, w)).expand(n, c, h, w)
    x = x.gather(3, cols)
    return x if dtype.is_floating_point else x.to(dtype)


def random_shift(x: torch.Tensor, layout: ImageLayout, pad: int = 4, generator: torch.Generator | None = None):
    """Flat observations with each camera's images shifted (``shift_images``); the other features unchanged."""
    if pad <= 0:
        return x
    out = x.clone()
    n = x.shape[0]
    for c in layout.cameras:
        img = x[:, c.start : c.start + c.size].reshape(n, c.height, c.width, c.channels).permute(0, 3, 1, 2)
        shifted = shift_images(img, pad, generator)
        out[:, c.start : c.start + c.size] = shifted.permute(0, 2, 3, 1).reshape(n, -1)
    return out


def training_images(layout: ImageLayout, pixels: torch.Tensor, pad: int) -> dict[str, torch.Tensor]:
    """Each camera's images ``[batch, 3, H, W]`` from stored uint8 pixel rows (``PixelStore``),
    shifted by up to ``pad`` pixels and mapped to [-1, 1] as ``PixelNorm`` maps them."""
    out, off = {}, 0
    n = pixels.shape[0]
    for c in layout.cameras:
        img = pixels[:, off : off + c.size].reshape(n, c.height, c.width, c.channels).permute(0, 3, 1, 2).float()
        out[c.key] = shift_images(img, pad) / 127.5 - 1.0
        off += c.size
    return out


class PixelColumns:
    """Where a flat observation's pixels lie, and its split into uint8 pixels and float32 features
    (``split``) and back (``join``): the storage of ``PixelStore`` and the image replay's."""

    def __init__(self, layout: ImageLayout, device: torch.device) -> None:
        mask = torch.as_tensor(layout.pixel_mask, device=device)
        self.pix_idx, self.vec_idx = torch.nonzero(mask).flatten(), torch.nonzero(~mask).flatten()
        self.dim = layout.dim

    def split(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat float32 observations ``[..., dim]`` as (uint8 pixels, float32 features)."""
        pix = obs.index_select(-1, self.pix_idx).round().clamp(0, 255).to(torch.uint8)
        return pix, obs.index_select(-1, self.vec_idx)

    def join(self, pix: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
        """Flat float32 observations from stored (uint8 pixels, float32 features)."""
        out = torch.empty((*pix.shape[:-1], self.dim), device=vec.device)
        out[..., self.pix_idx] = pix.float()
        out[..., self.vec_idx] = vec
        return out


class PixelStore:
    """A ring of flat observations whose pixel features are kept as uint8 (a quarter of the memory),
    the others as float32; ``get`` gives float32 flat rows back. Memory is taken as rows arrive
    (doubling), not for the whole ``capacity`` at once."""

    def __init__(self, capacity: int, layout: ImageLayout, device: torch.device) -> None:
        self.columns = cols = PixelColumns(layout, device)
        rows = min(capacity, 1024)
        self.pix = torch.zeros((rows, len(cols.pix_idx)), dtype=torch.uint8, device=device)
        self.vec = torch.zeros((rows, len(cols.vec_idx)), device=device)
        self.capacity = capacity

    def reserve(self, rows: int) -> None:
        """Room for slots ``0 .. rows - 1``."""
        have = len(self.pix)
        if rows <= have:
            return
        new = min(self.capacity, max(rows, 2 * have))
        self.pix = torch.cat([self.pix, self.pix.new_zeros((new - have, self.pix.shape[1]))])
        self.vec = torch.cat([self.vec, self.vec.new_zeros((new - have, self.vec.shape[1]))])

    def put(self, idx: torch.Tensor, obs: torch.Tensor) -> None:
        self.reserve(int(idx.max()) + 1)
        self.pix[idx], self.vec[idx] = self.columns.split(obs)

    def parts(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The slots' uint8 pixel rows (cameras in the flat order) and float32 non-pixel features."""
        return self.pix[idx], self.vec[idx]

    def get(self, idx: torch.Tensor) -> torch.Tensor:
        return self.columns.join(self.pix[idx], self.vec[idx])
