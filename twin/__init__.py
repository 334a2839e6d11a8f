"""Factory Twin's digital twins of factory cells, logistics floors and wafer-handling tools, in
PyBullet (no Gymnasium, no torch)."""

from __future__ import annotations


def _import_pybullet_quietly() -> None:
    """Import pybullet with its build-time banner (written to stderr by its C code) kept out of the
    terminal, so that a command's errors are the only lines it prints there."""
    import os
    import sys

    if "pybullet" in sys.modules:
        return
    try:
        sys.stderr.flush()
        saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    except OSError:  # no file descriptor 2 to borrow: import as is
        import pybullet

        return
    os.dup2(devnull, 2)
    try:
        import pybullet  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


_import_pybullet_quietly()

from twin.cell import Twin  # noqa: E402
from twin.events import Event, EventLog, compute_kpis  # noqa: E402
from twin.layout import CellLayout, LayoutError, load_layout, parse_layout  # noqa: E402
from twin.world import World  # noqa: E402

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
