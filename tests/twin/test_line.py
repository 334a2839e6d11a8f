"""Line layouts, the line's KPIs from its events, and the fast line model."""

from __future__ import annotations

import math

import pytest

from twin.layout import LayoutError
from twin.line import LineEvent, cell_states, line_kpis, load_line, parse_line
from twin.line.des import run_des
from twin.line.fit import effective_process_times, fit_line, load_model, model_table, save_model
from twin.line.sweep import SweepError, apply, grid, pareto, parse_vary, random_points


def _line(buffers=None, cells=None, **extra):
    cells = cells or [
        {"name": "a", "env": "ConveyorPick-v1", "ideal_cycle_time": 5.0},
        {"name": "b", "env": "MachineTend-v1", "ideal_cycle_time": 5.0},
    ]
    buffers = buffers if buffers is not None else [{"from": "a", "to": "b", "capacity": 1, "transfer_time": 1.0}]
    return {"line": {"name": "t", "cells": cells, "buffers": buffers, **extra}}


def test_bundled_line_is_valid_and_serial():
    line = load_line("pick_tend_sort")
    cells, buffers = line.ordered()
    assert [c.name for c in cells] == ["pick", "tend", "sort"]
    assert [(b.from_cell, b.to_cell) for b in buffers] == [("pick", "tend"), ("tend", "sort")]


@pytest.mark.parametrize(
    ("buffers", "expected"),
    [
        ([{"from": "a", "to": "nowhere"}], "line.buffers[0].to: no cell named 'nowhere'"),
        ([{"from": "a", "to": "b"}, {"from": "b", "to": "a"}], "form a cycle"),
        ([{"from": "a", "to": "a"}], "line.buffers[0]: feeds cell 'a' from itself"),
        ([], "cells 'a', 'b' are fed by no buffer"),
        (
            [{"from": "a", "to": "b", "capacity": 0}],
            "line.buffers[0].capacity: Input should be greater than or equal to 1",
        ),
    ],
    ids=["dangling", "cycle", "self", "unjoined", "capacity"],
)
def test_bad_lines_are_refused_naming_the_field(buffers, expected):
    with pytest.raises(LayoutError) as exc:
        parse_line(_line(buffers), "x.toml")
    assert expected in str(exc.value)
    assert str(exc.value).startswith("x.toml: invalid line")


def test_a_second_buffer_out_of_one_cell_is_refused():
    cells = [{"name": n, "env": "ConveyorPick-v1", "ideal_cycle_time": 5.0} for n in "abc"]
    with pytest.raises(LayoutError, match=r"line.buffers\[1\].from: cell 'a' already feeds buffers\[0\]"):
        parse_line(_line([{"from": "a", "to": "b"}, {"from": "a", "to": "c"}], cells), "x.toml")


def test_unknown_keys_are_refused():
    with pytest.raises(LayoutError, match=r"line.cells\[0\].speed: unknown key"):
        parse_line(_line(cells=[{"name": "a", "env": "X", "ideal_cycle_time": 1.0, "speed": 2}], buffers=[]), "x")


def _events():
    # part 0: a 0-4, buffer, b 5-9 good; part 1: a 2-6 (blocked 6-8 behind part 0), b 9-12 scrap
    E = LineEvent
    return [
        E(0, "entered", 0, "a"),
        E(2, "entered", 1, "a"),
        E(4, "finished", 0, "a", "good"),
        E(4, "left", 0, "a"),
        E(5, "entered", 0, "b"),
        E(6, "finished", 1, "a", "good"),
        E(8, "left", 1, "a"),
        E(9, "finished", 0, "b", "good"),
        E(9, "left", 0, "b"),
        E(9, "exited", 0, "b", "good"),
        E(9, "entered", 1, "b"),
        E(12, "finished", 1, "b", "scrap"),
        E(12, "left", 1, "b"),
        E(12, "exited", 1, "b", "scrap"),
    ]


def test_cell_states_follow_from_the_events():
    states = cell_states(_events(), ["a", "b"], 20.0)
    assert states["a"] == [(0.0, "busy"), (6, "blocked"), (8, "starved")]
    assert states["b"] == [(0.0, "starved"), (5, "busy"), (12, "starved")]


def test_line_kpis_from_a_known_log():
    k = line_kpis(_events(), ["a", "b"], 20.0, {"a": 2.0, "b": 4.0}, {"a": 10.0, "b": 30.0})
    assert k["good"] == 1 and k["scrap"] == 1
    assert k["throughput"] == pytest.approx(1 / (20 / 3600))
    assert k["lead_time_mean"] == pytest.approx(9.0)  # part 0: in at 0, out at 9
    assert k["wip"] == pytest.approx((9 + 10) / 20)  # part 0 for 9 s, part 1 for 10 s
    assert k["a_busy_s"] == pytest.approx(6) and k["a_blocked_s"] == pytest.approx(2) and k["a_starved_s"] == 12
    assert k["b_busy_s"] == pytest.approx(7) and k["b_utilisation"] == pytest.approx(7 / 20)
    assert k["b_oee"] == pytest.approx(4.0 * 1 / 20)  # one good part at a 4 s ideal cycle in 20 s
    assert k["energy"] == 40.0 and k["energy_per_part"] == 40.0
    assert k["bottleneck"] == 1  # b busy 7 s, a busy 6 s


def test_effective_process_times():
    assert effective_process_times(_events(), "a") == [4.0, 2.0]  # 4 - max(0, -inf); 6 - max(2, 4)
    assert effective_process_times(_events(), "b") == [4.0, 3.0]


def _model(ept_a, ept_b, scrap_b=0.0):
    return {"cells": {"a": {"ept": ept_a, "scrap_rate": 0.0}, "b": {"ept": ept_b, "scrap_rate": scrap_b}}}


def test_des_is_seeded_and_keeps_every_part():
    line = parse_line(_line(), "x")
    e1, k1 = run_des(line, _model([3.0, 4.0], [5.0]), 7, 3600)
    e2, k2 = run_des(line, _model([3.0, 4.0], [5.0]), 7, 3600)
    assert e1 == e2 and k1 == k2
    entered = {e.part for e in e1 if e.kind == "entered" and e.cell == "a"}
    exited = {e.part for e in e1 if e.kind == "exited"}
    assert exited <= entered and len(entered) - len(exited) <= 4  # what is still inside: two slots and the buffer
    # b takes 5 s a part and never waits on a (3-4 s, source 5-7 s): it is the busiest
    assert k1["bottleneck"] == 1


def test_des_blocks_upstream_when_the_buffer_is_full():
    line = parse_line(_line(), "x")
    _, k = run_des(line, _model([1.0], [20.0]), 0, 3600)
    assert k["a_blocked_s"] > 0.5 * 3600  # b takes a part every 20 s; a finishes one in 1 s and waits
    assert k["throughput"] == pytest.approx(180, rel=0.02)  # b's pace: 3600 / 20
    assert k["b_starved_s"] < 0.05 * 3600
    # Little's law: WIP = rate out x time in the line
    assert k["wip"] == pytest.approx(k["throughput"] / 3600 * k["lead_time_mean"], rel=0.05)


def test_des_scrap_rate():
    line = parse_line(_line(), "x")
    _, k = run_des(line, _model([1.0], [2.0], scrap_b=0.25), 0, 36000)
    assert k["scrap"] / (k["good"] + k["scrap"]) == pytest.approx(0.25, abs=0.03)


def test_des_draws_defects_at_the_input_rate_and_scraps_by_them():
    line = parse_line(_line(), "x")
    model = _model([1.0], [2.0])
    model["cells"]["b"] |= {"defect_rate": 0.3, "scrap_if_defective": 0.9, "scrap_if_sound": 0.05, "scrap_rate": 0.5}
    events, k = run_des(line, model, 0, 36000)
    into_b = [e for e in events if e.kind == "entered" and e.cell == "b"]
    bad = {e.part for e in into_b if e.detail == "defective"}
    assert len(bad) / len(into_b) == pytest.approx(0.3, abs=0.03)
    done = [e for e in events if e.kind == "finished" and e.cell == "b"]
    scrap_bad = [e.detail == "scrap" for e in done if e.part in bad]
    scrap_sound = [e.detail == "scrap" for e in done if e.part not in bad]
    assert sum(scrap_bad) / len(scrap_bad) == pytest.approx(0.9, abs=0.04)
    assert sum(scrap_sound) / len(scrap_sound) == pytest.approx(0.05, abs=0.02)
    assert not any(e.detail for e in events if e.kind == "entered" and e.cell == "a")  # a has no defect rate
    # the line's scrap is what the split says (0.3 x 0.9 + 0.7 x 0.05), not the flat 0.5
    assert k["scrap"] / (k["good"] + k["scrap"]) == pytest.approx(0.305, abs=0.03)


def test_fit_splits_scrap_by_the_defect_a_part_came_in_with():
    line = parse_line(_line(), "x")
    events = [
        LineEvent(0.0, "entered", 0, "b", "defective"),
        LineEvent(1.0, "entered", 1, "b"),
        LineEvent(2.0, "entered", 2, "b", "defective"),
        LineEvent(3.0, "finished", 0, "b", "scrap"),
        LineEvent(4.0, "finished", 1, "b", "good"),
        LineEvent(5.0, "finished", 2, "b", "good"),
        LineEvent(0.0, "entered", 0, "a"),
        LineEvent(1.0, "finished", 0, "a", "good"),
    ]
    model = fit_line(line, [(events, {})], defect_rates={"a": 0.0, "b": 0.25}, line_sha256="", seeds=[0], duration=9.0)
    b = model.cells["b"]
    assert (b.defect_rate, b.scrap_if_defective, b.scrap_if_sound) == (0.25, 0.5, 0.0)
    assert b.scrap_rate == pytest.approx(1 / 3)
    a = model.cells["a"]
    assert (a.defect_rate, a.scrap_if_defective, a.scrap_if_sound) == (0.0, None, 0.0)
    # without the rates (a version-1 model), one scrap rate per cell
    flat = fit_line(line, [(events, {})], line_sha256="", seeds=[0], duration=9.0)
    assert flat.cells["b"].defect_rate is None


def test_fit_round_trip_and_a_bad_model_file(tmp_path):
    line = parse_line(_line(), "x")
    model = fit_line(line, [(_events(), {"a": 10.0, "b": 30.0})], line_sha256="0" * 64, seeds=[0], duration=20.0)
    assert model.cells["a"].ept == [4.0, 2.0] and model.cells["b"].scrap_rate == 0.5
    assert model.cells["b"].energy_per_part == 15.0
    path = save_model(model, tmp_path / "m.json")
    assert load_model(path) == model
    assert model_table(load_model(path))["cells"]["a"]["ept"] == [4.0, 2.0]
    path.write_text('{"version": 1, "line": "t"}')
    with pytest.raises(ValueError, match=r"m.json: line_sha256: Field required"):
        load_model(path)
    path.write_text("not json")
    with pytest.raises(ValueError, match=r"m.json: not a fitted line model"):
        load_model(path)
    with pytest.raises(ValueError, match="cell 'b' finished no part"):
        fit_line(line, [(_events()[:4], {})], line_sha256="", seeds=[0], duration=20.0)


def test_sweep_parameters_and_bounds():
    line = load_line("pick_tend_sort")
    p = parse_vary("buffer.1.capacity=1,2,4,8", line)
    assert p.values == (1, 2, 4, 8) and p.integer
    q = parse_vary("cell.0.belt_speed=0.05:0.2:4", line)
    assert q.values == pytest.approx((0.05, 0.1, 0.15, 0.2)) and q.knob
    assert len(grid([p, q])) == 16
    pts = random_points([p, q], 10, 0)
    assert len(pts) == 10 and all(
        1 <= x["buffer.1.capacity"] <= 8 and 0.05 <= x["cell.0.belt_speed"] <= 0.2 for x in pts
    )
    changed = apply(line, {"buffer.1.capacity": 8, "cell.0.belt_speed": 0.1, "source.interval_min": 5.0})
    assert changed.ordered()[1][1].capacity == 8 and changed.cells[0].knobs == {"belt_speed": 0.1}
    assert changed.source.interval == (5.0, 9.0)
    for spec, msg in [
        ("buffer.2.capacity=1,2", r"the line has 2 buffer\(s\)"),
        ("buffer.0.capacity=0,2", r"line.buffers.0.capacity: Input should be greater than or equal to 1"),
        ("buffer.0.speed=1", "a buffer has no 'speed'"),
        ("cell.3.wip_limit=1", r"the line has 3 cell\(s\)"),
        ("conveyor.speed=1", "not a line parameter"),
        ("buffer.0.capacity=1:4:3", "takes whole numbers"),
        ("source.interval_min=10", "source.interval_min is above source.interval_max"),
        ("buffer.0.capacity", "expected NAME=v1,v2"),
    ]:
        with pytest.raises(SweepError, match=msg):
            parse_vary(spec, line)


def test_pareto_front():
    pts = [(100, 5), (120, 8), (90, 3), (110, 9), (120, 7)]
    assert pareto(pts) == [2, 0, 4]  # (110, 9) and (120, 8) are dominated by (120, 7)
    assert pareto([(1.0, math.nan)]) == []


def test_des_stoppages_cost_what_their_availability_says():
    line = parse_line(_line(), "x")
    base = _model([1.0], [10.0])
    _, k0 = run_des(line, base, 0, 36000)
    stopped = _model([1.0], [10.0])
    stopped["cells"]["b"] |= {"uptime_between_s": 90.0, "repair_s": [10.0]}  # up 90%
    _, k1 = run_des(line, stopped, 0, 36000)
    assert k0["throughput"] == pytest.approx(360, rel=0.02)
    assert k1["throughput"] / k0["throughput"] == pytest.approx(0.9, abs=0.03)


def test_fit_takes_stoppages_out_of_the_process_times():
    line = parse_line(_line(), "x")
    stops = {"b": [(6.0, 8.0)]}  # b stopped for 2 s of part 0's 5-9 s
    model = fit_line(line, [(_events(), {}, stops)], line_sha256="", seeds=[0], duration=20.0)
    assert effective_process_times(_events(), "b", stops["b"]) == [2.0, 3.0]
    b = model.cells["b"]
    assert b.ept == [2.0, 3.0] and b.stoppages == 1 and b.repair_s == [2.0]
    assert b.uptime_between_s == pytest.approx(18.0)
    assert model.cells["a"].stoppages == 0 and model.cells["a"].uptime_between_s is None
