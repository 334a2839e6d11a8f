"""Running a what-if sweep of a line: every (point, seed) as one job, in the fast line model or
in physics, on Ray (a local cluster, or the one at ``--address``) or local processes; resumable
(each finished job is a line of ``runs.jsonl``); the table, plots and Pareto fronts at the end."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from twin.line.schema import Line
from twin.line.sweep import SweepError, apply, pareto

KPIS = ("throughput", "wip", "lead_time_mean", "energy", "scrap")
"""The line KPIs a sweep's table, plots and fronts carry (each cell's are in runs.jsonl)."""


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """One point on one seed (a plain function: it runs in a Ray task or a worker process)."""
    line = Line.model_validate(job["line"])
    if job["mode"] == "des":
        from twin.line.des import run_des

        _, kpis = run_des(line, job["model"], job["seed"], job["duration"])
    else:
        from envs.line import PhysicsLine

        pl = PhysicsLine(line, job["source"])
        try:
            kpis = pl.run(job["seed"], job["duration"]).kpis
        finally:
            pl.close()
    return {"point": job["point"], "seed": job["seed"], "kpis": kpis}


def _key(point: dict[str, Any], seed: int) -> str:
    return json.dumps([sorted(point.items()), seed])


class Sweep:
    """A sweep's jobs and its folder.

    Args:
        line: The line swept.
        source: Its file (cell layouts are relative to it).
        points: The points (parameter name -> value).
        seeds: The seeds each point runs on.
        mode: ``des`` or ``physics``.
        duration: Line seconds per run.
        model: The fitted model's table (``des``).
        out: The sweep's folder.
        spec: What defines the sweep (compared on resuming).
    """

    def __init__(self, line, source, points, seeds, mode, duration, model, out: Path, spec: dict) -> None:
        self.line, self.source, self.points, self.seeds = line, str(source), points, seeds
        self.mode, self.duration, self.model, self.out, self.spec = mode, duration, model, Path(out), spec
        self.lines = {}
        for p in points:
            self.lines[json.dumps(sorted(p.items()))] = apply(line, p).model_dump(by_alias=True)

    def prepare(self) -> dict[str, dict]:
        """Make the folder (or check it holds this same sweep) and return the runs already done."""
        self.out.mkdir(parents=True, exist_ok=True)
        spec_file = self.out / "sweep.json"
        if spec_file.exists():
            try:
                saved = json.loads(spec_file.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise SweepError(f"{spec_file}: unreadable ({exc}); use a new --out folder") from None
            if saved != self.spec:
                changed = sorted(k for k in set(saved) | set(self.spec) if saved.get(k) != self.spec.get(k))
                raise SweepError(
                    f"--out {self.out} holds another sweep (its {', '.join(changed)} differ); use a new folder"
                )
        else:
            spec_file.write_text(json.dumps(self.spec, indent=1), encoding="utf-8")
        done: dict[str, dict] = {}
        runs = self.out / "runs.jsonl"
        if runs.exists():
            for line in runs.read_text(encoding="utf-8").splitlines():
                try:
                    r = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short when the sweep was stopped: that job runs again
                done[_key(r["point"], r["seed"])] = r
        return done

    def jobs(self, done: dict[str, dict]) -> list[dict[str, Any]]:
        out = []
        for p in self.points:
            for s in self.seeds:
                if _key(p, s) in done:
                    continue
                out.append(
                    {
                        "line": self.lines[json.dumps(sorted(p.items()))],
                        "source": self.source,
                        "mode": self.mode,
                        "model": self.model,
                        "seed": s,
                        "duration": self.duration,
                        "point": p,
                    }
                )
        return out

    def record(self, result: dict[str, Any]) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in result["kpis"].items()}
        with open(self.out / "runs.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps({**result, "kpis": clean}) + "\n")
            f.flush()
            os.fsync(f.fileno())


def execute(jobs: list[dict], backend: str, workers: int, address: str | None, on_done: Callable[[dict], None]) -> str:
    """Run ``jobs``, calling ``on_done`` with each result as it finishes; returns what ran them."""
    if not jobs:
        return backend
    if backend == "ray":
        import ray

        started = False
        if not ray.is_initialized():
            kwargs = {"address": address} if address else {"num_cpus": workers, "include_dashboard": False}
            root = str(Path(__file__).resolve().parents[2])
            env = {"env_vars": {"PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}}
            ray.init(log_to_driver=False, runtime_env=env, **kwargs)
            started = True
        try:
            remote = ray.remote(num_cpus=1, max_retries=1)(run_job)
            pending = {remote.remote(j): j for j in jobs}
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    pending.pop(ref)
                    on_done(ray.get(ref))
        finally:
            if started:
                ray.shutdown()
        return f"ray ({address or f'a local cluster of {workers} CPUs'})"
    if workers <= 1:
        for j in jobs:
            on_done(run_job(j))
        return "this process"
    import concurrent.futures as cf
    import multiprocessing as mp

    with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(run_job, j) for j in jobs]
        for f in cf.as_completed(futures):
            on_done(f.result())
    return f"{workers} local processes"


def summarise(done: list[dict], params: list[str]) -> list[dict[str, Any]]:
    """One row per point: its parameters, and per KPI the mean and 95% CI half-width over its seeds."""
    by_point: dict[str, list[dict]] = {}
    for r in done:
        by_point.setdefault(json.dumps(sorted(r["point"].items())), []).append(r)
    rows = []
    for key in sorted(by_point):
        runs = sorted(by_point[key], key=lambda r: r["seed"])  # the same sums whatever order runs finished in
        row: dict[str, Any] = dict(runs[0]["point"])
        row["seeds"] = len(runs)
        for k in KPIS:
            vals = np.array([np.nan if r["kpis"].get(k) is None else r["kpis"][k] for r in runs], dtype=float)
            vals = vals[np.isfinite(vals)]
            row[k] = float(vals.mean()) if vals.size else math.nan
            row[f"{k}_ci95"] = 1.96 * float(vals.std(ddof=1)) / math.sqrt(vals.size) if vals.size > 1 else math.nan
        bott = [r["kpis"].get("bottleneck") for r in runs if r["kpis"].get("bottleneck") is not None]
        row["bottleneck"] = int(np.bincount(np.array(bott, dtype=int)).argmax()) if bott else -1
        rows.append(row)
    rows.sort(key=lambda r: [r[p] for p in params])
    return rows


UNITS = {"throughput": "parts/h", "wip": "parts", "lead_time_mean": "s", "energy": "J", "scrap": "parts"}
LABELS = {
    "throughput": "throughput",
    "wip": "work in process",
    "lead_time_mean": "lead time",
    "energy": "energy",
    "scrap": "scrap",
}


def write_outputs(rows: list[dict], params: list[str], out: Path, title: str) -> list[Path]:
    """``sweep.csv``, ``sweep.parquet`` (with pyarrow), a plot per KPI and parameter, and the
    Pareto fronts of throughput against WIP and against energy (``pareto.csv``, ``pareto_*.png``)."""
    import csv

    written = []
    cols = [*params, "seeds", *(c for k in KPIS for c in (k, f"{k}_ci95")), "bottleneck"]
    with open(out / "sweep.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c) for c in cols})
    written.append(out / "sweep.csv")
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist([{c: r.get(c) for c in cols} for r in rows]), out / "sweep.parquet")
        written.append(out / "sweep.parquet")
    except ImportError:
        pass
    fronts = {}
    for other in ("wip", "energy"):
        idx = pareto([(r["throughput"], r[other]) for r in rows])
        fronts[other] = idx
    with open(out / "pareto.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["against", *params, "throughput (parts/h)", "wip (parts)", "energy (J)"])
        for other, idx in fronts.items():
            for i in idx:
                w.writerow(
                    [other, *(rows[i][p] for p in params), rows[i]["throughput"], rows[i]["wip"], rows[i]["energy"]]
                )
    written.append(out / "pareto.csv")
    written += _plots(rows, params, fronts, out, title)
    return written


def _plots(rows, params, fronts, out: Path, title: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for p in params:
        others = [q for q in params if q != p]
        groups: dict[tuple, list[dict]] = {}
        for r in rows:
            groups.setdefault(tuple(r[q] for q in others), []).append(r)
        for k in KPIS[:4]:
            fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
            if len(groups) > 8:  # too many lines to read: the mean over the other parameters
                xs = sorted({r[p] for r in rows})
                ys = [np.nanmean([r[k] for r in rows if r[p] == x]) for x in xs]
                ax.plot(xs, ys, marker="o", label=f"mean over {', '.join(others)}")
            else:
                for g, rs in sorted(groups.items(), key=lambda kv: str(kv[0])):
                    rs = sorted(rs, key=lambda r: r[p])
                    xs = np.array([r[p] for r in rs], dtype=float)
                    ys = np.array([r[k] for r in rs], dtype=float)
                    ci = np.nan_to_num(np.array([r[f"{k}_ci95"] for r in rs], dtype=float))
                    label = ", ".join(f"{q}={v}" for q, v in zip(others, g, strict=True)) or None
                    line = ax.plot(xs, ys, marker="o", label=label)[0]
                    ax.fill_between(xs, ys - ci, ys + ci, alpha=0.2, color=line.get_color())
            ax.set_xlabel(p)
            ax.set_ylabel(f"{LABELS[k]} ({UNITS[k]})")
            ax.set_title(f"{title}: {LABELS[k]} against {p}\n(mean over seeds, band: 95% CI)", fontsize=9)
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
            fig.tight_layout()
            path = out / f"{k}_vs_{p}.png"
            fig.savefig(path)
            plt.close(fig)
            written.append(path)
    for other, idx in fronts.items():
        fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
        ax.scatter([r[other] for r in rows], [r["throughput"] for r in rows], s=14, color="0.6", label="points")
        front = [rows[i] for i in idx]
        ax.plot([r[other] for r in front], [r["throughput"] for r in front], "o-", color="C3", label="Pareto front")
        ax.set_xlabel(f"{LABELS[other]} ({UNITS[other]})")
        ax.set_ylabel("throughput (parts/h)")
        ax.set_title(f"{title}: throughput against {LABELS[other]}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / f"pareto_{other}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


def elapsed(t0: float) -> float:
    return time.perf_counter() - t0
