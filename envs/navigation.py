"""Navigation on a logistics floor for scripted AGV controllers and distance-shaped rewards.

A ``FloorMap`` rasterises the floor's static obstacles (walls, racks, stations) and gives, for any
goal, the distance along the floor to it (Dijkstra on an 8-connected grid whose cells near
obstacles cost more, so paths keep to the middle of aisles). ``FloorMap.lookahead`` follows that
field downhill to a point a little way ahead, which a controller steers towards.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra

from twin.layout.logistics import corners
from twin.robots.agv import SPEC

CELL = 0.1  # metres per grid cell
CLEARANCE = SPEC.width / 2 + 0.12  # metres an AGV's centre keeps from obstacles
COMFORT = 0.8  # metres of clearance under which a cell costs more


class FloorMap:
    def __init__(self, layout) -> None:
        self.size = layout.floor.size
        self.nx, self.ny = (round(s / CELL) for s in self.size)
        xs = (np.arange(self.nx) + 0.5) * CELL - self.size[0] / 2
        ys = (np.arange(self.ny) + 0.5) * CELL - self.size[1] / 2
        gx, gy = np.meshgrid(xs, ys, indexing="ij")
        occupied = np.zeros((self.nx, self.ny), dtype=bool)
        rects = [w.footprint() for w in layout.walls] + [r.footprint() for r in layout.racks]
        rects += [((s.position), (s.length / 2 + 0.02, s.width / 2 + 0.05), s.yaw) for s in layout.stations]
        for rect in rects:
            (cx, cy), (hx, hy), yaw = rect
            c, s = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
            lx, ly = (gx - cx) * c + (gy - cy) * s, -(gx - cx) * s + (gy - cy) * c
            occupied |= (np.abs(lx) <= hx + CELL / 2) & (np.abs(ly) <= hy + CELL / 2)
        border = np.ones((self.nx + 2, self.ny + 2), dtype=bool)
        border[1:-1, 1:-1] = ~occupied
        self.clearance = ndimage.distance_transform_edt(border)[1:-1, 1:-1] * CELL - CELL / 2
        self.free = self.clearance >= CLEARANCE
        cost = 1.0 + 3.0 * np.clip(COMFORT - self.clearance, 0.0, None)
        idx = np.arange(self.nx * self.ny).reshape(self.nx, self.ny)
        rows, cols, w = [], [], []
        for dx, dy in ((1, 0), (0, 1), (1, 1), (1, -1)):
            a = idx[max(0, -dx) : self.nx - max(0, dx), max(0, -dy) : self.ny - max(0, dy)]
            b = idx[max(0, dx) : self.nx - max(0, -dx), max(0, dy) : self.ny - max(0, -dy)]
            ok = self.free.ravel()[a] & self.free.ravel()[b]
            step = math.hypot(dx, dy) * CELL
            wt = step * (cost.ravel()[a] + cost.ravel()[b]) / 2
            rows += [a[ok], b[ok]]
            cols += [b[ok], a[ok]]
            w += [wt[ok], wt[ok]]
        n = self.nx * self.ny
        self.graph = coo_matrix((np.concatenate(w), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)).tocsr()
        self._fields: dict[tuple[float, float], np.ndarray] = {}

    def cell(self, xy) -> tuple[int, int]:
        i = int((xy[0] + self.size[0] / 2) / CELL)
        j = int((xy[1] + self.size[1] / 2) / CELL)
        return min(max(i, 0), self.nx - 1), min(max(j, 0), self.ny - 1)

    def centre(self, ij) -> tuple[float, float]:
        return (ij[0] + 0.5) * CELL - self.size[0] / 2, (ij[1] + 0.5) * CELL - self.size[1] / 2

    def _nearest_free(self, ij) -> tuple[int, int]:
        if self.free[ij]:
            return ij
        fi, fj = np.nonzero(self.free)
        k = int(np.argmin((fi - ij[0]) ** 2 + (fj - ij[1]) ** 2))
        return int(fi[k]), int(fj[k])

    def field(self, goal) -> np.ndarray:
        """Metres along the floor from every cell to ``goal`` (inf where unreachable)."""
        key = (round(goal[0], 3), round(goal[1], 3))
        if key not in self._fields:
            src = np.ravel_multi_index(self._nearest_free(self.cell(goal)), (self.nx, self.ny))
            d = dijkstra(self.graph, indices=src, directed=False)
            self._fields[key] = d.reshape(self.nx, self.ny)
        return self._fields[key]

    def distance(self, xy, goal) -> float:
        """Metres along the floor from ``xy`` to ``goal`` (the straight line near the goal)."""
        if math.dist(xy, goal) < 2 * CELL:
            return math.dist(xy, goal)
        f = self.field(goal)
        ij = self._nearest_free(self.cell(xy))
        return float(f[ij]) + math.dist(xy, self.centre(ij))

    def _descend(self, xy, goal, length: float) -> tuple[list[tuple[int, int]], float]:
        """The cells met walking downhill on ``goal``'s field from ``xy`` for about ``length``
        metres (the first is where it starts), and the field's value at the last."""
        f = self.field(goal)
        ij = self._nearest_free(self.cell(xy))
        cells = [ij]
        travelled = 0.0
        while travelled < length and f[ij] > 0:
            best, nxt = f[ij], None
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    a, b = ij[0] + di, ij[1] + dj
                    if (di or dj) and 0 <= a < self.nx and 0 <= b < self.ny and f[a, b] < best:
                        best, nxt = f[a, b], (a, b)
            if nxt is None:
                break
            travelled += CELL * math.hypot(nxt[0] - ij[0], nxt[1] - ij[1])
            ij = nxt
            cells.append(ij)
        return cells, float(f[ij])

    def path(self, xy, goal, length: float) -> list[tuple[float, float]]:
        """Points (a cell apart) along the way from ``xy`` towards ``goal``, up to ``length`` metres."""
        cells, left = self._descend(xy, goal, length)
        out = [(float(xy[0]), float(xy[1])), *(self.centre(ij) for ij in cells[1:])]
        if left <= 0 or len(out) == 1:
            out.append((float(goal[0]), float(goal[1])))
        return out

    def lookahead(self, xy, goal, ahead: float = 1.0) -> tuple[float, float]:
        """A point about ``ahead`` metres down the path from ``xy`` towards ``goal``."""
        cells, left = self._descend(xy, goal, ahead)
        if left <= 0 or math.dist(xy, goal) < ahead:
            return float(goal[0]), float(goal[1])
        return self.centre(cells[-1])


def rect_gap(pose, half: tuple[float, float], xy, radius: float) -> float:
    """Metres between a rectangle at ``pose`` (x, y, heading) and a disc at ``xy``."""
    dx, dy = xy[0] - pose[0], xy[1] - pose[1]
    c, s = math.cos(pose[2]), math.sin(pose[2])
    lx, ly = dx * c + dy * s, -dx * s + dy * c
    return math.hypot(max(abs(lx) - half[0], 0.0), max(abs(ly) - half[1], 0.0)) - radius


__all__ = ["FloorMap", "corners", "rect_gap"]
