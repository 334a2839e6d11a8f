"""What a scorecard says, in words and units: readable KPI names, the per-task headline with
robustness ratios, and the expert's reference scores.

Aggregates (``report.aggregate``) keep machine-readable column names (``success_ci95_low``,
``throughput_mean``); everything a person reads goes through ``kpi_label`` and ``headline``.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

REFERENCE_DIR = Path(__file__).resolve().parents[2] / "seeds" / "reference"
"""Checked-in expert scorecards (aggregates and provenance), one per suite: ``<suite>-expert.json``."""

ROBUSTNESS_VARIANTS = ("randomized", "faults")
"""Variants whose success is set against the nominal one in the headline."""

# key: (readable name, unit, which way is better: +1 higher, -1 lower, 0 neither)
KPIS: dict[str, tuple[str, str, int]] = {
    "return": ("Return", "reward", 1),
    "length": ("Episode length", "steps", 0),
    "parts_arrived": ("Parts arrived", "parts", 0),
    "parts_placed": ("Parts placed", "parts", 1),
    "place_rate": ("Place rate", "share", 1),
    "throughput": ("Throughput", "parts/h", 1),
    "cycle_time_mean": ("Cycle time, mean", "s", -1),
    "cycle_time_p50": ("Cycle time, median", "s", -1),
    "cycle_time_p95": ("Cycle time, 95th pct.", "s", -1),
    "pick_attempts": ("Pick attempts", "attempts", 0),
    "picks": ("Picks", "picks", 0),
    "pick_success": ("Pick success", "share", 1),
    "attempts_per_pick": ("Attempts per pick", "attempts", -1),
    "drops": ("Drops", "parts", -1),
    "missed": ("Parts missed", "parts", -1),
    "collisions": ("Collisions", "events", -1),
    "energy": ("Energy", "J", -1),
    "energy_per_part": ("Energy per part", "J/part", -1),
    "good_shipped": ("Good parts shipped", "parts", 1),
    "defects_escaped": ("Defects escaped", "parts", -1),
    "false_rejects": ("False rejects", "parts", -1),
    "defects_caught": ("Defects caught", "parts", 1),
    "defects_arrived": ("Defects arrived", "parts", 0),
    "first_pass_yield": ("First-pass yield", "share", 1),
    "parts_in_process_mean": ("Parts in process, mean", "parts", 0),
    "deliveries": ("Deliveries", "totes", 1),
    "deliveries_per_hour": ("Deliveries", "totes/h", 1),
    "misdeliveries": ("Misdeliveries", "totes", -1),
    "totes_dropped": ("Totes dropped", "totes", -1),
    "agv_collisions": ("AGV collisions", "events", -1),
    "travel_distance": ("Travel distance", "m", -1),
    "docking_error_mean": ("Docking error, mean", "mm", -1),
    "agv_energy": ("AGV energy", "J", -1),
    "min_person_distance": ("Closest approach to a person", "m", 1),
    "safety_field_time": ("Time with a person in the safety field", "s", -1),
    "wafers_completed": ("Wafers completed", "wafers", 1),
    "wafers_per_hour": ("Wafer throughput", "wafers/h", 1),
    "wafer_contacts": ("Wafer contacts", "events", -1),
    "wafer_slips": ("Wafer slips", "events", -1),
    "wafers_dropped": ("Wafers dropped", "wafers", -1),
    "peak_wafer_acceleration": ("Peak wafer acceleration", "m/s²", -1),
    "process_chamber_utilisation": ("Process chamber utilisation", "share", 1),
    "faults": ("Faults", "faults", 0),
    "fault_time": ("Fault time", "s", 0),
    "availability": ("Availability", "share", 1),
    "mtbf_observed": ("MTBF, observed", "s", 1),
    "mttr_observed": ("MTTR, observed", "s", -1),
    "time_to_recover": ("Time to recover", "s", -1),
    "parts_out_of_spec": ("Parts out of spec", "parts", 0),
}
_PER_STATION = {
    "oee": ("OEE", "share", 1),
    "availability": ("availability", "share", 1),
    "performance": ("performance", "share", 1),
    "quality": ("quality", "share", 1),
    "idle_time": ("idle time", "s", -1),
    "produced": ("produced", "parts", 1),
    "scrap": ("scrap (produced, then lost or rejected)", "parts", -1),
    "insertion_time": ("insertion time", "s", -1),
    "peak_force": ("peak force", "N", -1),
    "jams": ("jams", "events", -1),
}
_STATION = re.compile(r"^(?P<station>[a-z_]+-\d+)_(?P<what>[a-z_]+)$")


def kpi_info(key: str) -> tuple[str, str, int]:
    """(readable name, unit, +1/-1/0 which way is better) of a KPI key (``throughput``,
    ``machine-0_oee``); an unknown key reads as itself, without a unit."""
    if key in KPIS:
        return KPIS[key]
    m = _STATION.match(key)
    if m and m["what"] in _PER_STATION:
        name, unit, better = _PER_STATION[m["what"]]
        return f"{m['station'].replace('-', ' ')} {name}", unit, better
    return key.replace("_", " "), "", 0


def kpi_label(key: str) -> str:
    """``Throughput (parts/h)``."""
    name, unit, _ = kpi_info(key)
    return f"{name} ({unit})" if unit else name


def fmt(v: Any, unit: str = "") -> str:
    """A number for people: 3 significant figures, shares as percentages, '-' for none."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if unit == "share":
        return f"{100 * v:.1f}%"
    if isinstance(v, float):
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.3g}"
        return f"{v:,.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def success_text(a: dict[str, Any] | None) -> str:
    """``97.0% [91.5, 99.0]`` (success and its 95% Wilson interval, percent)."""
    if a is None:
        return "-"
    return f"{100 * a['success_mean']:.1f}% [{100 * a['success_ci95_low']:.1f}, {100 * a['success_ci95_high']:.1f}]"


def headline(aggregates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per task: its variants' aggregates by name and the robustness ratios
    (success in ``randomized`` and ``faults`` over success in ``nominal``; None where a variant is
    missing or nominal success is 0)."""
    tasks: dict[str, dict[str, dict]] = {}
    for a in aggregates:
        tasks.setdefault(a["task"], {})[a["variant"]] = a
    rows = []
    for task, variants in tasks.items():
        nominal = variants.get("nominal")
        ratios = {}
        for v in ROBUSTNESS_VARIANTS:
            if nominal is not None and v in variants and nominal["success_mean"] > 0:
                ratios[v] = variants[v]["success_mean"] / nominal["success_mean"]
            else:
                ratios[v] = None
        rows.append({"task": task, "variants": variants, "robustness": ratios})
    return rows


def variant_names(aggregates: list[dict[str, Any]]) -> list[str]:
    """Variants in the order they first appear (nominal first)."""
    names = list(dict.fromkeys(a["variant"] for a in aggregates))
    return sorted(names, key=lambda n: (n != "nominal", names.index(n)))


def kpi_keys(aggregates: list[dict[str, Any]], task: str) -> list[str]:
    """The KPI keys a task's aggregates carry (means), catalogue order first."""
    keys = {k.removesuffix("_mean") for a in aggregates if a["task"] == task for k in a if k.endswith("_mean")}
    keys.discard("success")
    order = list(KPIS)
    return sorted(keys, key=lambda k: (order.index(k) if k in order else len(order), k))


def load_reference(meta: dict[str, Any], path: str | Path | None = None) -> dict[str, Any] | None:
    """The expert's scorecard to show beside a policy's: ``path`` (a ``twin eval`` output folder or
    a reference JSON), else the checked-in one for the same suite when its hash matches."""
    if path is not None:
        from agents.evaluation.report import load_results

        p = Path(path)
        if p.is_dir():
            return load_results(p)
        try:
            doc = json.loads(p.read_text())
            doc["aggregates"], doc["scorecard"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"{p}: not a twin eval results file or reference ({exc})") from None
        return doc
    bundled = REFERENCE_DIR / f"{meta.get('suite')}-expert.json"
    if not bundled.is_file():
        return None
    doc = json.loads(bundled.read_text())
    if doc["scorecard"].get("suite_hash") != meta.get("suite_hash"):
        return None  # another edition of the suite: its numbers would not compare
    return doc


def write_reference(results_dir: str | Path, dest_dir: Path = REFERENCE_DIR) -> Path:
    """Keep an expert evaluation's scorecard (provenance and aggregates, not the episode rows) as
    the bundled reference of its suite: ``seeds/reference/<suite>-expert.json``."""
    from agents.common.files import atomic_write_text

    doc = json.loads((Path(results_dir) / "results.json").read_text())
    meta = doc["scorecard"]
    if (meta.get("policy") or {}).get("kind") != "expert":
        raise ValueError(f"{results_dir}: a reference is the scripted expert's scorecard, this is {meta.get('policy')}")
    if meta.get("tasks_run") or meta.get("variants_run"):
        part = meta.get("tasks_run") or meta.get("variants_run")
        raise ValueError(f"{results_dir}: ran only {part} of the suite; a reference covers all of it")
    dest_dir.mkdir(parents=True, exist_ok=True)
    path = dest_dir / f"{meta['suite']}-expert.json"
    text = json.dumps({"scorecard": meta, "aggregates": doc["aggregates"]}, indent=1, allow_nan=False) + "\n"
    atomic_write_text(path, text)
    return path


if __name__ == "__main__":  # python -m agents.evaluation.scorecard RESULTS_DIR
    import sys

    print(write_reference(sys.argv[1]))
