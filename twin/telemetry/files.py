"""Telemetry on disk: the tables' schemas, and a recording written as a folder.

A telemetry folder holds:

- ``signals.parquet``: one row per signal per sample, the long format plant historians export:
  ``timestamp`` (UTC, microseconds), ``episode`` (int64), ``asset``, ``signal``, ``value``
  (float64), ``unit``.
- ``events.parquet``: one row per event: ``timestamp``, ``episode``, ``kind``, ``part``, ``robot``,
  ``station``, ``detail``, ``defect`` (strings, null where the event has none), ``value``
  (float64, null where none). The kinds and fields are ``twin.events.Event``'s.
- ``ocel.json``: the events as an OCEL 2.0 object-centric event log (``twin.telemetry.ocel``).
- ``telemetry.json``: what was recorded (env, layout, policy, rate, episodes, the schema version).

Reading needs ``pyarrow`` (the ``telemetry`` extra).
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import numpy as np

SCHEMA_VERSION = 1
SIGNAL_COLUMNS = ("timestamp", "episode", "asset", "signal", "value", "unit")
EVENT_COLUMNS = ("timestamp", "episode", "kind", "part", "robot", "station", "detail", "defect", "value")
_EVENT_TEXT = ("kind", "part", "robot", "station", "detail", "defect")


def _pa():
    try:
        import pyarrow as pa
    except ImportError:  # pragma: no cover - depends on the install
        raise ImportError("telemetry needs pyarrow: pip install 'factory-twin[telemetry]'") from None
    return pa


def _micros(start: datetime, seconds: np.ndarray) -> np.ndarray:
    """Microseconds since the Unix epoch of ``start + seconds``."""
    base = int(start.timestamp()) * 1_000_000 + start.microsecond
    return base + np.round(np.asarray(seconds, dtype=np.float64) * 1e6).astype(np.int64)


def signals_table(start: datetime, times: np.ndarray, episodes: np.ndarray, signals: list, values: np.ndarray):
    """The long table of ``values`` (samples x signals) sampled at ``times`` (seconds after ``start``)."""
    pa = _pa()
    n, m = values.shape
    assets = pa.array([s.asset for s in signals], pa.string())
    names = pa.array([s.signal for s in signals], pa.string())
    units = pa.array([s.unit for s in signals], pa.string())
    index = pa.array(np.tile(np.arange(m, dtype=np.int32), n))
    dictionary = lambda values: pa.DictionaryArray.from_arrays(index, values)  # noqa: E731
    return pa.table(
        {
            "timestamp": pa.array(np.repeat(_micros(start, times), m), pa.timestamp("us", tz="UTC")),
            "episode": pa.array(np.repeat(episodes, m), pa.int64()),
            "asset": dictionary(assets),
            "signal": dictionary(names),
            "value": pa.array(values.reshape(-1), pa.float64()),
            "unit": dictionary(units),
        }
    )


def events_table(start: datetime, episodes: list):
    """One row per event of each ``EpisodeEvents``, on the recording's clock."""
    pa = _pa()
    rows = [(ep.episode, ep.offset_s + e.t, e) for ep in episodes for e in ep.events]
    cols = {
        "timestamp": pa.array(_micros(start, np.asarray([t for _, t, _ in rows])), pa.timestamp("us", tz="UTC")),
        "episode": pa.array([k for k, _, _ in rows], pa.int64()),
    }
    for name in _EVENT_TEXT:
        cols[name] = pa.array([(getattr(e, name) or None) for _, _, e in rows], pa.string())
    cols["value"] = pa.array([e.value for _, _, e in rows], pa.float64())
    return pa.table(cols)


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def write_recording(out: str | Path, signals, events, meta: dict) -> Path:
    """``signals.parquet``, ``events.parquet``, ``ocel.json`` and ``telemetry.json`` in ``out``
    (made if missing); each file appears whole or not at all."""
    import pyarrow.parquet as pq

    from twin.telemetry.ocel import to_ocel

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(out / "signals.parquet", lambda p: pq.write_table(signals, p, compression="zstd"))
    _write_atomic(out / "events.parquet", lambda p: pq.write_table(events, p, compression="zstd"))
    doc = to_ocel(events, meta.get("episodes"), meta.get("start"))
    _write_atomic(out / "ocel.json", lambda p: p.write_text(json.dumps(doc), encoding="utf-8"))
    info = {
        "schema_version": SCHEMA_VERSION,
        **meta,
        "signals": signals.num_rows,
        "events": events.num_rows,
        "files": ["signals.parquet", "events.parquet", "ocel.json"],
    }
    _write_atomic(out / "telemetry.json", lambda p: p.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8"))
    return out


def read_recording(folder: str | Path):
    """(signals, events) of a telemetry folder, as ``pyarrow.Table``, checked against the schema;
    a file missing or a column absent is a ``ValueError`` naming the file and the column."""
    import pyarrow.parquet as pq

    folder = Path(folder)
    tables = []
    for name, columns in (("signals.parquet", SIGNAL_COLUMNS), ("events.parquet", EVENT_COLUMNS)):
        path = folder / name
        if not path.is_file():
            raise ValueError(f"{path}: no such file (a telemetry folder holds signals.parquet and events.parquet)")
        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises several kinds for a damaged file
            raise ValueError(f"{path}: not a readable Parquet file ({exc})") from None
        missing = [c for c in columns if c not in table.column_names]
        if missing:
            raise ValueError(f"{path}: missing column {missing[0]!r} (expected {', '.join(columns)})")
        tables.append(table)
    return tables[0], tables[1]


def roughen(folder: str | Path, seed: int, noise: float = 0.02, lost: float = 0.02) -> None:
    """Make a twin's recording look like a plant historian's export, in place: a relative Gaussian
    error (``noise``, one standard deviation) on every signal value, and a share ``lost`` of the
    signal and event rows dropped at random. Test fixtures and the calibration bench use it."""
    import pyarrow.parquet as pq

    pa = _pa()
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    signals = pq.read_table(folder / "signals.parquet")
    noisy = signals["value"].to_numpy() * (1 + noise * rng.standard_normal(signals.num_rows))
    signals = signals.set_column(signals.schema.get_field_index("value"), "value", pa.array(noisy))
    keep = pa.array(rng.uniform(size=signals.num_rows) >= lost)
    _write_atomic(folder / "signals.parquet", lambda p: pq.write_table(signals.filter(keep), p))
    events = pq.read_table(folder / "events.parquet")
    keep = pa.array(rng.uniform(size=events.num_rows) >= lost)
    _write_atomic(folder / "events.parquet", lambda p: pq.write_table(events.filter(keep), p))


__all__ = [
    "EVENT_COLUMNS",
    "SCHEMA_VERSION",
    "SIGNAL_COLUMNS",
    "events_table",
    "read_recording",
    "roughen",
    "signals_table",
    "write_recording",
]
