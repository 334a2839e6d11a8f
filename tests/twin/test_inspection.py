"""Defects and inspection: seeded defective parts that look different, one noisy reading per part,
quality KPIs from the log, and layouts that cannot work refused by field."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.layouts import assert_refused, edited
from twin.cell import Twin
from twin.events import EventLog, compute_quality
from twin.layout import LAYOUTS_DIR, load_layout


@pytest.fixture(scope="module")
def cell():
    twin = Twin("bin_sort")
    try:
        yield twin
    finally:
        twin.close()


def _stream(twin: Twin, seed: int) -> list[tuple[str, str | None]]:
    twin.reset(np.random.default_rng(seed))
    return sorted((p.name, p.defect) for p in twin.parts if p.state == "queued")


def test_defects_are_seeded_and_near_the_layouts_rate(cell):
    assert _stream(cell, 3) == _stream(cell, 3)
    streams = [_stream(cell, s) for s in range(40)]
    assert len({tuple(s) for s in streams}) > 20
    flawed = [d for s in streams for _, d in s if d is not None]
    assert 0.2 < len(flawed) / 160 < 0.5  # the layout's defect_rate is 0.35
    assert set(flawed) == {"stain", "undersize", "discolour"}


def test_defective_bodies_look_different(cell):
    p = cell.world.p
    by_defect = {}
    for part in cell.parts:
        if part.spec.name == "cube":
            by_defect.setdefault(part.defect, part)
    good, small = by_defect[None], by_defect["undersize"]
    assert small.spec.size[0] == pytest.approx(0.75 * good.spec.size[0])
    assert small.spec.mass == pytest.approx(0.75**3 * good.spec.mass)
    assert np.allclose(p.getVisualShapeData(by_defect["discolour"].id)[0][7], (0.85, 0.82, 0.2, 1.0))
    marked = p.getVisualShapeData(by_defect["stain"].id)
    # the part and its stain on the top and the four sides
    assert len(marked) == 6 and all(np.allclose(m[7], (0.05, 0.05, 0.05, 1.0)) for m in marked[1:])
    assert len(p.getVisualShapeData(good.id)) == 1


def _ride(twin: Twin, seed: int, steps: int = 700) -> None:
    twin.reset(np.random.default_rng(seed))
    for _ in range(steps):
        twin.step()


def test_each_part_is_read_once_as_it_crosses_the_line(cell):
    _ride(cell, 0)
    arrived = [e.part for e in cell.log.events if e.kind == "arrived"]
    inspected = [e for e in cell.log.events if e.kind == "inspected"]
    assert [e.part for e in inspected] == arrived and len(arrived) == 4
    line_x = cell.inspections[0].line[0]
    arrival = {e.part: e.t for e in cell.log.events if e.kind == "arrived"}
    for e in inspected:
        assert e.station == "inspection-0" and e.detail in ("pass", "reject")
        # the part started 0.14 m before the line at 0.1 m/s
        assert e.t - arrival[e.part] == pytest.approx((line_x - (-0.74)) / 0.1, abs=0.3)


def _with_rates(tmp_path, fp: float, fn: float) -> Twin:
    text = (LAYOUTS_DIR / "bin_sort.toml").read_text()
    text = text.replace("false_positive = 0.03", f"false_positive = {fp}")
    text = text.replace("false_negative = 0.03", f"false_negative = {fn}")
    text = text.replace("defect_rate = 0.35", "defect_rate = 0.5").replace(
        "parts_per_episode = 4", "parts_per_episode = 6"
    )
    text = text.replace("interval = [5.0, 7.0]", "interval = [2.0, 3.0]")
    path = tmp_path / "rates.toml"
    path.write_text(text)
    return Twin(load_layout(path))


@pytest.mark.parametrize(("fp", "fn", "wrong"), [(0.0, 0.0, False), (0.5, 0.5, True)], ids=["exact", "noisy"])
def test_the_sensor_errs_at_its_rates(tmp_path, fp, fn, wrong):
    twin = _with_rates(tmp_path, fp, fn)
    try:
        errors = total = 0
        for seed in range(4):
            _ride(twin, seed, 400)
            truth = {e.part: e.defect is not None for e in twin.log.events if e.kind == "arrived"}
            for e in twin.log.events:
                if e.kind == "inspected":
                    total += 1
                    errors += (e.detail == "reject") != truth[e.part]
        assert total == 24
        assert (errors > 3) if wrong else errors == 0
    finally:
        twin.close()


def test_quality_kpis_from_a_hand_built_log():
    log = EventLog()
    for name, defect in (("a", None), ("b", None), ("c", "stain"), ("d", "undersize"), ("e", None)):
        log.add(0.0, "arrived", name, defect=defect)
    for name, where in (("a", "good"), ("b", "reject"), ("c", "reject"), ("d", "good")):  # e: missed
        log.add(5.0, "placed", name, detail=where)
    q = compute_quality(log, {"good": "good", "reject": "defective"})
    assert q == {
        "good_shipped": 1.0,
        "defects_escaped": 1.0,
        "false_rejects": 1.0,
        "defects_caught": 1.0,
        "defects_arrived": 2.0,
        "first_pass_yield": 0.2,
    }
    assert math.isnan(compute_quality(EventLog(), {})["first_pass_yield"])


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("stain = 1.0,", "dent = 1.0,", r"feeders\[0\]\.defects: unknown defect types \['dent'\]"),
        ('camera = "inspection"', 'camera = "top2"', r"inspections\[0\]\.camera: no camera named 'top2'"),
        (
            "eye = [-0.6, -0.45, 1.2]\ntarget = [-0.6, -0.45, 0.75]",
            "eye = [2.0, 2.0, 1.2]\ntarget = [2.5, 2.5, 1.5]",
            r"inspections\[0\]\.camera: camera 'inspection' does not see the belt at the inspection line",
        ),
        ("offset = 0.2 ", "offset = 2.0 ", r"inspections\[0\]\.offset: 2.0 m is beyond the belt's 1.6 m length"),
        ('kind = "size"\nscale = 0.75', 'kind = "size"\nscale = 1.0', r"defects\[1\]: .*not a visible defect"),
        ("defects = { stain = 1.0, undersize = 1.0, discolour = 1.0 }", "", r"needs at least one defect type"),
        ('kind = "mark"', 'kind = "dent"', r"defects\[0\]\.kind"),
        ('faces = "all"', 'faces = "front"', r"defects\[0\]\.faces"),
        ("mount = 0", "mount = 1", r"cameras\[3\]\.mount: no robot 1 to carry camera 'wrist'"),
        ('camera = "inspection"', 'camera = "wrist"', r"inspections\[0\]\.camera: camera 'wrist' rides on a robot"),
    ],
    ids=[
        "unknown-defect",
        "unknown-camera",
        "camera-sees-no-belt",
        "line-off-the-belt",
        "scale-1",
        "rate-without-types",
        "unknown-kind",
        "unknown-faces",
        "mount-without-robot",
        "inspection-camera-on-a-robot",
    ],
)
def test_bad_inspection_layouts_are_refused_by_field(tmp_path, old, new, message):
    assert_refused(tmp_path, edited("bin_sort", old, new), message)
