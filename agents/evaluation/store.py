"""An evaluation's output folder: locked while written, rows kept as each episode ends.

::

    run.json          what is being evaluated (suite and layout hashes, policy, limits), written first
    episodes.jsonl    one row per finished episode, appended and flushed as it ends
    videos/           the recorded episodes, one file each, written as they end
    results.json      meta, aggregates and rows (at the end)
    results.parquet   the rows (at the end)
    report.html       the scorecard (at the end)

So a Ctrl-C, a killed worker or a crash loses at most the episodes that were running, and
``twin eval --resume`` runs only the missing episodes of the same evaluation into the same rows.
An existing result folder is refused unless the user asks to ``--resume`` or ``--overwrite`` it,
and ``.lock`` keeps two evaluations from writing one folder at once.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from agents.common.files import atomic_write_bytes, atomic_write_text
from agents.evaluation.report import clean

RUN = "run.json"
EPISODES = "episodes.jsonl"
VIDEOS = "videos"
OUTPUTS = (RUN, EPISODES, "results.json", "results.parquet", "report.html")
IDENTITY = ("suite_hash", "layout_hashes", "policy", "limits", "videos", "tasks_run", "variants_run")
"""What must match for ``--resume`` to continue an evaluation (the rows depend on nothing else)."""


class ResultsError(ValueError):
    """An output folder that cannot be used as asked (the message says why and what to do)."""


class ResultsFolder:
    """Open ``path`` for an evaluation described by ``identity`` (a dict of IDENTITY keys).

    Args:
        path: The ``--out`` folder.
        identity: What the evaluation is; written to ``run.json`` and compared on resume.
        resume: Continue the evaluation already in ``path`` (refused if it is another one).
        overwrite: Replace the results already in ``path``.
    """

    def __init__(self, path: str | Path, identity: dict[str, Any], resume: bool = False, overwrite: bool = False):
        self.path = Path(path)
        self.identity = identity
        if self.path.exists() and not self.path.is_dir():
            raise ResultsError(f"--out {self.path}: exists and is not a folder")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ResultsError(f"--out {self.path}: cannot create it: {exc.strerror}") from None
        self._lock = self._take_lock()
        try:
            self.done: dict[tuple[str, str, int], dict[str, Any]] = {}
            existing = [name for name in OUTPUTS if (self.path / name).exists()]
            if existing and overwrite:
                self._clear()
            elif existing and resume:
                self._load()
            elif existing:
                raise ResultsError(
                    f"--out {self.path} already holds evaluation results ({', '.join(existing)}); pass --resume to "
                    f"finish that evaluation, --overwrite to replace it, or choose another --out"
                )
            elif resume:
                raise ResultsError(f"--resume: {self.path} holds no evaluation to resume ({RUN} is missing)")
            if not self.done:
                atomic_write_text(self.path / RUN, json.dumps(identity, indent=2) + "\n")
            self._rows = open(self.path / EPISODES, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        except BaseException:
            self.close()
            raise

    def _take_lock(self):
        import fcntl

        f = open(self.path / ".lock", "a+")  # noqa: SIM115 (held until close())
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip()
            f.close()
            raise ResultsError(
                f"--out {self.path}: another twin eval is writing it{f' ({holder})' if holder else ''}; "
                f"wait for it or choose another --out"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}\n")
        f.flush()
        return f

    def _clear(self) -> None:
        for name in OUTPUTS:
            (self.path / name).unlink(missing_ok=True)
        shutil.rmtree(self.path / VIDEOS, ignore_errors=True)

    def _load(self) -> None:
        run = self.path / RUN
        try:
            saved = json.loads(run.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ResultsError(f"--resume: {run} is unreadable ({exc}); use --overwrite to start afresh") from None
        if not isinstance(saved, dict):
            raise ResultsError(f"--resume: {run} is not an evaluation description; use --overwrite")
        differ = [k for k in IDENTITY if saved.get(k) != self.identity.get(k)]
        if differ:
            raise ResultsError(
                f"--resume: {self.path} holds another evaluation ({', '.join(differ)} differ); "
                f"use --overwrite to replace it, or choose another --out"
            )
        path = self.path / EPISODES
        if not path.exists():
            return
        good = 0
        with open(path, "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    break  # the last row was cut off by a kill: that episode runs again
                try:
                    row = json.loads(line)
                    key = (row["task"], row["variant"], int(row["seed"]))
                except (ValueError, KeyError, TypeError):
                    break
                self.done[key] = row
                good += len(line)
        if good < path.stat().st_size:
            with open(path, "r+b") as f:
                f.truncate(good)

    def add(self, row: dict[str, Any]) -> None:
        """Append one finished episode's row and flush it to disk."""
        self._rows.write(json.dumps(clean([row])[0], allow_nan=False) + "\n")
        self._rows.flush()
        os.fsync(self._rows.fileno())
        self.done[(row["task"], row["variant"], int(row["seed"]))] = row

    def add_video(self, key: tuple[str, str, int], data: bytes, suffix: str) -> None:
        task, variant, seed = key
        atomic_write_bytes(self.path / VIDEOS / f"{quote(task, safe=':')}__{variant}__{seed}{suffix}", data)

    def videos(self) -> dict[tuple[str, str, int], Path]:
        return list_videos(self.path)

    def close(self) -> None:
        rows = getattr(self, "_rows", None)
        if rows is not None:
            rows.close()
            self._rows = None
        if self._lock is not None:
            self._lock.close()  # releases the lock
            self._lock = None

    def __enter__(self) -> ResultsFolder:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def list_videos(folder: Path) -> dict[tuple[str, str, int], Path]:
    """The episode videos of an output folder by (task, variant, seed)."""
    out = {}
    for p in sorted((Path(folder) / VIDEOS).glob("*__*__*.*")):
        task, variant, seed = p.stem.split("__")
        out[(unquote(task), variant, int(seed))] = p
    return out
