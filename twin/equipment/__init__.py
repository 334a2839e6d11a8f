"""Equipment, one module per kind: conveyors, bins, trays, machines, inspection, assembly, stands;
a logistics floor's walls, racks, roller stations and people (``logistics``); a cluster tool's
cassettes, chambers and wafers (``fab``)."""

from twin.equipment.assembly import PegHole
from twin.equipment.bins import Bin
from twin.equipment.conveyor import Conveyor
from twin.equipment.inspection import InspectionStation
from twin.equipment.machine import Machine
from twin.equipment.stands import build_pedestal, build_table
from twin.equipment.trays import Tray

__all__ = ["Bin", "Conveyor", "InspectionStation", "Machine", "PegHole", "Tray", "build_pedestal", "build_table"]
