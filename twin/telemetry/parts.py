"""Telemetry of episodes run apart (an evaluation's worker processes or Ray tasks): each episode
written as a part of its own by whoever ran it, then the parts of each task and variant joined
into one recording, end to end in seed order, as ``twin record`` writes one.

A part is ``<root>/.parts/<task>/<variant>/<seed>.signals.parquet``, ``.events.parquet`` and
``.json`` (its simulated seconds, control and sample rates, layout), each file written whole or
not at all, so an evaluation cut short and resumed keeps the parts of the episodes it had run.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path

from twin.telemetry.files import _write_atomic, write_recording

PARTS = ".parts"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def part_dir(root: str | Path, task: str, variant: str) -> Path:
    return Path(root) / PARTS / _safe(task) / _safe(variant)


def write_part(root: str | Path, task: str, variant: str, seed: int, recorder, layout: str | None) -> None:
    """The episode ``recorder`` holds (begun at its reset, stepped to its end), as a part."""
    import pyarrow.parquet as pq

    signals, events = recorder.tables()  # ends the episode
    folder = part_dir(root, task, variant)
    folder.mkdir(parents=True, exist_ok=True)
    ep = recorder.episodes[-1]
    _write_atomic(folder / f"{seed}.signals.parquet", lambda p: pq.write_table(signals, p, compression="zstd"))
    _write_atomic(folder / f"{seed}.events.parquet", lambda p: pq.write_table(events, p, compression="zstd"))
    meta = {
        "seed": seed,
        "start": recorder.start.isoformat(),
        "duration_s": round(ep.duration_s, 6),
        "rate_hz": recorder.rate_hz,
        "control_hz": 1.0 / recorder.twin.control_dt,
        "signals_per_sample": len(recorder.table),
        "layout": layout,
    }
    _write_atomic(folder / f"{seed}.json", lambda p: p.write_text(json.dumps(meta), encoding="utf-8"))


def _shifted(table, seconds: float):
    import pyarrow as pa
    import pyarrow.compute as pc

    col = table.column("timestamp")
    moved = pc.add(col, pa.scalar(timedelta(seconds=seconds), pa.duration("us")))
    return table.set_column(table.column_names.index("timestamp"), "timestamp", moved.cast(col.type))


def assemble(root: str | Path, groups: list[tuple[str, str, list[int], dict]], meta: dict) -> list[dict]:
    """Join each ``(task, variant, seeds, env_kwargs)`` group's parts into ``root/<task>/<variant>/``
    (a telemetry folder) and remove the parts. Returns, per group, the folder, the episodes in it
    and the seeds that had no part (an episode whose worker died)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = []
    for task, variant, seeds, kwargs in groups:
        folder = part_dir(root, task, variant)
        have = [s for s in seeds if (folder / f"{s}.json").is_file()]
        missing = [s for s in seeds if s not in have]
        if not have:
            out.append({"task": task, "variant": variant, "folder": None, "episodes": 0, "missing": missing})
            continue
        sigs, evs, spans, offset, info = [], [], [], 0.0, None
        start = None
        for s in have:
            part = json.loads((folder / f"{s}.json").read_text(encoding="utf-8"))
            info = info or part
            own = datetime.fromisoformat(part["start"])
            start = start or own
            shift = offset - (own - start).total_seconds()  # the part's time zero to its place
            sigs.append(_shifted(pq.read_table(folder / f"{s}.signals.parquet"), shift))
            evs.append(_shifted(pq.read_table(folder / f"{s}.events.parquet"), shift))
            spans.append({"episode": s, "offset_s": offset, "duration_s": part["duration_s"]})
            offset += part["duration_s"]
        signals = pa.concat_tables(sigs, promote_options="permissive")
        events = pa.concat_tables(evs, promote_options="permissive")
        dest = Path(root) / _safe(task) / _safe(variant)
        write_recording(
            dest,
            signals,
            events,
            {
                **meta,
                "env_id": task,
                "variant": variant,
                "env_kwargs": {k: str(v) for k, v in kwargs.items()},
                "layout": info["layout"],
                "seeds": have,
                "start": start.isoformat(),
                "rate_hz": info["rate_hz"],
                "control_hz": info["control_hz"],
                "signals_per_sample": info["signals_per_sample"],
                "episodes": spans,
                "missing_seeds": missing,
            },
        )
        shutil.rmtree(folder)
        out.append({"task": task, "variant": variant, "folder": str(dest), "episodes": len(have), "missing": missing})
    shutil.rmtree(Path(root) / PARTS, ignore_errors=True)
    return out
