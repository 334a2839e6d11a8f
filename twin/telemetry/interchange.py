"""Plant logs in the process-mining standards, read as a telemetry recording: an OCEL 2.0 JSON log
(``.json``, ``.jsonocel``) or an XES log (``.xes``, ``.xes.gz``) becomes the events table of
``twin.telemetry.files`` (and an empty signals table), so that ``twin replay`` takes them as it
takes a telemetry folder.

OCEL 2.0: each event's ``type`` is its kind and ``time`` its timestamp; its ``episode``,
``detail``, ``defect`` and ``value`` attributes are the columns of the same names; the objects
it relates to fill ``part``, ``robot`` and ``station`` by the relation's qualifier where it is
one of those, else by the object's type (parts, wafers and totes; robots and AGVs; anything
else is a station), each named by its ``name`` attribute (else its id, less any ``@episode``).
Objects of type ``episode`` with ``start`` and ``duration_s`` attributes (this package's export
writes them) give each episode's start; without them each episode's first event is its time
zero.

XES: each trace is an episode (its ``episode`` attribute, else the number its ``concept:name``
ends with, else its place); each event's ``concept:name`` is its kind, ``time:timestamp`` its
timestamp, and its ``part``, ``robot``, ``station`` (else ``org:resource``), ``detail``,
``defect`` and ``value`` attributes the columns of the same names. A trace's ``start`` (a date)
and ``duration_s`` give the episode's start and length.

Each row keeps a label naming where it came from (an OCEL event's id, an XES trace and event), so
that a refused row is named as the file names it.
"""

from __future__ import annotations

import gzip
import json
import math
import re
from datetime import UTC, datetime
from pathlib import Path

MAX_LOG_BYTES = 1 << 30
"""The largest OCEL or XES file read (1 GiB, uncompressed)."""
_PART_TYPES = ("part", "wafer", "tote")
_ROBOT_TYPES = ("robot", "agv")


class InterchangeError(ValueError):
    """An OCEL or XES log that cannot be read (names the file, the event and the field)."""


def is_interchange(path: str | Path) -> bool:
    name = Path(path).name.lower()
    return name.endswith((".json", ".jsonocel", ".xes", ".xes.gz"))


def _time(text: str, where: str) -> datetime:
    try:
        t = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise InterchangeError(f"{where}: time {text!r} is not an ISO 8601 timestamp") from None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _number(text, where: str, field: str, integer: bool = False):
    try:
        x = float(text)
    except (TypeError, ValueError):
        raise InterchangeError(f"{where}: {field} {text!r} is not a number") from None
    if not math.isfinite(x) or (integer and x != int(x)):
        raise InterchangeError(f"{where}: {field} {text!r} is not {'an integer' if integer else 'a finite number'}")
    return int(x) if integer else x


def _read_bytes(path: Path) -> bytes:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read(MAX_LOG_BYTES + 1)
    except (OSError, EOFError) as exc:
        raise InterchangeError(f"{path}: cannot be read ({exc})") from None
    if len(data) > MAX_LOG_BYTES:
        raise InterchangeError(f"{path}: larger than {MAX_LOG_BYTES >> 20} MiB; split the log")
    return data


def _value(text, where: str) -> float | None:
    """An event's ``value``: a number, or none where the log writes NaN (as tools do for a gap)."""
    try:
        if math.isnan(float(text)):
            return None
    except (TypeError, ValueError):
        pass
    return _number(text, where, "value")


def _row(episode: int, ts: datetime, kind: str) -> dict:
    return {
        "timestamp": ts,
        "episode": episode,
        "kind": kind,
        "part": None,
        "robot": None,
        "station": None,
        "detail": None,
        "defect": None,
        "value": None,
    }


def read_ocel(path: Path) -> tuple[list[dict], list[str], dict]:
    """(rows, labels, info) of an OCEL 2.0 JSON log."""
    try:
        doc = json.loads(_read_bytes(path))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InterchangeError(f"{path}: not JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("events"), list):
        raise InterchangeError(f"{path}: not an OCEL 2.0 JSON log (no 'events' list)")
    objects = {}
    spans = {}
    for k, o in enumerate(doc.get("objects") or []):
        if not isinstance(o, dict) or "id" not in o:
            raise InterchangeError(f"{path}: objects[{k}]: an object needs an 'id'")
        attrs = {a.get("name"): a.get("value") for a in o.get("attributes") or [] if isinstance(a, dict)}
        if o.get("type") == "episode":
            where = f"{path}: object {o['id']!r}"
            episode = _number(attrs.get("episode", re.sub(r"\D", "", str(o["id"])) or None), where, "episode", True)
            if "start" in attrs:
                spans[episode] = (
                    _time(attrs["start"], where),
                    _number(attrs.get("duration_s", 0.0), where, "duration_s"),
                )
            continue
        name = str(attrs.get("name") or str(o["id"]).split("@")[0])
        objects[o["id"]] = (str(o.get("type") or ""), name)
    rows, labels = [], []
    for k, e in enumerate(doc["events"]):
        label = f"event {e.get('id', k)!r}" if isinstance(e, dict) else f"events[{k}]"
        where = f"{path}: {label}"
        if not isinstance(e, dict) or not e.get("type") or "time" not in e:
            raise InterchangeError(f"{where}: an event needs a 'type' and a 'time'")
        attrs = {a.get("name"): a.get("value") for a in e.get("attributes") or [] if isinstance(a, dict)}
        episode = _number(attrs.get("episode", 0), where, "episode", integer=True)
        row = _row(episode, _time(e["time"], where), str(e["type"]))
        for field in ("detail", "defect"):
            if attrs.get(field) not in (None, ""):
                row[field] = str(attrs[field])
        if attrs.get("value") not in (None, ""):
            row["value"] = _value(attrs["value"], where)
        for rel in e.get("relationships") or []:
            oid = rel.get("objectId") if isinstance(rel, dict) else None
            if oid is None:
                continue
            if oid not in objects:
                if str(oid).startswith("episode"):
                    continue
                raise InterchangeError(f"{where}: relates to object {oid!r}, which the log does not list")
            otype, name = objects[oid]
            q = rel.get("qualifier")
            column = (
                q
                if q in ("part", "robot", "station")
                else "part"
                if otype in _PART_TYPES
                else "robot"
                if otype in _ROBOT_TYPES
                else "station"
            )
            row[column] = name
        rows.append(row)
        labels.append(label)
    return rows, labels, _info(spans)


def _info(spans: dict[int, tuple[datetime, float]]) -> dict:
    if not spans:
        return {}
    start = min(s for s, _ in spans.values())
    return {
        "start": start.isoformat(),
        "episodes": [
            {"episode": e, "offset_s": (s - start).total_seconds(), "duration_s": d}
            for e, (s, d) in sorted(spans.items())
        ],
    }


def read_xes(path: Path) -> tuple[list[dict], list[str], dict]:
    """(rows, labels, info) of an XES log."""
    import xml.etree.ElementTree as ET

    data = _read_bytes(path)
    if b"<!ENTITY" in data[:65536]:  # no entity definitions: no expansion attacks
        raise InterchangeError(f"{path}: the XES log defines XML entities; they are not read")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise InterchangeError(f"{path}: not XML ({exc})") from None
    strip = lambda tag: tag.rsplit("}", 1)[-1]  # noqa: E731
    if strip(root.tag) != "log":
        raise InterchangeError(f"{path}: not an XES log (its root is <{strip(root.tag)}>, not <log>)")

    def attrs(node) -> dict:
        return {c.get("key"): c.get("value") for c in node if strip(c.tag) != "event" and c.get("key") is not None}

    rows, labels, spans = [], [], {}
    traces = [t for t in root if strip(t.tag) == "trace"]
    for i, trace in enumerate(traces):
        ta = attrs(trace)
        twhere = f"{path}: trace {i}"
        if "episode" in ta:
            episode = _number(ta["episode"], twhere, "episode", integer=True)
        else:
            digits = re.search(r"(\d+)$", ta.get("concept:name") or "")
            episode = int(digits.group(1)) if digits else i
        if "start" in ta:
            spans[episode] = (_time(ta["start"], twhere), _number(ta.get("duration_s", 0.0), twhere, "duration_s"))
        for j, ev in enumerate(c for c in trace if strip(c.tag) == "event"):
            label = f"trace {i} event {j}"
            where = f"{path}: {label}"
            ea = attrs(ev)
            if not ea.get("concept:name") or not ea.get("time:timestamp"):
                raise InterchangeError(f"{where}: an event needs concept:name and time:timestamp")
            row = _row(episode, _time(ea["time:timestamp"], where), ea["concept:name"])
            for field in ("part", "robot", "station", "detail", "defect"):
                if ea.get(field) not in (None, ""):
                    row[field] = ea[field]
            if row["station"] is None and ea.get("org:resource"):
                row["station"] = ea["org:resource"]
            if ea.get("value") not in (None, ""):
                row["value"] = _value(ea["value"], where)
            rows.append(row)
            labels.append(label)
    if not traces:
        raise InterchangeError(f"{path}: the XES log has no traces")
    return rows, labels, _info(spans)


def read_interchange(path: str | Path):
    """(signals, events, info, labels) of an OCEL 2.0 or XES log: the tables in
    ``twin.telemetry.files``' schemas (no signals), ``telemetry.json``'s ``start`` and
    ``episodes`` where the log gives them, and each event row's label."""
    from twin.telemetry.files import EVENT_COLUMNS, _pa

    path = Path(path)
    if not path.is_file():
        raise InterchangeError(f"{path}: no such file")
    reader = read_xes if path.name.lower().endswith((".xes", ".xes.gz")) else read_ocel
    rows, labels, info = reader(path)
    pa = _pa()
    ts = pa.timestamp("us", tz="UTC")
    events = pa.table(
        {
            "timestamp": pa.array([r["timestamp"] for r in rows], ts),
            "episode": pa.array([r["episode"] for r in rows], pa.int64()),
            **{c: pa.array([r[c] for r in rows], pa.string()) for c in EVENT_COLUMNS[2:-1]},
            "value": pa.array([r["value"] for r in rows], pa.float64()),
        }
    )
    signals = pa.table(
        {
            "timestamp": pa.array([], ts),
            "episode": pa.array([], pa.int64()),
            "asset": pa.array([], pa.string()),
            "signal": pa.array([], pa.string()),
            "value": pa.array([], pa.float64()),
            "unit": pa.array([], pa.string()),
        }
    )
    return signals, events, info, labels
