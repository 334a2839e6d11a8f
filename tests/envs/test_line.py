"""A line of cells in physics: parts flow from cell to cell through the buffers, the experts
work each cell, a full buffer blocks the cell before it."""

from __future__ import annotations

from collections import defaultdict

import pytest

from envs.line import PhysicsLine, run_physics
from twin.line import LineError, load_line, parse_line


@pytest.fixture(scope="module")
def run():
    return run_physics("pick_tend_sort", seed=3, duration=90.0)


def test_parts_flow_through_every_cell(run):
    k = run.kpis
    assert k["pick_produced"] >= 8 and k["tend_produced"] >= 3 and k["sort_produced"] >= 2
    assert k["good"] + k["scrap"] >= 2
    # the pick cell has 3 bodies of each part type: more parts than that passed through it
    assert k["pick_produced"] > 6
    assert k["energy"] > 0 and all(run.energy[c] > 0 for c in run.cells)


def test_each_part_moves_down_the_line_in_order(run):
    by_part = defaultdict(list)
    for e in run.events:
        by_part[e.part].append(e)
    order = run.cells
    for part, evs in by_part.items():
        seen_cells = [e.cell for e in evs if e.kind == "entered"]
        assert seen_cells == order[: len(seen_cells)], f"part {part} went {seen_cells}"
        for c in seen_cells:
            kinds = [e.kind for e in evs if e.cell == c and e.kind != "exited"]
            assert kinds in (["entered"], ["entered", "finished"], ["entered", "finished", "left"]), (part, c, kinds)
        times = [e.t for e in evs]
        assert times == sorted(times)
        exits = [e for e in evs if e.kind == "exited"]
        assert len(exits) <= 1


def test_cells_hold_no_more_than_their_wip_limit(run):
    limits = {c.name: c.wip_limit for c in load_line("pick_tend_sort").cells}
    inside = dict.fromkeys(run.cells, 0)
    for e in sorted(run.events, key=lambda e: (e.t, e.kind != "left")):
        if e.kind == "entered":
            inside[e.cell] += 1
            assert inside[e.cell] <= limits[e.cell]
        elif e.kind == "left":
            inside[e.cell] -= 1


def test_same_seed_same_run():
    a = run_physics("pick_tend_sort", seed=5, duration=30.0)
    b = run_physics("pick_tend_sort", seed=5, duration=30.0)
    assert a.events == b.events and a.kpis == b.kpis


def test_a_full_buffer_blocks_the_cell_before_it():
    line = parse_line(
        {
            "line": {
                "name": "blocked",
                "source": {"interval": [2.0, 3.0]},
                "cells": [
                    {"name": "pick", "env": "ConveyorPick-v1", "wip_limit": 2, "ideal_cycle_time": 6.0},
                    {"name": "sort", "env": "BinSort-v1", "ideal_cycle_time": 6.0},
                ],
                "buffers": [{"from": "pick", "to": "sort", "capacity": 1, "transfer_time": 3600.0}],
            }
        }
    )
    pl = PhysicsLine(line)
    try:
        r = pl.run(0, 45.0)
    finally:
        pl.close()
    k = r.kpis
    assert k["sort_produced"] == 0  # nothing reached it within the hour-long transfer
    assert k["pick_blocked_s"] > 5.0
    left = [e for e in r.events if e.kind == "left" and e.cell == "pick"]
    assert len(left) == 1  # one part into the buffer, the next held in the cell


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ("FactoryReach-v0", "no feeder and no filled input tray"),
        ("NoSuchEnv-v0", r"line.cells\[0\] \('a'\).env: unknown env id"),
    ],
    ids=["no-input", "unknown-env"],
)
def test_cells_a_line_cannot_feed_are_refused(env, message):
    line = parse_line(
        {
            "line": {
                "name": "bad",
                "cells": [
                    {"name": "a", "env": env, "ideal_cycle_time": 1.0},
                    {"name": "b", "env": "BinSort-v1", "ideal_cycle_time": 1.0},
                ],
                "buffers": [{"from": "a", "to": "b"}],
            }
        }
    )
    with pytest.raises(LineError, match=message):
        PhysicsLine(line)


def test_a_cell_run_with_faults_records_its_stoppages_and_the_fit_takes_them():
    from twin.line.fit import fit_line

    line = parse_line(
        {
            "line": {
                "name": "jams",
                "source": {"interval": [4.0, 5.0]},
                "cells": [
                    {"name": "pick", "env": "ConveyorPick-v1", "ideal_cycle_time": 6.0, "faults": ["conveyor_jam"]},
                    {"name": "sort", "env": "BinSort-v1", "ideal_cycle_time": 6.0},
                ],
                "buffers": [{"from": "pick", "to": "sort"}],
            }
        }
    )
    pl = PhysicsLine(line)
    try:
        r = pl.run(1, 240.0)
    finally:
        pl.close()
    assert r.stoppages["pick"] and not r.stoppages["sort"]  # jams every 60 s on average
    assert all(0 <= t0 < t1 <= 240.0 for t0, t1 in r.stoppages["pick"])
    model = fit_line(
        line,
        [(r.events, r.energy, r.stoppages)],
        defect_rates=r.defect_rates,
        line_sha256="",
        seeds=[1],
        duration=240.0,
    )
    # the sorter's input draws defects at its feeder's rate; the fit keeps that rate and splits
    # its scrap by what came in: the sorter rejects defective parts, not sound ones
    assert r.defect_rates == {"pick": 0.0, "sort": 0.35}
    came_in = [e for e in r.events if e.kind == "entered" and e.cell == "sort"]
    assert any(e.detail == "defective" for e in came_in) and any(e.detail == "" for e in came_in)
    assert not any(e.detail for e in r.events if e.kind == "entered" and e.cell == "pick")
    sort = model.cells["sort"]
    assert sort.defect_rate == 0.35 and sort.scrap_if_defective >= 0.8 and sort.scrap_if_sound <= 0.2
    assert model.cells["pick"].defect_rate == 0.0 and model.cells["pick"].scrap_if_defective is None
    pick = model.cells["pick"]
    assert pick.stoppages == len(r.stoppages["pick"]) and pick.uptime_between_s > 0
    assert sum(pick.repair_s) == pytest.approx(sum(t1 - t0 for t0, t1 in r.stoppages["pick"]), abs=1e-3)
