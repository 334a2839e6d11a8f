"""Checkpoints: safetensors for every tensor, a JSON sidecar for everything else. Nothing is pickled.

A checkpoint is a folder::

    checkpoint.json        format, package version, git commit, env id and spaces, config, step,
                           RNG states, optimiser hyper-parameters, sha256 of each tensor file
    model.safetensors      network weights and normaliser statistics ("model.*"), optimiser
                           moments ("optim.<name>.<param>.<key>")
    replay.safetensors     (SAC) the filled part of the replay buffer, so a resume continues it

Every file is written to a temporary name and renamed into place, the JSON last, so a crash
leaves the previous checkpoint whole. Loading checks the JSON, the hashes and the shapes, and
raises CheckpointError naming the file and what is wrong.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from agents.common.config import algo_of, to_dict
from agents.common.files import (
    atomic_write_text,
    file_sha256,
    git_commit,
    package_version,
    umask_mode,
)
from agents.common.spaces import describe

if TYPE_CHECKING:
    from agents.common.config import TrainConfig
    from agents.common.runtime import Run

FORMAT = "factory-twin-checkpoint/1"
SIDECAR = "checkpoint.json"
MODEL = "model.safetensors"
REPLAY = "replay.safetensors"
KEEP_CHECKPOINTS = 2
BEST = "best"
"""The pointer file (beside ``latest``) naming the run's best-policy checkpoint."""
IMPLEMENTATION_FLAGS = ("foreach", "fused", "capturable", "differentiable")


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, or does not fit what it is loaded into.

    The message quotes what was found in the file, which may be anything: it is cut to
    ``MAX_MESSAGE`` characters, keeping its start (the file and field) and its end."""

    MAX_MESSAGE = 600

    def __init__(self, message: str) -> None:
        if len(message) > self.MAX_MESSAGE:
            half = self.MAX_MESSAGE // 2
            message = f"{message[:half]} [... {len(message) - 2 * half:,} characters ...] {message[-half:]}"
        super().__init__(message)


def _atomic_save_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str] | None = None) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=meta)
        os.chmod(tmp, umask_mode())
        digest = file_sha256(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return digest


# -- optimisers -------------------------------------------------------------------------------


def optimizer_tensors(name: str, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimiser's state into tensors (for safetensors) and JSON-able hyper-parameters."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for key, val in st.items():
            if torch.is_tensor(val):
                tensors[f"optim.{name}.{idx}.{key}"] = val
            else:
                scalars[f"{idx}.{key}"] = val
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def load_optimizer(
    name: str, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    state: dict[int, dict[str, Any]] = {}
    prefix = f"optim.{name}."
    try:
        for key, val in tensors.items():
            if key.startswith(prefix):
                idx, sub = key[len(prefix) :].split(".", 1)
                state.setdefault(int(idx), {})[sub] = val
        for key, val in meta.get("scalars", {}).items():
            idx, sub = key.split(".", 1)
            state.setdefault(int(idx), {})[sub] = val
        saved_groups = meta["param_groups"]
        if len(saved_groups) != len(opt.param_groups):
            raise ValueError(f"{len(saved_groups)} parameter groups saved, the optimiser has {len(opt.param_groups)}")
        groups, lrs = [], {}
        for i, (saved, current) in enumerate(zip(saved_groups, opt.param_groups, strict=True)):
            # How the optimiser runs (fused, capturable for CUDA graphs, ...) is this run's choice,
            # not the checkpoint's: a run saved on a GPU resumes on a CPU and back.
            groups.append({**saved, **{k: current[k] for k in IMPLEMENTATION_FLAGS if k in current}})
            if torch.is_tensor(current["lr"]):  # a tensor learning rate stays the same tensor
                lrs[i] = (current["lr"], float(saved["lr"]))
        opt.load_state_dict({"state": state, "param_groups": groups})
        for i, (tensor, value) in lrs.items():
            tensor.fill_(value)
            opt.param_groups[i]["lr"] = tensor
    except (KeyError, ValueError, RuntimeError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"optimiser {name!r} state does not fit: {exc}") from None


# -- RNG --------------------------------------------------------------------------------------


def rng_state(np_rng) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    return tensors, {"numpy": np_rng.bit_generator.state}


def restore_rng(np_rng, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"].cpu())
    cuda = sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([tensors[k].cpu() for k in cuda])
    if "numpy" in meta:
        np_rng.bit_generator.state = meta["numpy"]


# -- save / load ------------------------------------------------------------------------------


def save_checkpoint(
    folder: str | Path,
    model: dict[str, torch.Tensor],
    sidecar: dict[str, Any],
    replay: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write a checkpoint folder atomically (tensor files first, the JSON that names them last)."""
    folder = Path(folder)
    for stray in folder.glob(".*.safetensors.*"):  # temporary files of a write a kill cut short
        stray.unlink(missing_ok=True)
    files = {MODEL: _atomic_save_tensors(folder / MODEL, model, {"format": FORMAT})}
    if replay is not None:
        files[REPLAY] = _atomic_save_tensors(folder / REPLAY, replay, {"format": FORMAT})
    else:
        (folder / REPLAY).unlink(missing_ok=True)
    doc = {
        "format": FORMAT,
        "package_version": package_version(),
        "git_commit": git_commit(),
        **sidecar,
        "files": files,
    }
    atomic_write_text(folder / SIDECAR, json.dumps(doc, indent=2, default=_json_default))
    return folder


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, tuple | set):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


MAX_SIDECAR_BYTES = 16 * 2**20
MAX_FLAT_DIM = 1_000_000
"""Largest flattened observation or action a checkpoint may declare (the networks are built from it)."""


class _Space(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    shape: list[Annotated[int, Field(ge=0, le=MAX_FLAT_DIM)]] | None = None
    spaces: dict[str, _Space] | None = None


class _ActionSpace(_Space):
    shape: list[Annotated[int, Field(ge=1, le=MAX_FLAT_DIM)]] = Field(min_length=1, max_length=1)
    low: list[float]
    high: list[float]


class _Sidecar(BaseModel):
    """The fields of ``checkpoint.json`` that loading relies on, with their types."""

    model_config = ConfigDict(extra="allow")
    format: str
    config: dict[str, Any]
    env_id: str
    obs_space: _Space
    action_space: _ActionSpace
    step: Annotated[int, Field(ge=0, le=10**15)]
    files: dict[str, Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]]
    rng: dict[str, Any] = {}
    optim: dict[str, dict[str, Any]] = {}
    timers: dict[str, float] = {}


def _space_dim(space: _Space, where: str) -> int:
    if space.type == "Box" and space.shape is not None:
        n = 1
        for d in space.shape:
            n *= d
        return n
    if space.type == "Dict" and space.spaces:
        return sum(_space_dim(sub, f"{where}.{k}") for k, sub in space.spaces.items())
    raise ValueError(f"{where}: a Box with a shape or a Dict of them expected, got type {space.type!r}")


def read_sidecar(folder: str | Path) -> dict[str, Any]:
    """``checkpoint.json`` of ``folder``, checked field by field (CheckpointError naming the first bad one)."""
    folder = Path(folder)
    path = folder / SIDECAR
    if not folder.exists():
        raise CheckpointError(f"{folder}: no such checkpoint folder")
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (not a checkpoint folder written by twin train)")
    try:
        size = path.stat().st_size
        if size > MAX_SIDECAR_BYTES:
            raise CheckpointError(f"{path}: {size:,} bytes, over the {MAX_SIDECAR_BYTES:,}-byte limit")
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{path}: corrupt JSON ({type(exc).__name__}: {str(exc)[:200]})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise CheckpointError(f"{path}: format is {got!r}, expected {FORMAT!r}")
    for key in ("config", "env_id", "obs_space", "action_space", "step", "files"):
        if key not in doc:
            raise CheckpointError(f"{path}: field {key!r} is missing")
    try:
        checked = _Sidecar.model_validate(doc)
        obs_dim = _space_dim(checked.obs_space, "obs_space")
        act = checked.action_space
        if len(act.low) != act.shape[0] or len(act.high) != act.shape[0]:
            raise ValueError(f"action_space: low and high need {act.shape[0]} numbers each")
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = ".".join(str(x) for x in first["loc"])
        raise CheckpointError(f"{path}: {loc}: {first['msg']} ({exc.error_count()} problem(s))") from None
    except (ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    if obs_dim > MAX_FLAT_DIM:
        raise CheckpointError(f"{path}: obs_space flattens to {obs_dim:,} numbers, over the {MAX_FLAT_DIM:,} limit")
    return doc


def load_tensors(
    folder: str | Path, name: str, doc: dict[str, Any], device: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """Load one tensor file of a checkpoint after checking it is the one the sidecar names."""
    path = Path(folder) / name
    expected = doc["files"].get(name)
    if expected is None:
        raise CheckpointError(f"{Path(folder) / SIDECAR}: names no {name}")
    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    if file_sha256(path) != expected:
        raise CheckpointError(f"{path}: contents do not match the sha256 in {SIDECAR} (corrupt or replaced)")
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError, MemoryError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None


def load_module_state(module: torch.nn.Module, tensors: dict[str, torch.Tensor], prefix: str, source: str) -> None:
    """Load ``prefix``-ed tensors into ``module``, raising CheckpointError on missing keys or shapes."""
    own = module.state_dict()
    state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    upgrade = getattr(module, "upgrade_state", None)
    if upgrade is not None:  # a network whose layout changed since older runs were saved
        state = upgrade(state)
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: {prefix}* does not match the network (missing {missing[:4]}, unexpected {unexpected[:4]})"
        )
    for k, v in state.items():
        if v.shape != own[k].shape:
            raise CheckpointError(
                f"{source}: {prefix}{k} has shape {list(v.shape)}, the network expects {list(own[k].shape)}"
            )
    module.load_state_dict(state)


def resume(state: dict[str, Any], model: torch.nn.Module, optimizers: dict[str, torch.optim.Optimizer], np_rng) -> int:
    """Load a training state (from ``load_state``) into a model, its optimisers and RNGs.

    Returns the step to continue from.
    """
    load_module_state(model, state["tensors"], "model.", state["source"])
    for name, opt in optimizers.items():
        load_optimizer(name, opt, state["tensors"], state["optim"][name])
    try:
        restore_rng(np_rng, state["tensors"], state["rng"])
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{state['source']}: random-generator state does not fit: {exc}") from None
    return int(state["step"])


# -- checkpoints of a run ---------------------------------------------------------------------


def write_checkpoint(
    run: Run,
    cfg: TrainConfig,
    vec,
    step: int,
    modules: dict[str, torch.nn.Module],
    optim: dict[str, tuple[dict[str, torch.Tensor], dict[str, Any]]],
    np_rng,
    replay: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``checkpoints/step-N`` completely, then point ``checkpoints/latest`` at it."""
    tensors: dict[str, torch.Tensor] = {}
    for prefix, mod in modules.items():
        tensors.update({f"{prefix}.{k}": v for k, v in mod.state_dict().items()})
    for t, _ in optim.values():
        tensors.update(t)
    rng_t, rng_meta = rng_state(np_rng)
    tensors.update(rng_t)
    sidecar = {
        **_policy_sidecar(cfg, vec, step),
        "rng": rng_meta,
        "optim": {name: meta for name, (_, meta) in optim.items()},
        "timers": {**run.timers, "wall": run.elapsed()},
    }
    root = run.out / "checkpoints"
    folder = root / f"step-{step:010d}"
    _discard(folder)
    save_checkpoint(folder, tensors, sidecar, replay)
    atomic_write_text(root / "latest", folder.name + "\n")
    complete = sorted(p for p in root.glob("step-*") if (p / SIDECAR).is_file())
    for old in complete[:-KEEP_CHECKPOINTS]:
        _discard(old)
    for p in root.glob("step-*"):  # folders a kill left half-written (no sidecar): never loadable
        if not (p / SIDECAR).is_file():
            _discard(p)
    for leftover in root.glob(".trash-*"):  # from a kill during an earlier prune
        shutil.rmtree(leftover, ignore_errors=True)
    return folder


def _policy_sidecar(cfg: TrainConfig, vec, step: int) -> dict[str, Any]:
    """What loading a policy needs to know: the algorithm, its config, the env and its spaces."""
    act = vec.single_action_space
    return {
        "algo": algo_of(cfg),
        "config": to_dict(cfg),
        "env_id": cfg.env_id,
        "env_kwargs": cfg.env_kwargs,
        "obs_space": describe(vec.single_observation_space),
        "action_space": {**describe(act), "low": act.low.tolist(), "high": act.high.tolist()},
        "step": step,
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def write_best(root: Path, cfg: TrainConfig, vec, step: int, model: torch.nn.Module, score: dict[str, float]) -> Path:
    """Keep ``model`` as the run's best policy: ``root/best-step-N`` (its weights and a sidecar with
    the ``score`` that chose it) written completely, then the ``root/best`` pointer moved to it and
    the previous best removed. Loads like any checkpoint; holds no optimiser or replay state."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    folder = root / f"best-step-{step:010d}"
    _discard(folder)
    folder.mkdir(parents=True)
    save_checkpoint(folder, tensors, {**_policy_sidecar(cfg, vec, step), "best": score})
    atomic_write_text(root / BEST, folder.name + "\n")
    for old in root.glob("best-step-*"):
        if old != folder:
            _discard(old)
    return folder


def best_checkpoint(run_dir: str | Path) -> Path | None:
    """The run's best-policy checkpoint (``checkpoints/best``), or None when it has none."""
    pointer = Path(run_dir) / "checkpoints" / BEST
    if not pointer.is_file():
        return None
    name = pointer.read_text(errors="replace").strip()
    folder = pointer.parent / name
    if "/" in name or not name.startswith("best-step-") or not (folder / SIDECAR).is_file():
        raise CheckpointError(f"{pointer}: names {name[:100]!r}, which is not a complete best-policy checkpoint")
    return folder


def forget_best(run_dir: str | Path) -> None:
    """Remove the run's best-policy checkpoint (the pointer first)."""
    root = Path(run_dir) / "checkpoints"
    (root / BEST).unlink(missing_ok=True)
    for old in root.glob("best-step-*"):
        _discard(old)


def _discard(folder: Path) -> None:
    """Remove a checkpoint folder so that no kill leaves it looking complete: it is first renamed
    out of the ``step-*`` names in one step, then deleted."""
    if not folder.exists():
        return
    trash = folder.with_name(f".trash-{folder.name}-{os.getpid()}")
    os.replace(folder, trash)
    shutil.rmtree(trash, ignore_errors=True)


def resolve_policy(path: str | Path) -> Path:
    """The checkpoint whose policy a run stands for: a checkpoint folder itself, else the run's best
    policy (``checkpoints/best``, kept by ``keep_best``) where it has one, else its latest checkpoint."""
    path = Path(path)
    if not (path / SIDECAR).is_file():
        best = best_checkpoint(path)
        if best is not None:
            return best
    return resolve_checkpoint(path)


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder, or a run folder (its latest checkpoint)."""
    path = Path(path)
    if (path / SIDECAR).is_file():
        return path
    latest = path / "checkpoints" / "latest"
    if latest.is_file():
        folder = path / "checkpoints" / latest.read_text().strip()
        if not (folder / SIDECAR).is_file():
            raise CheckpointError(f"{latest}: names {folder.name!r}, which is not a complete checkpoint")
        return folder
    if not path.exists():
        raise CheckpointError(f"{path}: no such run or checkpoint folder")
    raise CheckpointError(f"{path}: neither a checkpoint folder ({SIDECAR}) nor a run folder (checkpoints/latest)")


def load_state(folder: Path, device: torch.device) -> dict[str, Any]:
    doc = read_sidecar(folder)
    state = {
        "doc": doc,
        "source": str(folder / MODEL),
        "tensors": load_tensors(folder, MODEL, doc, device),
        "optim": doc.get("optim", {}),
        "rng": doc.get("rng", {}),
        "step": int(doc["step"]),
    }
    if REPLAY in doc["files"]:
        state["replay"] = load_tensors(folder, REPLAY, doc, device)
    return state
