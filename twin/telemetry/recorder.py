"""A twin run as telemetry: its signals sampled at a chosen rate and its event log, episode by
episode, in the long format a plant historian exports.

Episodes are laid end to end on one clock (each starts where the one before ended), from
``start`` (UTC), so the timestamps of a recording rise as a plant log's do; the ``episode`` column
says which episode a row belongs to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from twin.telemetry.signals import SignalTable


class TelemetryError(ValueError):
    """A recording asked for something it cannot give (a rate above the control rate)."""


@dataclass
class EpisodeEvents:
    episode: int
    offset_s: float
    """Where the episode starts on the recording's clock (seconds after ``start``)."""
    duration_s: float
    """Its simulated seconds."""
    events: list
    """Its ``twin.events.Event`` list."""


class Recorder:
    """Samples every signal of ``twin`` every ``1 / rate_hz`` seconds of simulated time (every
    control step when ``rate_hz`` is None) and keeps each episode's events.

    Call ``begin(episode)`` after each reset, ``after_step()`` after each control step and
    ``end()`` when the episode is over; ``tables()`` gives the signals and events as Arrow tables.
    """

    def __init__(self, twin, rate_hz: float | None = None, start: datetime | None = None) -> None:
        control_hz = 1.0 / twin.control_dt
        if rate_hz is not None and not (math.isfinite(rate_hz) and 0 < rate_hz <= control_hz * (1 + 1e-9)):
            raise TelemetryError(
                f"telemetry rate {rate_hz:g} Hz: expected more than 0 and at most the control rate, {control_hz:g} Hz"
            )
        self.twin = twin
        self.table = SignalTable(twin)
        self.every = 1 if rate_hz is None else max(1, round(control_hz / rate_hz))
        """Control steps between samples."""
        self.rate_hz = control_hz / self.every
        self.start = (start or datetime.now(UTC)).replace(microsecond=0)
        self._times: list[float] = []
        self._episodes: list[int] = []
        self._rows: list[np.ndarray] = []
        self.episodes: list[EpisodeEvents] = []
        self._offset = 0.0
        self._episode: int | None = None
        self._steps = 0

    def begin(self, episode: int, twin=None) -> None:
        """A new episode has been reset: its first sample, at its time zero. ``twin``: the twin
        it runs on, where its env built a new one at the reset (``Task.fresh_world``)."""
        if self._episode is not None:  # its events went with the reset
            raise TelemetryError(f"telemetry: episode {self._episode} was not ended before the next reset")
        if twin is not None and twin is not self.twin:
            table = SignalTable(twin)
            if table.signals != self.table.signals:
                raise TelemetryError("telemetry: the new twin has other signals than the recording's")
            self.twin, self.table = twin, table
        self._episode, self._steps = int(episode), 0
        self._sample()

    def after_step(self) -> None:
        if self._episode is None:
            raise TelemetryError("telemetry: a step recorded before any episode began (call begin after reset)")
        self._steps += 1
        if self._steps % self.every == 0:
            self._sample()

    def end(self) -> None:
        """The episode is over: its events are kept and the clock moves on past it."""
        if self._episode is None:
            return
        self.episodes.append(EpisodeEvents(self._episode, self._offset, self.twin.sim_time, list(self.twin.log.events)))
        self._offset += self.twin.sim_time
        self._episode = None

    def _sample(self) -> None:
        self._times.append(self._offset + self.twin.sim_time)
        self._episodes.append(self._episode)
        self._rows.append(self.table.read())

    @property
    def samples(self) -> int:
        return len(self._times)

    def tables(self):
        """(signals, events) as ``pyarrow.Table`` in the schemas of ``twin.telemetry.files``."""
        from twin.telemetry.files import events_table, signals_table

        self.end()
        values = np.stack(self._rows) if self._rows else np.zeros((0, len(self.table)))
        signals = signals_table(
            self.start, np.asarray(self._times), np.asarray(self._episodes, dtype=np.int64), self.table.signals, values
        )
        return signals, events_table(self.start, self.episodes)
