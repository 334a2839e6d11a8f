"""What every training run shares: device choice, the run folder, metrics, progress, evaluation."""

from __future__ import annotations

import json
import math
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from agents.collect.pool import StepBatch
from agents.collect.vec import SeedQueue, make_vec_env
from agents.common.signals import StopRequest
from agents.common.spaces import flatten_batch

EVAL_SEED_BASE = 1_000_000
"""Evaluation episodes use seeds ``EVAL_SEED_BASE + k``: fixed, and apart from training seeds."""
PROGRESS_SEED_BASE = 2_000_000
"""Seeds of the evaluations during training (``eval_every``): apart from the final evaluation's."""


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; ``cuda`` without CUDA is an error, not a silent fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but torch sees no CUDA device; use --device auto or cpu")
    return dev


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def share_cores(n_env_processes: int, threads: int = 0) -> int:
    """Set the learner's CPU threads: ``threads`` where given (more than 0), else the cores the env
    worker processes leave free (at least one).

    Torch's CPU thread pool spins for a while after each parallel op; sharing a core with a
    worker steals time from the physics. Returns the thread count set.
    """
    if threads <= 0:
        if n_env_processes <= 0:
            return torch.get_num_threads()
        threads = max(1, usable_cores() - n_env_processes)
    torch.set_num_threads(threads)
    return threads


class EpisodeStats:
    """Returns, lengths and successes of the episodes that ended recently.

    Episodes lost with a worker that died are counted in ``dropped``, not in the statistics.
    Episodes a reverse curriculum started part-way along a demonstration (``info
    ["curriculum_start"] > 0``) are counted apart: ``success_rate``, ``return_mean`` and
    ``length_mean`` describe episodes from the task's real initial states only, which is what
    the evaluation measures; ``curriculum_success_rate`` the others. So are episodes a difficulty
    curriculum played at an eased stage (``info["difficulty_stage"] < info["difficulty_stages"]``):
    ``eased_success_rate``, with ``difficulty_progress`` the share of the stages passed.
    """

    def __init__(self, n_envs: int, window: int = 100) -> None:
        self.ret = np.zeros(n_envs)
        self.len = np.zeros(n_envs, dtype=int)
        self.returns: deque[float] = deque(maxlen=window)
        self.lengths: deque[int] = deque(maxlen=window)
        self.successes: deque[float] = deque(maxlen=window)
        self.curriculum_successes: deque[float] = deque(maxlen=window)
        self.curriculum_starts: deque[float] = deque(maxlen=window)
        self.curriculum_progress: dict[int, float] = {}
        self.eased_successes: deque[float] = deque(maxlen=window)
        self.difficulty_progress: dict[int, float] = {}
        self.episodes = 0
        self.dropped = 0

    def step(self, batch: StepBatch) -> None:
        ids = batch.env_ids
        self.ret[ids] += batch.rewards
        self.len[ids] += 1
        for k in np.flatnonzero(batch.done):
            i = ids[k]
            if batch.dropped[k]:
                self.dropped += 1
            else:
                final = batch.finals.get(int(k))
                info = final[1] if final is not None else batch.infos[k]
                success = info.get("is_success")
                start = float(info.get("curriculum_start", 0.0))
                if "curriculum_progress" in info:
                    self.curriculum_progress[int(i)] = float(info["curriculum_progress"])
                stages = int(info.get("difficulty_stages", 0))
                eased = stages > 0 and int(info.get("difficulty_stage", stages)) < stages
                if stages:
                    self.difficulty_progress[int(i)] = min(int(info.get("difficulty_stage", stages)) / stages, 1.0)
                if eased:
                    if success is not None:
                        self.eased_successes.append(float(success))
                elif start > 0:
                    self.curriculum_starts.append(start)
                    if success is not None:
                        self.curriculum_successes.append(float(success))
                else:
                    self.returns.append(float(self.ret[i]))
                    self.lengths.append(int(self.len[i]))
                    if success is not None:
                        self.successes.append(float(success))
                    if self.curriculum_progress:
                        self.curriculum_starts.append(0.0)
                self.episodes += 1
            self.ret[i], self.len[i] = 0.0, 0

    def summary(self) -> dict[str, float]:
        out = {"episodes": float(self.episodes)}
        if self.dropped:
            out["episodes_dropped"] = float(self.dropped)
        if self.returns:
            out["return_mean"] = float(np.mean(self.returns))
            out["length_mean"] = float(np.mean(self.lengths))
        if self.successes:
            out["success_rate"] = float(np.mean(self.successes))
        if self.curriculum_progress:
            out["curriculum_progress"] = float(np.mean(list(self.curriculum_progress.values())))
            out["curriculum_start_mean"] = float(np.mean(self.curriculum_starts)) if self.curriculum_starts else 0.0
        if self.curriculum_successes:
            out["curriculum_success_rate"] = float(np.mean(self.curriculum_successes))
        if self.difficulty_progress:
            out["difficulty_progress"] = float(np.mean(list(self.difficulty_progress.values())))
        if self.eased_successes:
            out["eased_success_rate"] = float(np.mean(self.eased_successes))
        return out


class Run:
    """A run folder: ``metrics.jsonl``, TensorBoard events, checkpoints, plots, the final evaluation.

    Args:
        out: Folder to write into (created).
        total: Step budget, for the progress bar.
        quiet: No progress bar (tests).
    """

    def __init__(
        self, out: str | Path, total: int, start: int = 0, quiet: bool = False, console: Console | None = None
    ) -> None:
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.total, self.quiet = total, quiet
        self.console = console or Console(stderr=True)
        self._truncate_metrics(start)
        self._metrics = open(self.out / "metrics.jsonl", "a")  # noqa: SIM115 (closed in close())
        self._tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            # TensorBoard hides the events at or past ``start`` left by the run's earlier life
            self._tb = SummaryWriter(str(self.out / "tb"), purge_step=start + 1 if start else 0)
        except ImportError:  # tensorboard missing: metrics.jsonl still has everything
            self._tb = None
        self.t0 = time.perf_counter()
        self.start = start
        self.timers = {"collect": 0.0, "update": 0.0}
        self.max_seconds = 0.0
        """The run's wall-clock budget (``max_seconds``; 0: none)."""
        self.eval_reserve = 0.0
        """Seconds the longest held-out evaluation so far took: the budget keeps back
        ``RESERVE_MARGIN`` times it for the one at the end of training."""
        self.stop = StopRequest(self.console)
        self.evaluator: Callable[[torch.nn.Module], list[dict[str, Any]]] | None = None
        """Runs a policy on the held-out progress seeds (set by ``train``; None: no evaluations)."""
        self.eval_every = 0
        self._keep: Callable[[torch.nn.Module, int, dict[str, float]], None] | None = None
        self.best: dict[str, float] | None = None
        """The best evaluation so far (``progress_success_rate``, ``progress_return_mean``, ``step``)."""
        self._next_eval = 0
        self._evaluated_at = -1
        self._progress = None
        if not quiet:
            self._progress = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                TextColumn("{task.completed:,.0f}/{task.total:,.0f} steps"),
                TextColumn("{task.fields[rate]}"),
                TextColumn("{task.fields[success]}"),
                TextColumn("{task.fields[eval]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
            )
            self._progress.start()
            self._task = self._progress.add_task("train", total=total, completed=start, rate="", success="", eval="")

    def _truncate_metrics(self, start: int) -> None:
        """Keep the metric lines up to the step this run starts from (its checkpoint's): a resumed
        run continues the curve instead of repeating steps, a fresh run starts an empty one."""
        path = self.out / "metrics.jsonl"
        if not path.exists():
            return
        kept = []
        if start > 0:
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    if int(json.loads(line)["step"]) <= start:
                        kept.append(line)
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut off by a kill
        from agents.common.files import atomic_write_text

        atomic_write_text(path, "".join(f"{line}\n" for line in kept))

    def elapsed(self) -> float:
        """Seconds of the run: this life's, plus the earlier lives' of a resumed run."""
        return self.timers.get("wall", 0.0) + time.perf_counter() - self.t0

    RESERVE_MARGIN = 1.25
    """The evaluation at the end of training may take longer than any before it (its episodes
    run longer) and a checkpoint follows it: the budget keeps back this much more."""

    def out_of_time(self) -> bool:
        """The wall-clock budget (``max_seconds``) is spent, but for what the held-out evaluation
        at the end of training will take (``RESERVE_MARGIN`` times the longest one so far)."""
        on = self.evaluator is not None and self.eval_every > 0
        reserve = self.RESERVE_MARGIN * self.eval_reserve if on else 0.0
        return self.max_seconds > 0 and self.elapsed() + reserve >= self.max_seconds

    @property
    def stop_requested(self) -> bool:
        return self.stop.requested is not None

    def progress(self, step: int, success: float | None = None) -> None:
        if self._progress is None:
            return
        rate = (step - self.start) / max(time.perf_counter() - self.t0, 1e-9)
        self._progress.update(
            self._task,
            completed=step,
            rate=f"{rate:,.0f} steps/s",
            success="" if success is None else f"success {success:.2f}",
        )

    def schedule_evals(
        self,
        every: int,
        evaluator: Callable[[torch.nn.Module], list[dict[str, Any]]],
        keep: Callable[[torch.nn.Module, int, dict[str, float]], None] | None = None,
        best: dict[str, float] | None = None,
    ) -> None:
        """Evaluate the policy every ``every`` env steps (0: never) with ``evaluator``.

        ``keep(agent, step, score)`` is called whenever an evaluation scores at least as well as the
        best so far (``best``: the score a resumed run starts from), ranked by success rate, then
        mean return; a later evaluation wins a tie.
        """
        self.eval_every, self.evaluator, self._keep = every, evaluator, keep
        self.best = best
        self._next_eval = (self.start // every + 1) * every if every > 0 else 0

    def maybe_evaluate(self, step: int, agent: Any, last: bool = False) -> None:
        """Run the scheduled evaluation when ``step`` has reached it (or on the ``last`` step).

        ``agent.policy()`` gives the deterministic policy; its success rate and mean return on the
        progress seeds are logged as ``progress_success_rate`` and ``progress_return_mean``, with
        ``eval_s``, the seconds evaluating has cost so far (``time`` in the metrics counts from the
        start of the run, evaluations included).
        """
        if self.evaluator is None or self.eval_every <= 0 or self._evaluated_at == step:
            return
        if step < self._next_eval and not last:
            return
        self._evaluated_at = step
        while self._next_eval <= step:
            self._next_eval += self.eval_every
        t0 = time.perf_counter()
        net = agent.policy()
        was_training = net.training
        net.eval()
        try:
            rows = self.evaluator(net)
        finally:
            net.train(was_training)
        summary = summarize_eval(rows)
        row: dict[str, float] = {"progress_episodes": summary.get("eval_episodes", 0.0)}
        if "eval_return_mean" in summary:
            row["progress_return_mean"] = summary["eval_return_mean"]
        if "eval_success_rate" in summary:
            row["progress_success_rate"] = summary["eval_success_rate"]
            if self._progress is not None:
                self._progress.update(self._task, eval=f"eval {summary['eval_success_rate']:.2f}")
        score = {k: row[k] for k in ("progress_success_rate", "progress_return_mean") if k in row}
        if self._keep is not None and score and (self.best is None or _rank(score) >= _rank(self.best)):
            self._keep(agent, step, score)
            self.best = {**score, "step": step}
            row["best"] = 1.0
        took = time.perf_counter() - t0
        self.eval_reserve = max(self.eval_reserve, took)
        self.timers["eval"] = self.timers.get("eval", 0.0) + took
        row["eval_s"] = self.timers["eval"]
        self.log(step, row)

    def log(self, step: int, values: dict[str, float]) -> None:
        row = {"step": step, "time": round(self.elapsed(), 3), **values}  # a resumed run's counts on
        self._metrics.write(json.dumps(row) + "\n")
        self._metrics.flush()
        if self._tb is not None:
            for k, v in values.items():
                if isinstance(v, int | float) and math.isfinite(v):
                    self._tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        self._metrics.close()
        if self._tb is not None:
            self._tb.close()


def _rank(score: dict[str, float]) -> tuple[float, float]:
    return (score.get("progress_success_rate", -math.inf), score.get("progress_return_mean", -math.inf))


@torch.no_grad()
def evaluate(
    policy: torch.nn.Module,
    env_id: str,
    env_kwargs: dict[str, Any],
    episodes: int,
    n_envs: int,
    device: torch.device,
    seed_base: int = EVAL_SEED_BASE,
    workers: int | None = None,
    on_episode: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run ``policy`` (flat obs -> actions) for ``episodes`` episodes on seeds ``seed_base + k``.

    Each sub-env is reset with the next seed as soon as its episode ends, so results do not
    depend on ``n_envs``. ``on_episode`` sees each episode's row as it ends (for progress).
    Returns one row per episode, in seed order.
    """
    if episodes <= 0:
        return []
    n_envs = max(1, min(n_envs, episodes))
    vec = make_vec_env(env_id, n_envs, env_kwargs, autoreset="disabled", workers=workers)
    try:
        queue = SeedQueue(vec, [seed_base + k for k in range(episodes)])
        obs, _ = queue.reset()
        ret = np.zeros(n_envs)
        length = np.zeros(n_envs, dtype=int)
        rows: list[dict[str, Any]] = []
        while queue.active.any():
            x = torch.as_tensor(flatten_batch(vec.single_observation_space, obs), device=device)
            actions = policy(x).cpu().numpy()
            obs, r, term, trunc, info = vec.step(actions)
            ret += r
            length += 1
            done = (term | trunc) & queue.active
            if not done.any():
                continue
            dropped = info.get("dropped", np.zeros(n_envs, bool)) & info.get("_dropped", np.zeros(n_envs, bool))
            for i in np.flatnonzero(done & ~dropped):
                succ = info.get("is_success")
                row = {"seed": queue.current[i], "return": float(ret[i]), "length": int(length[i])}
                if succ is not None and info.get("_is_success", np.ones(n_envs, bool))[i]:
                    row["success"] = bool(succ[i])
                for k in ("parts_placed", "parts_arrived"):
                    if k in info and info.get(f"_{k}", np.ones(n_envs, bool))[i]:
                        row[k] = int(info[k][i])
                rows.append(row)
                if on_episode is not None:
                    on_episode(row)
                ret[i], length[i] = 0.0, 0
            ret[dropped], length[dropped] = 0.0, 0
            obs, _ = queue.advance(done, dropped)
        return sorted(rows, key=lambda r: r["seed"])
    finally:
        vec.close()


def summarize_eval(rows: list[dict[str, Any]]) -> dict[str, float]:
    if not rows:
        return {}
    out = {
        "eval_episodes": float(len(rows)),
        "eval_return_mean": float(np.mean([r["return"] for r in rows])),
        "eval_length_mean": float(np.mean([r["length"] for r in rows])),
    }
    if all("success" in r for r in rows):
        out["eval_success_rate"] = float(np.mean([r["success"] for r in rows]))
    if all("parts_arrived" in r for r in rows):
        arrived = sum(r["parts_arrived"] for r in rows)
        out["eval_parts_placed_fraction"] = sum(r["parts_placed"] for r in rows) / max(arrived, 1)
    return out


def plot_learning_curve(metrics_path: Path, out_png: Path, title: str) -> Path | None:
    """Return and success rate against env steps, from ``metrics.jsonl``; with a reverse or difficulty
    curriculum, a third panel follows it (its progress and its episodes' success rate)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter, MaxNLocator

    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    series = {
        k: [(r["step"], r[k]) for r in rows if k in r]
        for k in ("return_mean", "success_rate", "curriculum_progress", "difficulty_progress", "loss", "val_loss")
    }
    evals = [(r["step"], r["progress_success_rate"]) for r in rows if "progress_success_rate" in r]
    # the held-out evaluations fill the return and success panels where no training episode did
    # (a difficulty curriculum's eased episodes are not the task's)
    series = {k: v for k, v in series.items() if v or (k in ("return_mean", "success_rate") and evals)}
    if not series:
        return None
    fig, axes = plt.subplots(1, len(series), figsize=(4.5 * len(series), 3.4), squeeze=False)
    labels = {
        "return_mean": "episode return, mean (reward)",
        "success_rate": "success rate (share of episodes)",
        "curriculum_progress": "reverse curriculum (share)",
        "difficulty_progress": "difficulty curriculum (share)",
        "loss": "training loss (batch mean)",
        "val_loss": "validation loss (batch mean)",
    }
    for ax, (k, pts) in zip(axes[0], series.items(), strict=True):
        if pts:
            xs, ys = zip(*pts, strict=True)
            label = {
                "curriculum_progress": "progress: demos walked back",
                "difficulty_progress": "progress: eased stages passed",
                "success_rate": "training episodes",
                "return_mean": "training episodes",
            }.get(k)
            ax.plot(xs, ys, lw=1.6, label=label if k not in ("success_rate", "return_mean") or evals else None)
        eval_returns = [(r["step"], r["progress_return_mean"]) for r in rows if "progress_return_mean" in r]
        if k == "return_mean" and eval_returns:
            ax.plot(*zip(*eval_returns, strict=True), "o-", lw=1.6, ms=4, label="deterministic policy, held-out seeds")
            ax.legend(loc="upper left", fontsize=8)
        if k == "success_rate" and evals:
            ax.plot(*zip(*evals, strict=True), "o-", lw=1.6, ms=4, label="deterministic policy, held-out seeds")
            kept = [
                (r["step"], r["progress_success_rate"]) for r in rows if r.get("best") and "progress_success_rate" in r
            ]
            if kept:  # the last best is the policy the run keeps (keep_best)
                ax.plot(*kept[-1], "*", ms=13, color="C3", label="kept as the run's policy (best)")
            ax.legend(loc="upper left", fontsize=8)
        if k in ("curriculum_progress", "difficulty_progress"):
            key, text = {
                "curriculum_progress": ("curriculum_success_rate", "success from curriculum starts"),
                "difficulty_progress": ("eased_success_rate", "success at the eased stages"),
            }[k]
            cs = [(r["step"], r[key]) for r in rows if key in r]
            if cs:
                ax.plot(*zip(*cs, strict=True), lw=1.2, ls="--", label=text)
            ax.legend(loc="lower right", fontsize=8)
        ax.set_xlabel("env steps" if "loss" not in k else "updates")
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 200k, 1M: not 100000200000...
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.set_ylabel(labels[k])
        ax.grid(alpha=0.3)
        if k in ("success_rate", "curriculum_progress", "difficulty_progress"):
            ax.set_ylim(-0.02, 1.02)
    fig.suptitle(title)
    fig.tight_layout()
    tmp = out_png.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(out_png)
    return out_png


def compiled(fn, console: Console):
    """``torch.compile(fn)``, falling back to ``fn`` (with a note) where compilation is unsupported."""
    try:
        fast = torch.compile(fn)
    except Exception as exc:
        console.print(f"[yellow]--compile unavailable ({type(exc).__name__}: {exc}); running eagerly[/yellow]")
        return fn
    state = {"fn": fast}

    def call(*args, **kwargs):
        try:
            return state["fn"](*args, **kwargs)
        except Exception as exc:
            if state["fn"] is fn:
                raise
            console.print(f"[yellow]--compile failed ({type(exc).__name__}); running eagerly[/yellow]")
            state["fn"] = fn
            return fn(*args, **kwargs)

    return call
