"""Machine stations: parts set down on the load fixture are processed, logged, and counted in OEE."""

from __future__ import annotations

import math

import numpy as np
import pytest

from twin.cell import Twin
from twin.events import compute_oee
from twin.layout import LAYOUTS_DIR, LayoutError, load_layout
from twin.parts import unpark

MACHINE = """
[[parts]]
name = "finished_cube"
shape = "box"
size = [0.045, 0.045, 0.045]
mass = 0.25
color = [0.2, 0.2, 0.9, 1.0]

[[machines]]
position = [0.45, 0.55]
accepts = "cube"
produces = "finished_cube"
process_time = [2.0, 3.0]
"""


@pytest.fixture
def cell(tmp_path):
    path = tmp_path / "machine.toml"
    path.write_text((LAYOUTS_DIR / "default.toml").read_text() + MACHINE)
    twin = Twin(load_layout(path))
    try:
        twin.reset(np.random.default_rng(3))
        yield twin
    finally:
        twin.close()


def _set_down(twin: Twin, name: str, dx: float = 0.0):
    """Put a part at rest just above the fixture (as a gripper opening there would)."""
    part = next(p for p in twin.parts if p.spec.name == name and p.state in ("parked", "queued"))
    m = twin.machines[0]
    unpark(twin.world, part)
    pos = [m.fixture_xy[0] + dx, m.fixture_xy[1], m.top_z + part.spec.half_height + 0.002]
    twin.world.p.resetBasePositionAndOrientation(part.id, pos, [0, 0, 0, 1])
    part.state, part.pos = "loose", pos
    return part


def test_a_defective_blank_comes_out_a_defective_part_and_costs_quality(tmp_path):
    flawed = (
        MACHINE
        + """
[[defects]]
name = "stain"
kind = "mark"
"""
    )
    text = (
        (LAYOUTS_DIR / "default.toml")
        .read_text()
        .replace("lateral_jitter", "defect_rate = 0.5\ndefects = { stain = 1.0 }\nlateral_jitter")
    )
    path = tmp_path / "flawed.toml"
    path.write_text(text + flawed)
    twin = Twin(load_layout(path))
    try:
        twin.reset(np.random.default_rng(3))
        m = twin.machines[0]
        for want in ("stain", None):
            part = next(p for p in twin.parts if p.spec.name == "cube" and p.state == "parked" and p.defect == want)
            unpark(twin.world, part)
            pos = [*m.fixture_xy, m.top_z + part.spec.half_height + 0.002]
            twin.world.p.resetBasePositionAndOrientation(part.id, pos, [0, 0, 0, 1])
            part.state, part.pos = "loose", pos
            for _ in range(100):
                twin.step()
                if m.state == "done":
                    break
            twin.world.p.resetBasePositionAndOrientation(part.id, [1.5, 1.5, 0.05], [0, 0, 0, 1])
            twin.step()
        made = [(e.detail, e.defect) for e in twin.log.events if e.kind == "produced"]
        assert made == [("defective", "stain"), ("good", None)]
        k = twin.kpis()
        assert k["machine-0_produced"] == 2.0 and k["machine-0_quality"] == 0.5
    finally:
        twin.close()


def _states(twin: Twin) -> list[str]:
    return [e.detail for e in twin.log.events if e.kind == "machine_state"]


def test_a_part_set_on_the_fixture_is_processed_and_becomes_the_finished_part(cell):
    m = cell.machines[0]
    part = _set_down(cell, "cube")
    for _ in range(100):
        cell.step()
        if m.state == "done":
            break
    assert _states(cell) == ["loaded", "processing", "done"]
    assert part.spec.name == "finished_cube" and part.state == "on_station"
    start = next(e.t for e in cell.log.events if e.detail == "processing")
    produced = next(e for e in cell.log.events if e.kind == "produced")
    assert produced.detail == "good" and 2.0 <= produced.t - start <= 3.0 + cell.control_dt
    rgba = cell.world.p.getVisualShapeData(part.id)[0][7]
    assert np.allclose(rgba, (0.2, 0.2, 0.9, 1.0))
    # taken off the fixture: the machine is idle again and the cycle counts in OEE
    cell.world.p.resetBasePositionAndOrientation(part.id, [1.5, 1.5, 0.05], [0, 0, 0, 1])
    cell.step()
    assert m.state == "idle" and _states(cell)[-1] == "idle"
    k = cell.kpis()
    assert k["machine-0_produced"] == 1.0 and k["machine-0_quality"] == 1.0
    assert k["machine-0_oee"] == pytest.approx(
        compute_oee(cell.log, cell.sim_time, {"machine-0": 2.0})["machine-0"]["oee"]
    )
    assert 0 < k["machine-0_oee"] < 1
    # a new episode starts with raw parts and an idle machine
    cell.reset(np.random.default_rng(3))
    assert part.spec.name == "cube" and m.state == "idle" and not _states(cell)
    assert np.allclose(cell.world.p.getVisualShapeData(part.id)[0][7], cell.layout.part("cube").color)


def test_a_part_it_cannot_process_or_off_its_seat_blocks_the_machine(cell):
    _set_down(cell, "cylinder")
    for _ in range(10):
        cell.step()
    assert cell.machines[0].state == "blocked" and _states(cell) == ["blocked"]
    cell.reset(np.random.default_rng(3))
    _set_down(cell, "cube", dx=0.03)  # on the plate, outside the 15 mm tolerance
    for _ in range(10):
        cell.step()
    assert cell.machines[0].state == "blocked"
    assert math.isnan(cell.kpis()["machine-0_performance"])  # nothing processed


def test_machines_must_name_catalogue_parts_and_carry_their_fixture(tmp_path):
    base = (LAYOUTS_DIR / "default.toml").read_text()
    path = tmp_path / "bad.toml"
    path.write_text(base + MACHINE.replace('produces = "finished_cube"', 'produces = "gold"'))
    with pytest.raises(LayoutError, match=r"machines\[0\]: unknown parts \['gold'\]"):
        load_layout(path)
    path.write_text(base + MACHINE + "fixture_offset = [0.3, 0.0]\n")
    with pytest.raises(LayoutError, match="the fixture must lie on the station's top"):
        load_layout(path)
