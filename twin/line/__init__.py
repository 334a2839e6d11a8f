"""Lines of cells: the line layout, its events and KPIs, the fast discrete-event line model and
its fit to the physics (the physics run itself is ``envs.line``: it needs the tasks' experts)."""

from __future__ import annotations

from twin.line.kpis import LineEvent, cell_states, line_kpis, unit_of, with_states
from twin.line.ports import LineError
from twin.line.schema import Line, LineBuffer, LineCell, LineSource, find_line, line_hash, load_line, parse_line

__all__ = [
    "Line",
    "LineBuffer",
    "LineCell",
    "LineError",
    "LineEvent",
    "LineSource",
    "cell_states",
    "find_line",
    "line_hash",
    "line_kpis",
    "load_line",
    "parse_line",
    "unit_of",
    "with_states",
]
