"""Telemetry out of a twin: its signals and events, as a plant historian exports them (Parquet,
long format) and as an OCEL 2.0 object-centric event log.

``Recorder(twin, rate_hz)`` samples a running twin; ``write_recording`` writes a folder and
``read_recording`` reads one back (``twin.telemetry.files`` documents the schema).
"""

from __future__ import annotations

from twin.telemetry.files import EVENT_COLUMNS, SCHEMA_VERSION, SIGNAL_COLUMNS, read_recording, write_recording
from twin.telemetry.recorder import Recorder, TelemetryError
from twin.telemetry.signals import MACHINE_STATES, Signal, SignalTable

__all__ = [
    "EVENT_COLUMNS",
    "MACHINE_STATES",
    "SCHEMA_VERSION",
    "SIGNAL_COLUMNS",
    "Recorder",
    "Signal",
    "SignalTable",
    "TelemetryError",
    "read_recording",
    "write_recording",
]
