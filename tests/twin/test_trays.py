"""Trays: filled with seeded blanks at reset, picked from, set back into, and delivered to."""

from __future__ import annotations

import numpy as np
import pytest

from tests.layouts import assert_refused
from twin.cell import Twin
from twin.layout import LAYOUTS_DIR


@pytest.fixture(scope="module")
def cell():
    twin = Twin("machine_tending")
    try:
        yield twin
    finally:
        twin.close()


def _settle(twin: Twin, steps: int = 20) -> None:
    for _ in range(steps):
        twin.step()


def test_the_input_tray_is_filled_at_reset_with_seeded_poses(cell):
    cell.reset(np.random.default_rng(5))
    first = [p.xyz for p in cell.parts]
    assert [p.state for p in cell.parts] == ["stored"] * 4
    assert all(p.location == "tray-0" for p in cell.parts)
    assert [e.detail for e in cell.log.events if e.kind == "arrived"] == ["tray-0"] * 4
    _settle(cell)
    assert [p.state for p in cell.parts] == ["stored"] * 4  # at rest in their slots, not lost
    for part, (x, y) in zip(cell.parts, cell.layout.trays[0].slots(), strict=True):
        assert abs(part.xyz[0] - x) <= 0.005 and abs(part.xyz[1] - y) <= 0.005
    cell.reset(np.random.default_rng(5))
    assert [p.xyz for p in cell.parts] == first
    cell.reset(np.random.default_rng(6))
    assert [p.xyz for p in cell.parts] != first


def _drop(twin: Twin, part, xyz) -> None:
    twin.world.p.resetBasePositionAndOrientation(part.id, list(xyz), [0, 0, 0, 1])
    part.state, part.location, part.pos = "loose", "", xyz


def test_a_part_set_in_the_output_tray_is_placed_there_and_back_in_the_input_tray_is_stored(cell):
    cell.reset(np.random.default_rng(0))
    a, b = cell.parts[0], cell.parts[1]
    out = cell.trays[1].slots[0]
    _drop(cell, a, (out[0], out[1], out[2] + 0.03))
    back = cell.trays[0].slots[0]
    _drop(cell, b, (back[0], back[1], back[2] + 0.06))  # where part a was
    _settle(cell, 30)
    assert (a.state, a.location) == ("placed", "tray-1")
    assert (b.state, b.location) == ("stored", "tray-0")
    assert [e.detail for e in cell.log.events if e.kind == "placed"] == ["tray-1"]


TRAY = """
[[trays]]
position = [0.5, 0.4, 0.6]
size = [0.2, 0.2, 0.03]
grid = [2, 2]
fill = "cube"
"""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (TRAY.replace('"cube"', '"gear"'), r"trays\[0\]\.fill: unknown part 'gear'"),
        (TRAY.replace("[2, 2]", "[4, 4]"), r"trays\[0\]\.grid: slots of 50 mm cannot hold a 'cube'"),
        (TRAY + "count = 5\n", r"trays\[0\]\.count: 5 parts do not fit in 4 slots"),
        (TRAY.replace('fill = "cube"', "count = 2"), r"trays\[0\]\.count: only a tray with fill"),
        (TRAY.replace("[0.5, 0.4, 0.6]", "[1.5, 0.4, 0.6]"), r"trays\[0\]\.position: its slot at .* out of reach"),
        (
            '[[parts]]\nname = "done"\nshape = "box"\nsize = [0.04, 0.04, 0.04]\n\n[[machines]]\n'
            'position = [-1.5, 1.5]\naccepts = "cube"\nproduces = "done"\n',
            r"machines\[0\]\.position: its load fixture at \(-1.5, 1.5\) is out of reach of every robot",
        ),
    ],
    ids=[
        "unknown-part",
        "slots-too-small",
        "count-over-slots",
        "count-without-fill",
        "tray-out-of-reach",
        "machine-out-of-reach",
    ],
)
def test_bad_trays_and_unreachable_stations_are_refused_by_field(tmp_path, extra, message):
    assert_refused(tmp_path, (LAYOUTS_DIR / "default.toml").read_text() + extra, message)
