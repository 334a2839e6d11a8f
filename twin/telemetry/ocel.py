"""A twin run's event log as OCEL 2.0 (the object-centric event log standard of process mining,
JSON serialisation), so that plant engineers open a run in the process-mining tools they use.

Objects are what events touch: parts, wafers and totes (one object per part per episode, since
the twin reuses a part's body from one episode to the next: ``part-gear-0@3`` is that part in
episode 3), robots and AGVs, and machines and other stations (one object each for the whole
recording). Each event links to its objects with the qualifiers ``part``, ``robot`` and
``station``; its ``detail``, ``defect``, ``value`` and ``episode`` are its attributes. Where the
recording's episodes are known, each is an object too (``episode-3``, type ``episode``, with its
``start`` and ``duration_s``), every event linked to its episode (qualifier ``episode``): the
case notion of a classic event log, and what lets ``twin replay`` read the log back on the
episodes' own clocks (``twin.telemetry.interchange``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_ROBOTS = ("panda", "iiwa", "ur5", "wafer_robot")
_EPISODE_SCOPED = ("part", "wafer", "tote")
_EPOCH = "1970-01-01T00:00:00Z"  # OCEL 2.0's time for an attribute that does not change


def object_type(name: str) -> str:
    """The object type of a name the twin gives (``panda-0`` -> ``robot``, ``machine-1`` ->
    ``machine``, ``part-gear-3`` -> ``part``, ``station-A`` -> ``station``)."""
    head = name.split("-", 1)[0]
    return "robot" if head in _ROBOTS else head


def _iso(ts) -> str:
    dt = ts if isinstance(ts, datetime) else ts.as_py()
    return dt.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def to_ocel(events, episodes: list[dict] | None = None, start: str | None = None) -> dict:
    """The OCEL 2.0 JSON document of an events table (``twin.telemetry.files.events_table``);
    ``episodes`` (``telemetry.json``'s, with its ``start``) adds the episode objects."""
    rows = events.to_pylist()
    objects: dict[str, dict] = {}
    spans = {}
    if episodes and start:
        t0 = datetime.fromisoformat(start)
        for e in episodes:
            oid = f"episode-{e['episode']}"
            spans[int(e["episode"])] = oid
            objects[oid] = {
                "id": oid,
                "type": "episode",
                "attributes": [
                    {"name": "episode", "time": _EPOCH, "value": str(e["episode"])},
                    {"name": "start", "time": _EPOCH, "value": _iso(t0 + timedelta(seconds=e["offset_s"]))},
                    {"name": "duration_s", "time": _EPOCH, "value": str(e["duration_s"])},
                ],
            }
    out_events = []
    kinds: dict[str, None] = {}
    for k, row in enumerate(rows):
        rels = []
        for qualifier in ("part", "robot", "station"):
            name = row[qualifier]
            if not name:
                continue
            kind = object_type(name)
            oid = f"{name}@{row['episode']}" if kind in _EPISODE_SCOPED else name
            if oid not in objects:
                attrs = [{"name": "name", "time": _EPOCH, "value": name}]
                if kind in _EPISODE_SCOPED:
                    attrs.append({"name": "episode", "time": _EPOCH, "value": str(row["episode"])})
                objects[oid] = {"id": oid, "type": kind, "attributes": attrs}
            if kind in _EPISODE_SCOPED and row["kind"] == "arrived" and row["defect"]:
                objects[oid]["attributes"].append(
                    {"name": "defect", "time": _iso(row["timestamp"]), "value": row["defect"]}
                )
            rels.append({"objectId": oid, "qualifier": qualifier})
        if row["episode"] in spans:
            rels.append({"objectId": spans[row["episode"]], "qualifier": "episode"})
        attrs = [{"name": "episode", "value": str(row["episode"])}]
        attrs += [{"name": a, "value": row[a]} for a in ("detail", "defect") if row[a]]
        if row["value"] is not None:
            attrs.append({"name": "value", "value": str(row["value"])})
        kinds[row["kind"]] = None
        out_events.append(
            {
                "id": f"e{k}",
                "type": row["kind"],
                "time": _iso(row["timestamp"]),
                "attributes": attrs,
                "relationships": rels,
            }
        )
    object_types = sorted({o["type"] for o in objects.values()})
    return {
        "objectTypes": [
            {
                "name": t,
                "attributes": [
                    {"name": "episode", "type": "integer"},
                    {"name": "start", "type": "time"},
                    {"name": "duration_s", "type": "float"},
                ]
                if t == "episode"
                else [{"name": "name", "type": "string"}]
                + (
                    [{"name": "episode", "type": "integer"}, {"name": "defect", "type": "string"}]
                    if t in _EPISODE_SCOPED
                    else []
                ),
            }
            for t in object_types
        ],
        "eventTypes": [
            {
                "name": kind,
                "attributes": [
                    {"name": "episode", "type": "integer"},
                    {"name": "detail", "type": "string"},
                    {"name": "defect", "type": "string"},
                    {"name": "value", "type": "float"},
                ],
            }
            for kind in kinds
        ],
        "objects": list(objects.values()),
        "events": out_events,
    }
