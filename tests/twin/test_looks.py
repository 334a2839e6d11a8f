"""What a viewer sees stays out of the physics' way: an open conveyor frame, floor lines nothing
touches, stack lights that follow their machine."""

from __future__ import annotations

import numpy as np
import pytest

from twin.cell import Twin
from twin.equipment.machine import LAMP


@pytest.fixture(scope="module")
def cell():
    twin = Twin("machine_tending")
    try:
        twin.reset(np.random.default_rng(0))
        yield twin
    finally:
        twin.close()


def test_the_conveyor_frame_is_open_between_its_legs():
    twin = Twin("default")
    try:
        p, frame = twin.world.p, twin.world.body("conveyor-0-frame")
        # a ray across the belt at knee height, between two pairs of legs, passes under it
        hit = p.rayTest([0.4, -1.0, 0.4], [0.4, 0.1, 0.4])[0]
        assert hit[0] != frame
        # the rails under the belt's edges and a leg are there
        assert p.rayTest([0.4, -1.0, 0.69], [0.4, 0.1, 0.69])[0][0] == frame
        assert p.rayTest([-0.775, -1.0, 0.4], [-0.775, 0.1, 0.4])[0][0] == frame
    finally:
        twin.close()


def test_a_part_dropped_on_a_floor_line_lands_on_the_floor(cell):
    p = cell.world.p
    line = cell.world.body("floor-line-0")
    assert p.getCollisionShapeData(line, -1) == ()
    (x, y, _), _ = p.getBasePositionAndOrientation(line)
    part = cell.parts[0]
    p.resetBasePositionAndOrientation(part.id, [x, y, 0.1], [0, 0, 0, 1])
    for _ in range(20):
        cell.step()
    assert p.getBasePositionAndOrientation(part.id)[0][2] == pytest.approx(part.spec.half_height, abs=0.002)


def test_stack_lights_follow_their_machine(cell):
    cell.reset(np.random.default_rng(0))
    m = cell.machines[0]
    rgba = lambda: cell.world.p.getVisualShapeData(m.lamp)[0][7]  # noqa: E731
    assert np.allclose(rgba(), LAMP["idle"])
    m.part = cell.parts[0]
    m._set(0.0, "done", cell.log)
    assert np.allclose(rgba(), LAMP["done"])
    cell.reset(np.random.default_rng(0))
    assert np.allclose(rgba(), LAMP["idle"])
