"""The shop floor's look: sealed concrete and a safety-yellow line around the cell's equipment."""

from __future__ import annotations

import math

from twin.layout import CellLayout
from twin.world import World

FLOOR_RGBA = (0.62, 0.63, 0.6, 1.0)  # sealed concrete
LINE_RGBA = (0.95, 0.78, 0.1, 1.0)  # safety yellow
LINE_WIDTH = 0.05  # metres
MARGIN = 0.35  # metres between the equipment and the line


def _footprints(layout: CellLayout) -> list[tuple[float, float]]:
    """Corner points (x, y) of every piece of equipment and robot base in the layout."""
    pts = []
    for r in layout.robots:
        x, y, _ = r.base.position
        pts += [(x + dx, y + dy) for dx in (-0.2, 0.2) for dy in (-0.2, 0.2)]
    items = [(c.position, (c.length / 2, c.width / 2), c.yaw) for c in layout.conveyors]
    items += [(m.position, (m.size[0] / 2, m.size[1] / 2), m.yaw) for m in layout.machines]
    items += [(t.position, (t.size[0] / 2, t.size[1] / 2), 0.0) for t in layout.tables]
    items += [(b.position[:2], (b.size[0] / 2, b.size[1] / 2), 0.0) for b in (*layout.bins, *layout.trays)]
    for (x, y), (hx, hy), yaw in items:
        c, s = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
        pts += [(x + c * sx * hx - s * sy * hy, y + s * sx * hx + c * sy * hy) for sx in (-1, 1) for sy in (-1, 1)]
    return pts


def build_floor(world: World, layout: CellLayout) -> None:
    """Colour the floor and draw the line around the cell (visual only: nothing collides with it)."""
    world.p.changeVisualShape(world.body("floor"), -1, textureUniqueId=-1, rgbaColor=list(FLOOR_RGBA))
    pts = _footprints(layout)
    if not pts:  # a floor without a cell: no line around it
        return
    hx_floor, hy_floor = layout.floor.size[0] / 2 - LINE_WIDTH, layout.floor.size[1] / 2 - LINE_WIDTH
    x0 = max(min(p[0] for p in pts) - MARGIN, -hx_floor)
    x1 = min(max(p[0] for p in pts) + MARGIN, hx_floor)
    y0 = max(min(p[1] for p in pts) - MARGIN, -hy_floor)
    y1 = min(max(p[1] for p in pts) + MARGIN, hy_floor)
    w, z = LINE_WIDTH / 2, 0.0005
    lines = [
        ((x1 - x0) / 2 + w, w, (x0 + x1) / 2, y0),
        ((x1 - x0) / 2 + w, w, (x0 + x1) / 2, y1),
        (w, (y1 - y0) / 2 + w, x0, (y0 + y1) / 2),
        (w, (y1 - y0) / 2 + w, x1, (y0 + y1) / 2),
    ]
    for i, (hx, hy, x, y) in enumerate(lines):
        world.create_box(f"floor-line-{i}", (hx, hy, z), (x, y, z), rgba=LINE_RGBA, collision=False)
