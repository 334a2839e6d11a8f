"""Factory Twin's digital twins of factory cells, logistics floors and wafer-handling tools, in
PyBullet (no Gymnasium, no torch)."""

from __future__ import annotations

from twin.cell import Twin
from twin.events import Event, EventLog, compute_kpis
from twin.layout import CellLayout, LayoutError, load_layout, parse_layout
from twin.world import World

__all__ = [
    "CellLayout",
    "Event",
    "EventLog",
    "LayoutError",
    "Twin",
    "World",
    "compute_kpis",
    "load_layout",
    "parse_layout",
]
__version__ = "0.1.0"
