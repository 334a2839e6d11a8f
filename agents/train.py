"""``twin train`` and ``twin export``: run folders, checkpoints, resume, final evaluation, ONNX.

A run folder holds ``config.json``, ``metrics.jsonl``, ``tb/`` (TensorBoard), ``checkpoints/``
(one folder per checkpoint plus ``latest``, a text file naming the newest complete one),
``learning_curve.png`` and ``eval.json`` (the final evaluation on the fixed seeds).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from agents import bc, dagger, ppo, sac
from agents.collect import demos as demos_io
from agents.collect.curriculum import CurriculumSettings, curriculum_wrappers, tracks_from_demos
from agents.collect.difficulty import DifficultySettings, difficulty_wrappers
from agents.collect.vec import make_vec_env
from agents.common import checkpoint as ckpt
from agents.common.config import (
    BCConfig,
    ConfigError,
    DAggerConfig,
    SACConfig,
    TrainConfig,
    algo_of,
    from_dict,
    to_dict,
)
from agents.common.runtime import (
    PROGRESS_SEED_BASE,
    Run,
    evaluate,
    plot_learning_curve,
    resolve_device,
    share_cores,
    summarize_eval,
)
from agents.common.spaces import check_spaces, describe, image_keys, image_layout

ALGOS = {"ppo": ppo, "sac": sac, "bc": bc, "dagger": dagger}
MAX_POLICY_PARAMS = 500_000_000
"""Largest network a checkpoint may ask to be built (2 GB of float32 weights)."""


IMAGES_PROP = "factory_twin.obs_images"
"""The ONNX metadata property of an image policy: its cameras' places in the ``obs`` input."""


class TrainError(ValueError):
    """A run that cannot start as asked (existing run folder, mismatched resume, ...)."""


def _flatdim(desc: dict[str, Any]) -> int:
    if desc["type"] == "Box":
        return int(np.prod(desc["shape"]))
    if desc["type"] == "Dict":
        return sum(_flatdim(d) for d in desc["spaces"].values())
    raise ckpt.CheckpointError(f"unsupported observation space in checkpoint: {desc}")


def load_policy(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """The deterministic policy (flat obs -> actions, normalisation inside) of a checkpoint, or of a
    run: its best policy where it kept one (``keep_best``), else its latest checkpoint's."""
    folder = ckpt.resolve_policy(path)
    doc = ckpt.read_sidecar(folder)
    try:
        cfg = from_dict(doc["config"])
    except (ConfigError, TypeError, AttributeError) as exc:
        raise ckpt.CheckpointError(f"{folder / ckpt.SIDECAR}: config: {exc}") from None
    act = doc["action_space"]
    obs_dim, act_dim = _flatdim(doc["obs_space"]), int(act["shape"][0])
    layout = image_layout(doc["obs_space"])
    nets = 2 + 2 * getattr(cfg, "num_qs", 1)  # actor, value or critics, their targets
    inputs = obs_dim if layout is None else layout.vector_dim + 64 * len(layout.cameras)
    params = nets * cfg.net_width * (inputs + act_dim + cfg.net_depth * cfg.net_width)
    if layout is not None:  # the encoders' linear maps dominate
        params += sum(64 * c.size for c in layout.cameras)
    if params > MAX_POLICY_PARAMS:
        raise ckpt.CheckpointError(
            f"{folder / ckpt.SIDECAR}: declares networks of about {params:,} parameters "
            f"(obs {obs_dim}, width {cfg.net_width}, depth {cfg.net_depth}), over the {MAX_POLICY_PARAMS:,} limit"
        )
    try:
        extra = (layout,) if layout is not None else ()
        agent = ALGOS[algo_of(cfg)].build(cfg, obs_dim, act_dim, act["low"], act["high"], *extra)
    except (ValueError, TypeError, RuntimeError, MemoryError) as exc:
        raise ckpt.CheckpointError(f"{folder / ckpt.SIDECAR}: cannot build its network: {exc}") from None
    tensors = ckpt.load_tensors(folder, ckpt.MODEL, doc, "cpu")
    ckpt.load_module_state(agent, tensors, "model.", str(folder / ckpt.MODEL))
    policy = agent.policy().to(device).eval()
    return policy, doc


# -- training ---------------------------------------------------------------------------------


RESUMABLE_CHANGES = (
    "total_steps",
    "eval_every",
    "progress_episodes",
    "keep_best",
    "max_seconds",
    "device",
    "compile",
    "workers",
    "double_buffer",
    "pin_workers",
    "learner_threads",
    "collect",
    "backend",
)
"""Settings a resumed run may change: the budget and where and how it runs, not what it learns."""


def train(cfg: TrainConfig, out: str | Path, resume: bool = False, quiet: bool = False) -> dict[str, Any]:
    """Train, checkpoint, evaluate on the fixed seeds; returns the final summary.

    A first Ctrl-C or SIGTERM stops the run at the next step with a final checkpoint (the
    summary then has ``stopped`` set to the signal's name and no evaluation).
    """
    out = Path(out)
    state = None
    if resume:
        folder = ckpt.resolve_checkpoint(out)
        doc = ckpt.read_sidecar(folder)
        try:
            saved = from_dict(doc["config"])
        except (ConfigError, TypeError, AttributeError) as exc:
            raise ckpt.CheckpointError(f"{folder / ckpt.SIDECAR}: config: {exc}") from None
        if algo_of(saved) != algo_of(cfg) or saved.env_id != cfg.env_id:
            raise TrainError(
                f"{folder}: a {algo_of(saved)} run on {saved.env_id}; cannot resume it as {algo_of(cfg)} on {cfg.env_id}"
            )
        for key in RESUMABLE_CHANGES:  # keep the saved hyper-parameters
            setattr(saved, key, getattr(cfg, key))
        cfg = saved
    elif (out / "checkpoints" / "latest").exists():
        raise TrainError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")
    elif isinstance(cfg, SACConfig) and cfg.base_policy:
        cfg = _with_base(cfg)
    elif isinstance(cfg, SACConfig) and cfg.init_policy:
        cfg = _with_student(cfg)

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    console = Console(stderr=True)
    bc_only = algo_of(cfg) == "bc"  # behaviour cloning needs the env's spaces only
    wrappers = curriculum_wrappers_for(cfg) or difficulty_wrappers_for(cfg) or label_wrappers_for(cfg)
    vec = make_vec_env(  # workers fork before CUDA starts
        cfg.env_id,
        1 if bc_only else cfg.n_envs,
        cfg.env_kwargs,
        wrapper=wrappers,
        workers=0 if bc_only else (cfg.workers or None),
        backend="local" if bc_only else cfg.backend,
        double_buffer=cfg.double_buffer,
        pin=cfg.pin_workers,
        notify=lambda line: console.print(f"[yellow]twin: {line}[/yellow]", highlight=False, soft_wrap=True),
        seed=cfg.seed,
    )
    try:
        check_spaces(vec.single_observation_space, vec.single_action_space)
        if isinstance(cfg, SACConfig) and cfg.base_policy:
            _check_policy_spaces(cfg, "base_policy", vec.single_observation_space, vec.single_action_space)
        if isinstance(cfg, SACConfig) and cfg.init_policy and not resume:
            _check_policy_spaces(cfg, "init_policy", vec.single_observation_space, vec.single_action_space)
        device = resolve_device(cfg.device)
        share_cores(vec.local_processes, cfg.learner_threads)  # by default a core to each env worker
        if resume:
            state = ckpt.load_state(folder, device)
            if state["doc"]["obs_space"] != describe(vec.single_observation_space):
                raise TrainError(
                    f"{folder}: saved for observation space {state['doc']['obs_space']}, the env has another"
                )
        out.mkdir(parents=True, exist_ok=True)
        ckpt.atomic_write_text(out / "config.json", json.dumps(to_dict(cfg), indent=2))
        start = state["step"] if state else 0
        run = Run(out, cfg.total_steps, start=start, quiet=quiet, console=console)
        if state:
            run.timers.update(state["doc"].get("timers", {}))
        run.max_seconds = cfg.max_seconds
        workers = 0 if bc_only and cfg.n_envs == 1 else (cfg.workers or None)
        # Evaluation episodes are independent (each seed's row does not depend on how many envs run
        # them), so they use every core, whatever the training used.
        n_eval = max(cfg.n_envs, 1) if workers == 0 else max(cfg.n_envs, os.cpu_count() or 1, 1)
        keep, best = _best_keeper(cfg, out, vec, start, bc_only)
        if not bc_only:
            run.schedule_evals(
                cfg.eval_every,
                lambda policy: evaluate(
                    policy,
                    cfg.env_id,
                    cfg.env_kwargs,
                    cfg.progress_episodes,
                    min(n_eval, cfg.progress_episodes),
                    device,
                    seed_base=PROGRESS_SEED_BASE,
                    workers=workers,
                ),
                keep=keep,
                best=best,
            )
        t0 = time.perf_counter()
        try:
            with run.stop:
                agent, step = ALGOS[algo_of(cfg)].train(cfg, vec, run, device, state)
        finally:
            run.close()
        # a resumed run's training seconds count the runs before it (their wall-clock, as saved)
        before = state["doc"].get("timers", {}).get("wall", 0.0) if state else 0.0
        train_s, run_s = before + time.perf_counter() - t0, run.elapsed()
        restarts, dropped = getattr(vec, "worker_restarts", 0), getattr(vec, "episodes_dropped", 0)
    finally:
        vec.close()

    result = {
        "env_id": cfg.env_id,
        "algo": algo_of(cfg),
        "step": step,
        "device": str(device),
        "train_seconds": round(train_s, 2),
        "collect_seconds": round(run.timers["collect"], 2),
        "update_seconds": round(run.timers["update"], 2),
        "progress_eval_seconds": round(run.timers.get("eval", 0.0), 2),
        "workers_restarted": restarts,
        "episodes_dropped": dropped,
    }
    if cfg.max_seconds > 0 and not bc_only:
        result["run_seconds"] = round(run_s, 2)
        result["ended_by"] = "max_seconds" if step < cfg.total_steps and run.stop.requested is None else "total_steps"
    if run.stop.requested is not None:
        return {**result, "stopped": run.stop.requested, "episodes": []}
    policy = agent.policy().eval()
    result["policy_step"] = step
    if keep is not None and run.best is not None:
        result["policy_step"] = int(run.best["step"])
        result["best"] = run.best
        if run.best["step"] != step:  # an earlier policy scored better on the held-out seeds
            policy, _ = load_policy(out, device)
    t1 = time.perf_counter()
    with _eval_progress(console, cfg.eval_episodes, quiet) as tick:
        rows = evaluate(
            policy, cfg.env_id, cfg.env_kwargs, cfg.eval_episodes, n_eval, device, workers=workers, on_episode=tick
        )
    result = {**result, "eval_seconds": round(time.perf_counter() - t1, 2), **summarize_eval(rows), "episodes": rows}
    ckpt.atomic_write_text(out / "eval.json", json.dumps(result, indent=2))
    plot_learning_curve(out / "metrics.jsonl", out / "learning_curve.png", f"{describe_algo(cfg)} on {cfg.env_id}")
    return result


def _policy_of_this_env(cfg: SACConfig, setting: str) -> tuple[Path, dict, TrainConfig]:
    """The checkpoint folder, sidecar and saved config of the policy that ``setting`` (base_policy
    or init_policy) names, once it is known to be a policy of this env with this observation
    layout; TrainError names what differs."""
    given = getattr(cfg, setting)
    try:
        folder = ckpt.resolve_policy(given)
        doc = ckpt.read_sidecar(folder)
    except ckpt.CheckpointError as exc:
        raise TrainError(f"{setting}: {exc}") from None
    try:
        saved = from_dict(doc["config"])
    except (ConfigError, TypeError, AttributeError) as exc:
        raise ckpt.CheckpointError(f"{folder / ckpt.SIDECAR}: config: {exc}") from None
    if saved.env_id != cfg.env_id:
        raise TrainError(f"{setting} {given}: made for {saved.env_id}, this run trains on {cfg.env_id}")
    was = demos_io.observation_features(saved.env_id, saved.env_kwargs)
    now = demos_io.observation_features(cfg.env_id, cfg.env_kwargs)
    if was is not None and now is not None and was != now:
        k, a, b = demos_io.first_difference(was, now)
        raise TrainError(
            f"{setting} {given}: made with another observation layout: number {k} is {a!r} for it, "
            f"{b!r} in this env (env kwargs {saved.env_kwargs} then, {cfg.env_kwargs} now)"
        )
    return folder, doc, saved


def _with_base(cfg: SACConfig) -> SACConfig:
    """``cfg`` with its base policy's saved config copied in (``_policy_of_this_env``)."""
    folder, doc, _ = _policy_of_this_env(cfg, "base_policy")
    values = {**to_dict(cfg), "base_policy": str(folder), "base_config": doc["config"]}
    return from_dict(values)


def _with_student(cfg: SACConfig) -> SACConfig:
    """``cfg`` with ``init_policy`` resolved to the student's checkpoint, once the student is a BC
    or DAgger policy of this env (``_policy_of_this_env``) whose network the actor can take over."""
    folder, _, student = _policy_of_this_env(cfg, "init_policy")
    if not isinstance(student, BCConfig | DAggerConfig):
        raise TrainError(
            f"init_policy {cfg.init_policy}: a {algo_of(student)} run; the actor starts as a BC or DAgger student"
        )
    for key in ("net_width", "net_depth", "norm_obs", "norm_floor"):
        if getattr(student, key) != getattr(cfg, key):
            raise TrainError(
                f"init_policy {cfg.init_policy}: its {key} is {getattr(student, key)}, this run's is "
                f"{getattr(cfg, key)}; set {key}={getattr(student, key)} so that the actor can take its layers"
            )
    return from_dict({**to_dict(cfg), "init_policy": str(folder)})


def _check_policy_spaces(cfg: SACConfig, setting: str, obs_space, act_space) -> None:
    given = getattr(cfg, setting)
    if image_layout(obs_space) is not None:
        does = {"base_policy": "residual RL corrects", "init_policy": "fine-tuning starts the actor as"}[setting]
        raise TrainError(
            f"{setting} {given}: {does} a policy on state observations; {cfg.env_id} gives images "
            f"({', '.join(image_keys(obs_space))})"
        )
    doc = ckpt.read_sidecar(ckpt.resolve_policy(given))
    if doc["obs_space"] != describe(obs_space):
        raise TrainError(f"{setting} {given}: observation space {doc['obs_space']}, the env's is {describe(obs_space)}")
    want = {**describe(act_space), "low": act_space.low.tolist(), "high": act_space.high.tolist()}
    if doc["action_space"] != want:
        raise TrainError(f"{setting} {given}: action space {doc['action_space']}, the env's is {want}")


def _best_keeper(cfg: TrainConfig, out: Path, vec, start: int, bc_only: bool):
    """What keeps the run's best policy (``keep_best``), and the best score so far.

    A resumed run keeps the best policy it had up to the checkpoint it resumes from; one chosen
    after that step (by a run killed before its next checkpoint) is dropped with the steps that led
    to it. A run without evaluations, or with ``keep_best`` off, keeps none, so that the run stands
    for its final weights.
    """
    if bc_only or not cfg.keep_best or cfg.eval_every <= 0:
        ckpt.forget_best(out)
        return None, None
    best = None
    try:
        folder = ckpt.best_checkpoint(out) if start > 0 else None
        doc = ckpt.read_sidecar(folder) if folder is not None else {}
    except ckpt.CheckpointError:  # a damaged best policy is chosen again by the next evaluations
        doc = {}
    if doc and int(doc["step"]) <= start and isinstance(doc.get("best"), dict):
        best = {**doc["best"], "step": int(doc["step"])}
    if best is None:
        ckpt.forget_best(out)
    root = out / "checkpoints"

    def keep(agent: torch.nn.Module, step: int, score: dict[str, float]) -> None:
        ckpt.write_best(root, cfg, vec, step, agent, score)

    return keep, best


def describe_algo(cfg: TrainConfig) -> str:
    """The algorithm as a title names it: ``sac + demos + reverse curriculum``."""
    name = algo_of(cfg)
    if isinstance(cfg, SACConfig) and cfg.demos:
        name += " + demos + reverse curriculum" if cfg.curriculum else " + demos (RLPD)"
    if cfg.difficulty_curriculum:
        name += " + difficulty curriculum"
    if name == "dagger" and getattr(cfg, "demos", ""):
        name += " + demos"
    return name


def label_wrappers_for(cfg: TrainConfig):
    """The wrapper that has the scripted expert label every observation in the env workers
    (DAgger), else None; an env without a scripted expert is refused, named."""
    if algo_of(cfg) != "dagger":
        return None
    import envs

    if not envs.is_factory_env(cfg.env_id):
        raise TrainError(
            f"--algo dagger needs a scripted expert to label the states the student reaches; {cfg.env_id} has none "
            f"(this package's envs have one: {', '.join(envs.ENV_IDS)})"
        )
    from agents.collect.labels import ExpertLabels

    env_id = cfg.env_id
    return lambda env: ExpertLabels(env, env_id)


def curriculum_wrappers_for(cfg: TrainConfig) -> list | None:
    """The per-env reverse-curriculum wrappers a SAC run with ``curriculum`` asks for, else None."""
    if not isinstance(cfg, SACConfig) or not cfg.curriculum:
        return None
    tensors, meta = demos_io.load(cfg.demos)
    if meta["env_id"] != cfg.env_id or meta["env_kwargs"] != cfg.env_kwargs:
        raise demos_io.DemosError(
            f"{cfg.demos}: recorded on {meta['env_id']} with env kwargs {meta['env_kwargs']}; the curriculum "
            f"replays them on {cfg.env_id} with {cfg.env_kwargs}, which would reach other states"
        )
    if "taken" not in tensors:
        raise demos_io.DemosError(f"{cfg.demos}: holds no executed actions (taken); record it again with `twin demos`")
    tracks = tracks_from_demos(tensors)
    if not tracks:
        raise demos_io.DemosError(f"{cfg.demos}: no successful demonstration to start a curriculum from")
    settings = CurriculumSettings(
        step_back=cfg.curriculum_step_back,
        window=cfg.curriculum_window,
        threshold=cfg.curriculum_threshold,
        real_starts=cfg.curriculum_real_starts,
        horizon_ratio=cfg.curriculum_horizon_ratio,
    )
    return curriculum_wrappers(tracks, cfg.n_envs, settings)


def difficulty_wrappers_for(cfg: TrainConfig) -> list | None:
    """The per-env difficulty-curriculum wrappers a run with ``difficulty_curriculum`` asks for, else None."""
    if not cfg.difficulty_curriculum:
        return None
    import envs

    task = envs.TASKS.get(cfg.env_id)
    if task is None or not task.curriculum_stages:
        listed = [e for e in envs.ENV_IDS if envs.TASKS[e].curriculum_stages]
        raise TrainError(
            f"{cfg.env_id} lists no easier settings for a difficulty curriculum (Task.curriculum_stages); "
            f"these do: {', '.join(listed)}"
        )
    settings = DifficultySettings(window=cfg.difficulty_window, threshold=cfg.difficulty_threshold)
    return difficulty_wrappers(cfg.env_id, cfg.env_kwargs, task.curriculum_stages, cfg.n_envs, settings)


@contextlib.contextmanager
def _eval_progress(console: Console, episodes: int, quiet: bool):
    """A progress bar over the evaluation episodes (rate and ETA); yields the per-episode tick."""
    if quiet or episodes <= 0:
        yield lambda row: None
        return
    with Progress(
        TextColumn("[bold]eval"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f} episodes"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("eval", total=episodes)
        yield lambda row: progress.advance(task)


# -- ONNX export ------------------------------------------------------------------------------


def export_onnx(
    path: str | Path, onnx_file: str | Path, check_samples: int = 256, atol: float = 1e-5
) -> dict[str, Any]:
    """Export a checkpoint's policy to ONNX (input ``obs`` [batch, D], output ``action`` [batch, A]).

    An image policy's ``obs`` is the flat observation too: each camera's image (H, W, 3; RGB; 0
    to 255 as float) and ``proprio`` in the observation's sorted key order; the model's metadata
    property ``factory_twin.obs_images`` lists each camera's offset and shape.

    The file is checked with onnxruntime against the torch policy on random observations before
    it replaces ``onnx_file``; returns the largest difference seen.
    """
    import onnx
    import onnxruntime as ort

    policy, doc = load_policy(path, "cpu")
    obs_dim = _flatdim(doc["obs_space"])
    onnx_file = Path(onnx_file)
    onnx_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = onnx_file.with_name(f".{onnx_file.name}.tmp")
    example = torch.zeros(2, obs_dim)
    try:
        _torch_export(policy, example, tmp)
        model = onnx.load(str(tmp))
        onnx.checker.check_model(model)
        model.doc_string = json.dumps({"env_id": doc["env_id"], "algo": doc["algo"], "step": doc["step"]})
        layout = image_layout(doc["obs_space"])
        if layout is not None:  # where each camera's pixels lie in 'obs', for evaluators to check
            onnx.helper.set_model_props(model, {IMAGES_PROP: json.dumps(layout.describe())})
        onnx.save(model, str(tmp))
        sess = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(check_samples, obs_dim, generator=gen)
        norm = policy.norm
        if hasattr(norm, "mean"):  # random observations spread like the ones the policy was trained on
            x = norm.mean + 2.0 * torch.sqrt(norm.var) * x
        with torch.no_grad():
            ref = policy(x).numpy()
        got = sess.run(["action"], {"obs": x.numpy()})[0]
        diff = float(np.abs(ref - got).max())
        if not diff <= atol:
            raise RuntimeError(f"ONNX actions differ from the torch policy by {diff:.3g} (> {atol})")
        tmp.replace(onnx_file)
    finally:
        tmp.unlink(missing_ok=True)
    return {
        "onnx": str(onnx_file),
        "obs_dim": obs_dim,
        "act_dim": int(doc["action_space"]["shape"][0]),
        "max_abs_diff": diff,
        "step": int(doc["step"]),
        "best": "best" in doc,
    }


def _torch_export(policy: torch.nn.Module, example: torch.Tensor, out: Path) -> None:
    import contextlib
    import io
    import logging
    import warnings

    names = {"input_names": ["obs"], "output_names": ["action"]}
    # the exporter narrates each pass on stdout and logs every torchvision op it cannot register;
    # the command prints its own one-line summary (and any failure) instead
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            batch = torch.export.Dim("batch", min=1)
            torch.onnx.export(
                policy, (example,), str(out), dynamic_shapes=({0: batch},), dynamo=True, verbose=False, **names
            )
        except Exception:  # older torch or no onnxscript: the TorchScript exporter
            dynamic = {"obs": {0: "batch"}, "action": {0: "batch"}}
            torch.onnx.export(policy, (example,), str(out), dynamic_axes=dynamic, dynamo=False, **names)
        finally:
            quiet.setLevel(level)
