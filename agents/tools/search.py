"""Calibration by search over twin runs: the layout parameters no log shows directly (a robot's
drive speed, an AGV's top speed, a belt's friction), fitted by running the twin with candidate
values and keeping the one whose telemetry is closest to the plant's.

Each round runs the twin's expert on a grid of ``points`` values per parameter across its range
(the product of the grids where there are two), every candidate on the same seeds (common
random numbers, so that candidates differ by their parameters and not by their luck), and
scores each against the plant log with :func:`distance`. The next round's range is the best
candidate's neighbourhood (one grid step either side), so each round refines the last by
``(points - 1) / 2``. A parameter's uncertainty is half the last round's grid step (the
search's resolution).

Candidates run on local worker processes, or as Ray tasks (``backend="ray"``: the cluster at
``RAY_ADDRESS``, else a local one). Each finished candidate is kept in ``out/search/`` (its
values, distance and fidelity figures), so a search stopped at any point resumes where it was
when run again with the same inputs. A worker that dies is reported and its candidate run once
more; a second death stops the search naming it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from twin.telemetry.calibrate import CalibrationError, Param

MAX_SEARCHED = 2
"""Parameters one search fits together (the grid grows as points ** parameters)."""


@dataclass
class Searched:
    param: Param
    lo: float
    hi: float
    before: float | None


def distance(doc: dict, plant, twin) -> float:
    """How far a twin run (``twin``, a fidelity Log) is from the plant (``plant``), one number
    from its fidelity figures ``doc``: the cycle times' Wasserstein-1 distance as a share of the
    plant's mean cycle (1 where either side has no cycle), plus the output rates' difference as a
    share of the larger (0 to 1, the same for a twin that makes too much as for one that makes
    too little), plus the machines' mean time-in-state disagreement (1 - agreement). 0 is a
    perfect copy."""
    cycles = plant.cycle_s
    w1 = doc.get("wasserstein_s")
    total = w1 / float(cycles.mean()) if w1 is not None and len(cycles) and cycles.mean() > 0 else 1.0
    pt, tt = plant.throughput_per_h, twin.throughput_per_h
    total += abs(tt - pt) / max(tt, pt) if max(tt, pt) > 0 else 0.0
    agree = [v for v in (doc.get("time_in_state_agreement") or {}).values() if v is not None]
    return float(total + (1.0 - float(np.mean(agree)) if agree else 0.0))


def parse_range(text: str) -> tuple[str, float, float]:
    """``NAME=LO:HI`` as (name, lo, hi); CalibrationError says what was expected."""
    name, sep, rest = text.partition("=")
    lo_s, sep2, hi_s = rest.partition(":")
    try:
        lo, hi = float(lo_s), float(hi_s)
    except ValueError:
        lo = hi = math.nan
    if not sep or not sep2 or not name.strip() or not (math.isfinite(lo) and math.isfinite(hi)):
        raise CalibrationError(f"--range {text!r}: expected NAME=LO:HI, e.g. robots.0.speed_override=0.5:1.0")
    if lo >= hi:
        raise CalibrationError(f"--range {text!r}: LO ({lo:g}) must be below HI ({hi:g})")
    return name.strip(), lo, hi


def check_ranges(params: list[Param], ranges: dict[str, tuple[float, float]], data: dict, check) -> list[Searched]:
    """The searched parameters with their ranges, each end checked against the layout's bounds by
    ``check(data)`` (which raises naming the field); a searched parameter needs a range, and a
    range a searched parameter."""
    searched = [p for p in params if p.searched]
    for name in ranges:
        if name not in {p.name for p in searched}:
            raise CalibrationError(
                f"--range {name}: not a parameter this calibration searches "
                f"(searched: {[p.name for p in searched] or 'none'}; name it in --fit)"
            )
    if len(searched) > MAX_SEARCHED:
        raise CalibrationError(
            f"--fit: {len(searched)} parameters to search ({[p.name for p in searched]}); "
            f"at most {MAX_SEARCHED} are searched together (calibrate the rest in another run)"
        )
    out = []
    for p in searched:
        if p.name not in ranges:
            raise CalibrationError(f"{p.name} is fitted by search: give its range, --range {p.name}=LO:HI")
        lo, hi = ranges[p.name]
        for end in (lo, hi):
            trial = json.loads(json.dumps(data))
            p.set(trial, end)
            try:
                check(trial)
            except Exception as exc:  # the layout's own error names the field and its bounds
                raise CalibrationError(
                    f"--range {p.name}={lo:g}:{hi:g}: {end:g} is outside the layout's bounds: {exc}"
                ) from None
        out.append(Searched(p, lo, hi, p.get(data)))
    return out


def _key(values: dict[str, float]) -> str:
    text = ",".join(f"{k}={v:.9g}" for k, v in sorted(values.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_candidate(job: dict) -> dict:
    """One candidate: the twin's expert on the candidate layout, its fidelity against the plant
    (a worker's task; kept in the candidate's folder once done)."""
    from agents.tools.play import run_episodes
    from twin.telemetry.fidelity import fidelity, read_log

    folder = Path(job["folder"])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "layout.toml").write_text(job["layout_toml"], encoding="utf-8")
    run_dir = folder / "twin"
    if run_dir.exists():  # a run cut short: its telemetry is made again
        import shutil

        shutil.rmtree(run_dir)
    run_episodes(
        job["env_id"],
        "expert",
        job["episodes"],
        job["seed"],
        env_kwargs={"layout": str(folder / "layout.toml")},
        telemetry=run_dir,
        telemetry_rate=job["rate"],
    )
    plant, twin = read_log(job["plant"]), read_log(run_dir)
    doc = fidelity(plant, twin, seed=job["seed"])
    result = {
        "values": job["values"],
        "distance": distance(doc, plant, twin),
        "throughput_error": doc["throughput_error"],
        "ks_statistic": doc["ks_statistic"],
        "wasserstein_s": doc["wasserstein_s"],
        "time_in_state_agreement": doc["time_in_state_agreement"],
    }
    tmp = folder / ".result.json.tmp"
    tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    tmp.replace(folder / "result.json")
    return result


def _run_local(jobs: list[dict], workers: int, on_done: Callable[[dict], None]) -> dict[str, str]:
    """Run ``jobs`` on ``workers`` processes; the reasons of those whose worker died, by key."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    failed: dict[str, str] = {}
    with ProcessPoolExecutor(max_workers=max(1, min(workers, len(jobs))), mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(run_candidate, job): job for job in jobs}
        for fut in as_completed(futures):
            job = futures[fut]
            try:
                on_done(fut.result())
            except BrokenProcessPool:
                failed[job["key"]] = "its worker process died (killed, or out of memory)"
            except Exception as exc:
                failed[job["key"]] = f"{type(exc).__name__}: {exc}"
    return failed


def _run_ray(jobs: list[dict], workers: int, on_done: Callable[[dict], None]) -> dict[str, str]:
    from agents.collect.ray_pool import ensure_ray

    started = ensure_ray(workers)
    import ray

    failed: dict[str, str] = {}
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(run_candidate)
        refs = {remote.remote(job): job for job in jobs}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            job = refs[done[0]]
            try:
                on_done(ray.get(done[0]))
            except Exception as exc:
                failed[job["key"]] = f"its Ray task failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
    finally:
        if started:
            ray.shutdown()
    return failed


def search(
    searched: list[Searched],
    data: dict,
    plant: Path,
    env_id: str,
    out: Path,
    episodes: int,
    seed: int,
    rounds: int = 3,
    points: int = 5,
    workers: int = 2,
    backend: str = "local",
    rate: float = 1.0,
    on_candidate: Callable[[int, int, dict], None] | None = None,
    dump: Callable[[dict], str] | None = None,
) -> dict:
    """Fit ``searched`` on top of the layout ``data`` (its other parameters as they are).

    Returns ``{"values": {name: value}, "uncertainty": {name: half the last step}, "distance": the
    best's, "candidates": [every candidate's result, with its round], "runs": distinct candidates,
    "resumed": those found done in ``out``}``.
    ``on_candidate(done, total, result)`` is called as each candidate finishes.
    """
    import tomli_w

    if backend not in ("local", "ray"):
        raise CalibrationError(f"--backend must be local or ray, got {backend!r}")
    if rounds < 1 or points < 4:
        raise CalibrationError(
            f"--rounds must be at least 1 and --points at least 4, for each round to narrow the last "
            f"(got {rounds} and {points})"
        )
    dump = dump or tomli_w.dumps
    root = out / "search"
    root.mkdir(parents=True, exist_ok=True)
    spec = {
        "plant": str(Path(plant).resolve()),
        "env_id": env_id,
        "layout": hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest(),
        "parameters": {s.param.name: [s.lo, s.hi] for s in searched},
        "episodes": episodes,
        "seed": seed,
        "rounds": rounds,
        "points": points,
    }
    spec_path = root / "search.json"
    if spec_path.is_file():
        was = json.loads(spec_path.read_text(encoding="utf-8"))
        differ = [k for k in spec if was.get(k) != spec[k]]
        if differ:
            raise CalibrationError(
                f"{out}: holds a search with other inputs ({', '.join(differ)} differ); name a new --out to start "
                "afresh, or run with the same inputs to resume it"
            )
    else:
        spec_path.write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")

    run = _run_ray if backend == "ray" else _run_local
    ranges = {s.param.name: (s.lo, s.hi) for s in searched}
    candidates: list[dict] = []
    total = rounds * points ** len(searched)
    done = [0]
    made: set[str] = set()
    found: set[str] = set()
    step = {}
    for r in range(rounds):
        grids = {name: np.linspace(lo, hi, points) for name, (lo, hi) in ranges.items()}
        step = {name: (hi - lo) / (points - 1) for name, (lo, hi) in ranges.items()}
        jobs, results = [], {}
        for combo in itertools.product(*grids.values()):
            values = {name: round(float(v), 9) for name, v in zip(grids, combo, strict=True)}
            key = _key(values)
            folder = root / key
            if (folder / "result.json").is_file():
                results[key] = json.loads((folder / "result.json").read_text(encoding="utf-8"))
                if key not in made:  # run before this call (not in an earlier round of it)
                    found.add(key)
                done[0] += 1
                if on_candidate:
                    on_candidate(done[0], total, results[key])
                continue
            layout = json.loads(json.dumps(data))
            for s in searched:
                s.param.set(layout, values[s.param.name])
            jobs.append(
                {
                    "key": key,
                    "folder": str(folder),
                    "values": values,
                    "layout_toml": dump(layout),
                    "env_id": env_id,
                    "episodes": episodes,
                    "seed": seed,
                    "rate": rate,
                    "plant": str(plant),
                }
            )

        def finished(result: dict, results: dict = results) -> None:
            results[_key(result["values"])] = result
            made.add(_key(result["values"]))
            done[0] += 1
            if on_candidate:
                on_candidate(done[0], total, result)

        for attempt in (1, 2):
            todo = [j for j in jobs if j["key"] not in results]
            if not todo:
                break
            failed = run(todo, workers, finished)
            if failed and attempt == 2:
                key, why = next(iter(failed.items()))
                job = next(j for j in jobs if j["key"] == key)
                raise CalibrationError(
                    f"the twin run for {job['values']} failed twice ({why}); finished candidates are kept in "
                    f"{root}, so the same command resumes the search"
                )
        for res in results.values():
            candidates.append({**res, "round": r})
        best = min(results.values(), key=lambda x: x["distance"])
        ranges = {
            name: (max(s.lo, best["values"][name] - step[name]), min(s.hi, best["values"][name] + step[name]))
            for name, s in ((s.param.name, s) for s in searched)
        }
    best = min(candidates, key=lambda x: x["distance"])
    return {
        "values": dict(best["values"]),
        "uncertainty": {name: step[name] / 2 for name in step},
        "distance": best["distance"],
        "candidates": candidates,
        "resumed": len(found),
        "runs": len(made | found),
    }


def plot(result: dict, path: Path) -> None:
    """The distance of each candidate against its value, one panel per parameter, by round."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["values"])
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 3.8), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        for r in sorted({c["round"] for c in result["candidates"]}):
            cs = sorted((c for c in result["candidates"] if c["round"] == r), key=lambda c: c["values"][name])
            style = "o-" if len(names) == 1 else "o"
            ax.plot([c["values"][name] for c in cs], [c["distance"] for c in cs], style, ms=4, label=f"round {r + 1}")
        ax.axvline(result["values"][name], color="k", ls="--", lw=1, label="fitted")
        ax.set_xlabel(f"{name} (layout units)")
        ax.set_ylabel("distance to the plant (fraction)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle("calibration by search: each twin run's distance to the plant log")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
