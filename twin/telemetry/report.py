"""The fidelity report: one self-contained HTML page (figures inlined) beside ``fidelity.json``.

It shows the headline figures with their units, the two cycle-time histograms overlaid, and each
machine's state timeline in the plant and in the twin over the first episodes.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np

from twin.telemetry.fidelity import Log
from twin.telemetry.signals import MACHINE_STATES

_COLOURS = dict(zip(MACHINE_STATES, ("#c8c8c8", "#8ecae6", "#219ebc", "#90be6d", "#f9c74f", "#e63946"), strict=True))
TIMELINE_S = 300.0
"""Seconds of the state timelines shown (from the logs' start)."""


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def _histogram(plant: Log, twin: Log):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.4))
    pc, tc = plant.cycle_s, twin.cycle_s
    both = np.concatenate([pc, tc])
    if len(both):
        bins = np.histogram_bin_edges(both, bins=min(30, max(5, len(both) // 3)))
        ax.hist(pc, bins=bins, alpha=0.55, label=f"plant ({len(pc)} parts)", color="#1d3557")
        ax.hist(tc, bins=bins, alpha=0.55, label=f"twin ({len(tc)} parts)", color="#e76f51")
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no cycle times in either log", ha="center", transform=ax.transAxes)
    ax.set_xlabel("cycle time (s)")
    ax.set_ylabel("parts")
    ax.grid(alpha=0.3)
    return fig


def _timelines(plant: Log, twin: Log):
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    machines = sorted(set(plant.machines) | set(twin.machines))
    fig, ax = plt.subplots(figsize=(9, 0.9 + 0.7 * max(1, 2 * len(machines))))
    span = min(TIMELINE_S, plant.duration_s, twin.duration_s)
    labels = []
    for k, (m, (side, log)) in enumerate((m, s) for m in machines for s in (("plant", plant), ("twin", twin))):
        changes = []
        for e in log.episodes:
            if e.start_s >= span:
                break
            changes.append((e.start_s, "idle"))
            changes += [(e.start_s + t, s) for t, s in e.states.get(m, [])]
        ends = [t for t, _ in changes[1:]] + [span]
        for (t0, s), t1 in zip(changes, ends, strict=True):
            if t0 < span:
                ax.broken_barh([(t0, min(t1, span) - t0)], (k - 0.4, 0.8), color=_COLOURS.get(s, "#000000"))
        labels.append(f"{m} ({side})")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlim(0, span)
    ax.set_xlabel("time since the log's start (s)")
    ax.invert_yaxis()
    ax.legend(
        handles=[Patch(color=c, label=s) for s, c in _COLOURS.items()],
        ncol=6,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.35),
    )
    return fig


def _fmt(x, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}g}"


def write_report(out: Path, doc: dict, plant: Log, twin: Log) -> Path:
    """``report.html`` in ``out``, from the figures ``doc`` (``fidelity()``) and the two logs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = []
    for make in (_histogram, _timelines):
        fig = make(plant, twin)
        figs.append(_png(fig))
        plt.close(fig)
    rows = [
        ("throughput error", _fmt(doc["throughput_error"]), "%"),
        (
            "throughput, plant / twin",
            f"{doc['throughput_per_h']['plant']:.1f} / {doc['throughput_per_h']['twin']:.1f}",
            "parts/h",
        ),
        ("cycle times, KS statistic (p-value)", f"{_fmt(doc['ks_statistic'])} ({_fmt(doc['ks_pvalue'])})", "-"),
        ("cycle times, Wasserstein-1", _fmt(doc["wasserstein_s"]), "s"),
    ]
    rows += [
        (f"time-in-state agreement, {m}", _fmt(v), "fraction of time")
        for m, v in doc["time_in_state_agreement"].items()
    ]
    kpi_rows = []
    for name, d in doc["kpi_differences"].items():
        lo, hi = d["ci95"]
        kpi_rows.append((name, _fmt(d["difference"]), f"[{_fmt(lo)}, {_fmt(hi)}]"))
    e = html.escape
    body = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Fidelity: twin against plant</title>",
        "<style>body{font-family:sans-serif;max-width:980px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}"
        "td.n{text-align:right}img{max-width:100%}pre{white-space:pre-wrap;word-break:break-all}</style></head><body>",
        "<h1 id='headline'>Fidelity: twin against plant</h1>",
        f"<p>plant: <code>{e(doc['plant'])}</code> ({doc['episodes']['plant']} episodes, "
        f"{doc['duration_s']['plant']:.0f} s)<br>twin: <code>{e(doc['twin'])}</code> "
        f"({doc['episodes']['twin']} episodes, {doc['duration_s']['twin']:.0f} s)</p>",
        "<table><tr><th>figure</th><th>value</th><th>unit</th></tr>",
        *(f"<tr><td>{e(a)}</td><td class='n'>{e(b)}</td><td>{e(c)}</td></tr>" for a, b, c in rows),
        "</table><h2 id='kpis'>KPI differences (twin minus plant, 95% bootstrap interval over episodes)</h2>",
        "<table><tr><th>KPI</th><th>difference</th><th>95% interval</th></tr>",
        *(f"<tr><td>{e(a)}</td><td class='n'>{e(b)}</td><td class='n'>{e(c)}</td></tr>" for a, b, c in kpi_rows),
        "</table><h2 id='cycle-times'>Cycle times</h2>",
        f"<img alt='cycle-time histograms' src='data:image/png;base64,{figs[0]}'>",
        f"<h2 id='states'>Machine states, the first {min(TIMELINE_S, doc['duration_s']['plant'], doc['duration_s']['twin']):.0f} s</h2>",
        f"<img alt='state timelines' src='data:image/png;base64,{figs[1]}'>",
        f"<h2 id='json'>fidelity.json</h2><pre>{e(json.dumps(doc, indent=1))}</pre></body></html>",
    ]
    path = out / "report.html"
    tmp = out / ".report.html.tmp"
    tmp.write_text("\n".join(body), encoding="utf-8")
    tmp.replace(path)
    return path
