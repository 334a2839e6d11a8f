"""``twin calibrate``: fit a layout to a plant's log, write the calibrated layout, and measure the
fidelity of the twin before and after on the same number of expert episodes.

Parameters the log shows are read from it (``twin.telemetry.calibrate``); the rest are fitted
by search over twin runs within the ``ranges`` given (``agents.tools.search``), on top of the
ones read from the log.

The twin runs on seeds of its own (``seed``, ``seed + 1``, ...), never the plant's, so the
after-figures measure the calibrated model, not a replay of the plant's episodes.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from agents.tools.play import run_episodes
from twin.layout import LayoutError, parse_layout
from twin.layout.files import MAX_LAYOUT_BYTES, find_layout, parse_toml, read_bounded
from twin.telemetry.calibrate import CalibrationError, Fit, apply, fit, parse_params
from twin.telemetry.fidelity import fidelity, read_log
from twin.telemetry.report import write_report

HEADLINE = ("throughput_error", "ks_statistic", "ks_pvalue", "wasserstein_s", "time_in_state_agreement")


def read_layout_data(layout: str) -> tuple[Path, dict]:
    """The layout file and its TOML as a dict, validated (a LayoutError names the field)."""
    path = find_layout(layout)
    source = str(path)
    data = parse_toml(
        read_bounded(path, MAX_LAYOUT_BYTES, lambda p: LayoutError(source, [p])), lambda p: LayoutError(source, [p])
    )
    parse_layout(data, source, path.parent)
    return path, data


def check_assets(plant: Path, env_id: str, layout: Path) -> None:
    """Refuse a plant log whose assets the layout does not have (a log of another cell)."""
    import envs
    from twin.telemetry import SignalTable, read_recording

    signals, _ = read_recording(plant)
    logged = set(signals.column("asset").to_pylist())
    env = envs.make(env_id, layout=str(layout))
    try:
        have = {s.asset for s in SignalTable(env.unwrapped.twin).signals}
    finally:
        env.close()
    stray = sorted(logged - have - {"cell"})  # the cell's own flags (faults on) are not equipment
    if stray:
        raise CalibrationError(
            f"{plant}: assets {stray} are not in layout {layout} (it has {sorted(have)}): a log of another cell?"
        )


def calibrate(
    plant: Path,
    env_id: str,
    layout: str,
    names: list[str],
    out: Path,
    episodes: int,
    seed: int,
    rate: float | None = None,
    on_step=None,
    ranges: dict[str, tuple[float, float]] | None = None,
    search_options: dict | None = None,
    on_candidate=None,
) -> dict:
    """Fit ``names``, write ``out/layout.toml``, run the twin before and after, and write
    ``out/calibration.json`` with the fidelity reports in ``out/fidelity-before`` and ``-after``.

    ``ranges`` bounds each parameter fitted by search; ``search_options`` are
    ``agents.tools.search.search``'s (``episodes``, ``rounds``, ``points``, ``workers``,
    ``backend``); ``on_candidate(done, total, result)`` follows the search."""
    import tomli_w

    t0 = time.perf_counter()
    path, data = read_layout_data(layout)
    params = parse_params(names, data)
    searched = []
    if any(p.searched for p in params) or ranges:
        from agents.tools.search import check_ranges

        searched = check_ranges(params, ranges or {}, data, lambda d: parse_layout(d, str(path), path.parent))
    check_assets(plant, env_id, path)
    data = _anchored(data, path.parent)
    fits = fit(plant, data, names, seed=seed)
    model = parse_layout(data, str(path), path.parent)
    for s in searched:  # a value the file leaves out is the schema's default
        if s.before is None:
            s.before = _default(model, s.param)
    for f in fits:
        if f.before is None:
            f.before = _default(model, next(p for p in params if p.name == f.name))
    calibrated = apply(data, fits)
    try:
        parse_layout(calibrated, f"{path} calibrated from {plant}", path.parent)
    except LayoutError as exc:
        raise CalibrationError(f"the fitted values leave the layout's bounds: {exc}") from None
    out.mkdir(parents=True, exist_ok=True)
    search_doc = None
    if searched:
        from agents.tools.search import plot, search

        opts = {
            "episodes": episodes,
            "rounds": 3,
            "points": 5,
            "workers": 2,
            "backend": "local",
            **(search_options or {}),
        }
        search_doc = search(
            searched, calibrated, plant, env_id, out, seed=seed, on_candidate=on_candidate, dump=tomli_w.dumps, **opts
        )
        found = [
            Fit(
                s.param.name,
                search_doc["values"][s.param.name],
                search_doc["uncertainty"][s.param.name],
                search_doc["runs"],
                s.before,
                "search",
            )
            for s in searched
        ]
        fits += found
        calibrated = apply(calibrated, found)
        plot(search_doc, out / "search.png")
    new_layout = out / "layout.toml"
    header = f"# {path.name} calibrated from the plant log {plant} (twin calibrate); fitted: {', '.join(names)}\n"
    new_layout.write_text(header + tomli_w.dumps(calibrated), encoding="utf-8")
    fit_s = time.perf_counter() - t0
    plant_log = read_log(plant)
    figures = {}
    for label, which in (("before", path), ("after", new_layout)):
        run_dir = out / f"twin-{label}"
        run_episodes(
            env_id,
            "expert",
            episodes,
            seed,
            env_kwargs={"layout": str(which)},
            telemetry=run_dir,
            telemetry_rate=rate,
            on_step=on_step,
        )
        twin_log = read_log(run_dir)
        doc = fidelity(plant_log, twin_log, seed=seed)
        report_dir = out / f"fidelity-{label}"
        report_dir.mkdir(exist_ok=True)
        (report_dir / "fidelity.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        write_report(report_dir, doc, plant_log, twin_log)
        figures[label] = {k: doc[k] for k in HEADLINE}
    result = {
        "plant": str(plant),
        "env_id": env_id,
        "layout": str(path),
        "calibrated_layout": str(new_layout),
        "parameters": {f.name: {k: v for k, v in asdict(f).items() if k != "name"} for f in fits},
        "fidelity": figures,
        "twin_episodes": episodes,
        "twin_seeds": [seed, seed + episodes - 1],
        "search": None
        if search_doc is None
        else {
            "distance": search_doc["distance"],
            "candidates": search_doc["candidates"],
            "runs": search_doc["runs"],
            "resumed": search_doc["resumed"],
            **{k: opts[k] for k in ("episodes", "rounds", "points", "workers", "backend")},
            "ranges": {s.param.name: [s.lo, s.hi] for s in searched},
        },
        "fit_seconds": round(fit_s, 3),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    tmp = out / ".calibration.json.tmp"
    tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    tmp.replace(out / "calibration.json")
    return result


def _default(model, param) -> float | list[float] | None:
    """The parsed layout's value of ``param`` (its default where the file leaves it out); None for
    a fault family the layout does not have."""
    if param.section == "faults":
        family = getattr(model.faults, param.index, None) if model.faults is not None else None
        value = getattr(family, param.field, None) if family is not None else None
    else:
        value = getattr(getattr(model, param.section)[param.index], param.field)
    return list(value) if isinstance(value, tuple) else value


def _anchored(data: dict, base: Path) -> dict:
    """The layout with each fixture's URDF found beside it given as an absolute path, so that the
    calibrated layout (and each search candidate's) reads the same files from its own folder."""
    from twin.layout.files import ASSETS_DIR, resolve_asset

    data = json.loads(json.dumps(data))
    for fx in data.get("fixtures", []):
        found = resolve_asset(str(fx.get("urdf", "")), base)
        if found is not None and not found.is_relative_to(ASSETS_DIR):
            fx["urdf"] = str(found.resolve())
    return data
