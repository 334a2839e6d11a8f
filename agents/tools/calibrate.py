"""``twin calibrate``: fit a layout to a plant's log, write the calibrated layout, and measure the
fidelity of the twin before and after on the same number of expert episodes.

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
from twin.telemetry.calibrate import CalibrationError, apply, fit
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
    stray = sorted(logged - have)
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
) -> dict:
    """Fit ``names``, write ``out/layout.toml``, run the twin before and after, and write
    ``out/calibration.json`` with the fidelity reports in ``out/fidelity-before`` and ``-after``."""
    import tomli_w

    t0 = time.perf_counter()
    path, data = read_layout_data(layout)
    check_assets(plant, env_id, path)
    fits = fit(plant, data, names, seed=seed)
    calibrated = apply(data, fits)
    try:
        parse_layout(calibrated, f"{path} calibrated from {plant}", path.parent)
    except LayoutError as exc:
        raise CalibrationError(f"the fitted values leave the layout's bounds: {exc}") from None
    out.mkdir(parents=True, exist_ok=True)
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
        "fit_seconds": round(fit_s, 3),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    tmp = out / ".calibration.json.tmp"
    tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    tmp.replace(out / "calibration.json")
    return result
