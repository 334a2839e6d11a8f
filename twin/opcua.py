"""A running twin as an OPC UA server (asyncua): plant software reads, subscribes to and (when
allowed) writes a twin the way it does a real cell or line.

The address space is built from what the layout built, with the telemetry's names and units
(``twin.telemetry.signals``): under ``Objects``, one object per asset (``conveyor-0``,
``machine-0``, ``panda-0``; in a line, one folder per cell holding its assets, and the line's
buffers), each holding its signals as variables with an ``EngineeringUnits`` property (UNECE
codes); a ``kpis`` object per cell and for the line. Values are written at the control rate.

Read-only by default. With writes allowed, the setpoints plant software may change are a
conveyor's ``speed`` (m/s, within the layout schema's 0-2 m/s) and ``running``, and a machine's
``running`` (stopping it holds its cycle, as a breakdown does). A write of another node is
answered ``BadNotWritable``, of the wrong type ``BadTypeMismatch``, out of bounds
``BadOutOfRange``; the twin goes on either way.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

try:
    from asyncua import Server, ua
except ImportError as exc:  # pragma: no cover - said plainly by the CLI
    raise ImportError("OPC UA needs asyncua: pip install 'factory-twin[opcua]'") from exc

from twin.telemetry.signals import MACHINE_STATES, SignalTable

NAMESPACE = "urn:factory-twin"
MAX_BELT_SPEED = 2.0
"""m/s: the layout schema's bound on a conveyor's speed."""

# UNECE Recommendation 20 common codes of the units the twin's signals carry
UNECE = {
    "m": ("MTR", "m", "metre"),
    "m/s": ("MTS", "m/s", "metre per second"),
    "rad": ("C81", "rad", "radian"),
    "rad/s": ("2A", "rad/s", "radian per second"),
    "s": ("SEC", "s", "second"),
    "J": ("JOU", "J", "joule"),
    "parts": ("C62", "1", "one (count of parts)"),
    "parts/h": ("HR", "1/h", "parts per hour"),
    "share": ("P1", "%", "share (0-1)"),
}


def eu(unit: str) -> ua.EUInformation | None:
    """The OPC UA engineering-units record of one of the twin's units (None for bool and state)."""
    if unit not in UNECE:
        return None
    code, shown, text = UNECE[unit]
    unit_id = 0
    for ch in code:
        unit_id = (unit_id << 8) | ord(ch)
    return ua.EUInformation(
        NamespaceUri="http://www.opcfoundation.org/UA/units/un/cefact",
        UnitId=unit_id,
        DisplayName=ua.LocalizedText(shown),
        Description=ua.LocalizedText(text),
    )


@dataclass
class _Var:
    node: Any
    kind: ua.VariantType
    last: Any = None
    dirty: bool = False


@dataclass
class Setpoint:
    """A node plant software may write, and how a value is checked and applied."""

    kind: ua.VariantType
    check: Callable[[Any], str | None]
    """None when the value is acceptable, else why not."""
    apply: Callable[[Any], None]


class TwinServer:
    """An OPC UA server over one or more twins.

    Args:
        cells: ``(folder, twin)`` pairs: a single cell's folder is ``""`` (its assets go straight
            under Objects); a line's cells each get a folder named as the cell.
        port: TCP port on 127.0.0.1.
        allow_writes: Accept writes of the setpoints.
        now: The twins' clock (seconds), for applying a machine's stop at the right time.
    """

    def __init__(self, cells: list[tuple[str, Any]], port: int, allow_writes: bool = False, now=None) -> None:
        self.cells, self.port, self.allow_writes = cells, port, allow_writes
        self.endpoint = f"opc.tcp://127.0.0.1:{port}/factory-twin/"
        self.server = Server()
        self._tables = [SignalTable(twin) for _, twin in cells]
        self._vars: list[list[_Var]] = []
        self._extra: dict[str, _Var] = {}
        self._setpoints: dict[Any, Setpoint] = {}
        self._pending: list[tuple[Setpoint, Any]] = []
        self._now = now or (lambda: 0.0)
        self.updates = 0
        """Variable values written since the start (each a change clients subscribed to may see)."""
        self.writes_accepted = 0
        self.writes_refused = 0

    async def start(self) -> None:
        s = self.server
        await s.init()
        s.set_endpoint(self.endpoint)
        s.set_server_name("Factory Twin")
        s.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        self.ns = await s.register_namespace(NAMESPACE)
        objects = s.nodes.objects
        for (folder, twin), table in zip(self.cells, self._tables, strict=True):
            parent = objects if not folder else await objects.add_folder(self._id(folder), self._q(folder))
            assets: dict[str, Any] = {}
            row = []
            for sig in table.signals:
                if sig.asset not in assets:
                    assets[sig.asset] = await parent.add_object(self._id(folder, sig.asset), self._q(sig.asset))
                kind = ua.VariantType.Boolean if sig.unit == "bool" else ua.VariantType.Double
                path = (folder, sig.asset, sig.signal)
                var = await self._variable(assets[sig.asset], path, sig.unit, kind)
                row.append(_Var(var, kind))
                if sig.asset.startswith("conveyor-") and sig.signal in ("speed", "running"):
                    await self._setpoint(var, self._belt(twin.conveyors[sig.asset], sig.signal))
            for m in twin.machines:
                obj = assets[m.name]
                self._extra[f"{folder}/{m.name}/state_name"] = _Var(
                    await self._variable(obj, (folder, m.name, "state_name"), "state", ua.VariantType.String),
                    ua.VariantType.String,
                )
                var = await self._variable(obj, (folder, m.name, "running"), "bool", ua.VariantType.Boolean)
                self._extra[f"{folder}/{m.name}/running"] = _Var(var, ua.VariantType.Boolean)
                await self._setpoint(var, self._machine(twin, m))
            self._vars.append(row)
        await s.start()

    async def _setpoint(self, var, sp: Setpoint) -> None:
        self._setpoints[var.nodeid] = sp
        if self.allow_writes:  # its AccessLevel tells clients it may be written
            await var.set_writable()

    def _q(self, name: str) -> ua.QualifiedName:
        return ua.QualifiedName(name, self.ns)

    def _id(self, *parts: str) -> ua.NodeId:
        return ua.NodeId("/".join(p for p in parts if p), self.ns)

    async def _variable(self, parent, path: tuple[str, ...], unit: str, kind: ua.VariantType):
        initial = {ua.VariantType.Boolean: False, ua.VariantType.String: "", ua.VariantType.UInt32: 0}.get(kind, 0.0)
        var = await parent.add_variable(self._id(*path), self._q(path[-1]), ua.Variant(initial, kind))
        info = eu(unit)
        if info is not None:
            await var.add_property(self._id(*path, "EngineeringUnits"), "EngineeringUnits", info)
        text = ua.LocalizedText(f"{'/'.join(p for p in path if p)} ({unit})")
        await self.server.write_attribute_value(var.nodeid, ua.DataValue(ua.Variant(text)), ua.AttributeIds.Description)
        return var

    async def add_values(self, folder: str, obj_name: str, values: dict[str, tuple[float, str]]) -> None:
        """An object of extra read-only values (``name -> (value, unit)``), such as KPIs or buffers."""
        parent = (
            self.server.nodes.objects
            if not folder
            else await self.server.nodes.objects.get_child(f"{self.ns}:{folder}")
        )
        obj = await parent.add_object(self._id(folder, obj_name), self._q(obj_name))
        for name, (_, unit) in values.items():
            kind = ua.VariantType.Double
            var = await self._variable(obj, (folder, obj_name, name), unit, kind)
            self._extra[f"{folder}/{obj_name}/{name}"] = _Var(var, kind)

    def _belt(self, belt, what: str) -> Setpoint:
        if what == "running":
            return Setpoint(ua.VariantType.Boolean, lambda v: None, lambda v: belt.set_running(bool(v)))

        def check(v) -> str | None:
            if not (isinstance(v, float) and math.isfinite(v) and 0.0 <= v <= MAX_BELT_SPEED):
                return f"{belt.name}.speed must be 0-{MAX_BELT_SPEED:g} m/s"
            if belt.config.speed <= 0:
                return f"{belt.name} has no layout speed to scale"
            return None

        return Setpoint(ua.VariantType.Double, check, lambda v: belt.set_speed_scale(v / belt.config.speed))

    def _machine(self, twin, machine) -> Setpoint:
        return Setpoint(
            ua.VariantType.Boolean,
            lambda v: None,
            lambda v: machine.set_down(self._now(), not bool(v), twin.log),
        )

    def guard_writes(self) -> None:
        """Answer every client write of this namespace's nodes here: setpoints checked (and
        applied at the next control step), everything else refused, each with its status code.
        Called once the address space is built (building writes its nodes' attributes)."""
        service = self.server.iserver.attribute_service
        write = service.write

        async def checked(params: ua.WriteParameters, user=None) -> list[ua.StatusCode]:
            out = []
            for wv in params.NodesToWrite:
                if wv.NodeId.NamespaceIndex != self.ns:  # the server's own nodes: as asyncua answers
                    kwargs = {} if user is None else {"user": user}
                    out.append((await write(ua.WriteParameters(NodesToWrite=[wv]), **kwargs))[0])
                    continue
                sp = self._setpoints.get(wv.NodeId)
                if not self.allow_writes or sp is None or wv.AttributeId != ua.AttributeIds.Value:
                    out.append(ua.StatusCode(ua.StatusCodes.BadNotWritable))
                    self.writes_refused += 1
                    continue
                variant = wv.Value.Value
                if variant is None or variant.VariantType != sp.kind:
                    out.append(ua.StatusCode(ua.StatusCodes.BadTypeMismatch))
                    self.writes_refused += 1
                    continue
                if sp.check(variant.Value) is not None:
                    out.append(ua.StatusCode(ua.StatusCodes.BadOutOfRange))
                    self.writes_refused += 1
                    continue
                kwargs = {} if user is None else {"user": user}
                status = (await write(ua.WriteParameters(NodesToWrite=[wv]), **kwargs))[0]
                if status.is_good():
                    self._pending.append((sp, variant.Value))
                    self.writes_accepted += 1
                out.append(status)
            return out

        service.write = checked

    def apply_writes(self) -> None:
        """Apply the setpoints written since the last control step (called before each step)."""
        pending, self._pending = self._pending, []
        for sp, value in pending:
            sp.apply(value)

    async def publish(self, extra: dict[str, float | str | bool] | None = None) -> None:
        """Write every signal's value now (and ``extra`` values by their ``folder/object/name`` keys);
        unchanged values are not written again."""
        s = self.server
        for table, row in zip(self._tables, self._vars, strict=True):
            for var, value in zip(row, table.read().tolist(), strict=True):
                v = bool(value > 0.5) if var.kind == ua.VariantType.Boolean else float(value)
                if v != var.last and not (
                    isinstance(v, float) and math.isnan(v) and isinstance(var.last, float) and math.isnan(var.last)
                ):
                    var.last = v
                    await s.write_attribute_value(var.node.nodeid, ua.DataValue(ua.Variant(v, var.kind)))
                    self.updates += 1
        for (folder, twin), _ in zip(self.cells, self._tables, strict=True):
            for m in twin.machines:
                self._put(f"{folder}/{m.name}/state_name", m.state)
                self._put(f"{folder}/{m.name}/running", m.state != "down")
        for key, value in (extra or {}).items():
            self._put(key, value)
        for var in self._extra.values():
            if var.dirty:
                var.dirty = False
                await s.write_attribute_value(var.node.nodeid, ua.DataValue(ua.Variant(var.last, var.kind)))
                self.updates += 1

    def _put(self, key: str, value) -> None:
        var = self._extra.get(key)
        if var is None:
            return
        if var.kind == ua.VariantType.Double:
            value = float(value) if value is not None else math.nan
        if value != var.last and not (
            isinstance(value, float) and math.isnan(value) and isinstance(var.last, float) and math.isnan(var.last)
        ):
            var.last = value
            var.dirty = True

    async def stop(self) -> None:
        await self.server.stop()


__all__ = ["MACHINE_STATES", "NAMESPACE", "Setpoint", "TwinServer", "eu"]
