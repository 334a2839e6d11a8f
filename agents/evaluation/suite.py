"""Evaluation suites: a TOML file naming, per task, its layout, scenario variants and episode seeds.

```toml
name = "standard-v1"
description = "..."

[[tasks]]
env_id = "ConveyorPick-v0"
layout = "default"              # a bundled layout name or a path (relative to the suite file)
seeds = [0, 1, 2]               # explicit episode seeds

[[tasks.variants]]              # optional; one "nominal" variant when absent
name = "nominal"
env_kwargs = {}                 # extra gym.make keyword arguments
layout = "default"              # optional: this variant's layout instead of the task's

[[tasks.variants]]
name = "faults"
env_kwargs = { faults = "all" } # or a list of fault families; checked against the layout

[[tasks.variants]]
name = "randomized"
env_kwargs = { randomize = true }

[limits]                        # optional: what one episode may cost (defaults shown)
episode_seconds = 300           # wall-clock seconds per episode, env and policy together
call_seconds = 2                # wall-clock seconds per policy call
memory_mb = 4096                # address space an eval worker may add, MB
```

A suite file may be at most 1 MiB and ask for at most 100,000 episodes; seeds lie in
[0, 2**32 - 1].

Every episode of a suite is one (task, variant, seed). ``suite_hash`` is the SHA-256 of the file's
bytes; results record it with the hash of every layout used.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agents.evaluation.workers import Limits
from twin.layout import (
    LayoutError,
    _format_errors,
    find_layout,
    layout_hash,
    load_layout,
    parse_toml,
    read_bounded,
    with_variation,
)

SEEDS_DIR = Path(__file__).resolve().parents[2] / "seeds"


class SuiteError(ValueError):
    """A suite that cannot be used; the message names the file and each offending field."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source, self.problems = source, problems
        n = len(problems)
        super().__init__(
            f"{source}: invalid suite ({n} problem{'s' * (n != 1)}):\n" + "\n".join(f"  {p}" for p in problems)
        )


MAX_SUITE_BYTES = 2**20
MAX_EPISODES = 100_000
MAX_SEED = 2**32 - 1


class Variant(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    env_kwargs: dict[str, Any] = Field(default_factory=dict)
    layout: str | None = Field(None, min_length=1, max_length=4096)


class SuiteTask(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    env_id: str = Field(min_length=1, max_length=200)
    layout: str | None = Field(None, min_length=1, max_length=4096)
    seeds: list[int] = Field(min_length=1, max_length=MAX_EPISODES)
    variants: list[Variant] = Field(default_factory=lambda: [Variant(name="nominal")])

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if any(s < 0 for s in v):
            raise ValueError("seeds must be >= 0")
        if any(s > MAX_SEED for s in v):
            raise ValueError(f"seeds must be at most 2**32 - 1 = {MAX_SEED}, got {max(v)}")
        if len(set(v)) != len(v):
            raise ValueError("seeds must be unique")
        return v

    @model_validator(mode="after")
    def _variants(self) -> SuiteTask:
        names = [v.name for v in self.variants]
        if not names:
            raise ValueError("variants: give at least one (or leave it out for 'nominal')")
        if len(set(names)) != len(names):
            raise ValueError(f"variants: names must be unique, got {names}")
        return self


class Suite(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=10_000)
    tasks: list[SuiteTask] = Field(min_length=1, max_length=1000)
    limits: Limits = Limits()

    @model_validator(mode="after")
    def _unique(self) -> Suite:
        ids = [t.env_id for t in self.tasks]
        if len(set(ids)) != len(ids):
            raise ValueError(f"tasks: each env_id may appear once, got {ids}")
        n = sum(len(t.seeds) * len(t.variants) for t in self.tasks)
        if n > MAX_EPISODES:
            raise ValueError(f"the suite asks for {n:,} episodes, over the limit of {MAX_EPISODES:,} per suite")
        return self


class LoadedSuite:
    """A validated suite with where it came from, its hash and its layouts' hashes."""

    def __init__(self, suite: Suite, path: Path, digest: str) -> None:
        self.suite, self.path, self.hash = suite, path, digest
        self.layout_paths: dict[tuple[str, str], str | None] = {}
        for task in suite.tasks:
            for v in task.variants:
                self.layout_paths[(task.env_id, v.name)] = self._layout(v.layout or task.layout)

    def _layout(self, ref: str | None) -> str | None:
        if ref is None:
            return None
        p = Path(ref)
        if not p.is_absolute() and (self.path.parent / p).exists():
            return str(self.path.parent / p)
        return str(find_layout(ref))

    def only(self, env_ids: list[str] | None = None, variants: list[str] | None = None) -> LoadedSuite:
        """The suite cut down to these tasks and variants (same file, same hash: a part of the same
        evaluation). A task keeps the asked variants it has, and is left out if it has none."""
        have = [t.env_id for t in self.suite.tasks]
        unknown = [e for e in env_ids or [] if e not in have]
        if unknown:
            raise SuiteError(
                str(self.path), [f"--task: {', '.join(unknown)} not in this suite (it has {', '.join(have)})"]
            )
        tasks = [t for t in self.suite.tasks if not env_ids or t.env_id in env_ids]
        if variants:
            names = list(dict.fromkeys(v.name for t in tasks for v in t.variants))
            missing = [v for v in variants if v not in names]
            if missing:
                where = "these tasks" if env_ids else "this suite"
                raise SuiteError(
                    str(self.path),
                    [f"--variant: {', '.join(missing)} not in {where} (variants: {', '.join(names)})"],
                )
            tasks = [
                t.model_copy(update={"variants": [v for v in t.variants if v.name in variants]})
                for t in tasks
                if any(v.name in variants for v in t.variants)
            ]
        part = LoadedSuite(self.suite.model_copy(update={"tasks": tasks}), self.path, self.hash)
        part.tasks_run = [t.env_id for t in tasks] if env_ids else None
        part.variants_run = list(variants) if variants else None
        return part

    tasks_run: list[str] | None = None
    """The tasks run when only some of the suite's were asked for (``--task``), else None."""
    variants_run: list[str] | None = None
    """The variants run when only some were asked for (``--variant``), else None."""

    def episodes(self) -> list[tuple[str, str, int]]:
        """(env_id, variant, seed) of every episode, in suite order."""
        return [(t.env_id, v.name, s) for t in self.suite.tasks for v in t.variants for s in t.seeds]

    observation: dict[str, Any] | None = None
    """Env kwargs of the observation every variant is played with (``twin eval --obs rgb``: a
    policy that sees), over the variants' own; None: each variant's."""

    def with_observation(self, observation: dict[str, Any] | None) -> LoadedSuite:
        """This suite played with ``observation`` (``obs_mode`` and its settings) in every variant."""
        part = LoadedSuite(self.suite, self.path, self.hash)
        part.tasks_run, part.variants_run, part.observation = self.tasks_run, self.variants_run, observation
        return part

    def env_kwargs(self, env_id: str, variant: str) -> dict[str, Any]:
        task = next(t for t in self.suite.tasks if t.env_id == env_id)
        v = next(v for v in task.variants if v.name == variant)
        kwargs = dict(v.env_kwargs) | (self.observation or {})
        layout = self.layout_paths[(env_id, variant)]
        if layout is not None:
            kwargs["layout"] = layout
        return kwargs

    def layout_hashes(self) -> dict[str, str]:
        """SHA-256 per layout file used (the tasks' bundled layouts where the suite names none)."""
        import envs

        out = {}
        for (env_id, _), path in self.layout_paths.items():
            if not envs.is_factory_env(env_id):
                continue  # another package's env: no layout
            ref = path or envs.TASKS[env_id].layout
            out[Path(find_layout(ref)).name] = layout_hash(ref)
        return dict(sorted(out.items()))


def _check_variation(path: Path, i: int, j: int, task: SuiteTask, v: Variant) -> list[str]:
    """A variant's ``faults`` and ``randomize`` checked against its layout (unknown families, ones
    the cell has no equipment for, values of the wrong kind)."""
    import envs

    where = f"tasks[{i}].variants[{j}].env_kwargs"
    ref = v.layout or task.layout or envs.TASKS[task.env_id].layout
    p = Path(ref)
    target = path.parent / p if not p.is_absolute() and (path.parent / p).exists() else ref
    try:
        layout = load_layout(target)
    except (LayoutError, FileNotFoundError):
        return []  # reported above
    problems = []
    for field, args in (
        ("faults", (v.env_kwargs.get("faults", "layout"), None)),
        ("randomize", ("layout", v.env_kwargs.get("randomize"))),
    ):
        try:
            with_variation(layout, *args, str(target))
        except LayoutError as exc:
            for pr in exc.problems:
                pr = pr.removeprefix("(top level): ").removeprefix("Value error, ")
                if pr.startswith(f"{field}."):
                    pr = pr.removeprefix(f"{field}.")  # faults.machine_breakdown: ... -> machine_breakdown: ...
                elif pr.startswith(f"{field}: "):
                    pr = pr.removeprefix(f"{field}: ")
                problems.append(f"{where}.{field}: {pr}")
    return problems


def find_suite(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.exists() or p.suffix == ".toml":
        return p
    bundled = SEEDS_DIR / f"{name_or_path}.toml"
    return bundled if bundled.exists() else p


def load_suite(name_or_path: str | Path) -> LoadedSuite:
    """Read and validate a suite (a path, or the name of a bundled one such as ``smoke-v1``)."""
    import envs

    path = find_suite(name_or_path)
    source = str(path)
    raw = read_bounded(path, MAX_SUITE_BYTES, lambda problem: SuiteError(source, [problem]))
    data = parse_toml(raw, lambda problem: SuiteError(source, [problem]))
    try:
        suite = Suite.model_validate(data)
    except ValidationError as err:
        raise SuiteError(source, _format_errors(err)) from None
    except RecursionError:
        raise SuiteError(source, ["nested too deeply"]) from None
    problems = []
    for i, task in enumerate(suite.tasks):
        if task.env_id not in envs.ENV_IDS:
            try:
                envs.check_env_id(task.env_id)
            except envs.UnknownEnvError as exc:
                problems.append(f"tasks[{i}].env_id: {exc}")
            if task.layout is not None or any(v.layout is not None for v in task.variants):
                problems.append(f"tasks[{i}]: layouts apply to this package's envs only, not to {task.env_id}")
            continue
        for j, v in enumerate(task.variants):
            for where, ref in ((f"tasks[{i}].layout", task.layout), (f"tasks[{i}].variants[{j}].layout", v.layout)):
                if ref is None:
                    continue
                p = Path(ref)
                target = path.parent / p if not p.is_absolute() and (path.parent / p).exists() else ref
                try:
                    load_layout(target)
                except (LayoutError, FileNotFoundError) as exc:
                    problems.append(f"{where}: {str(exc).splitlines()[0]}")
            for key in v.env_kwargs:
                if key in ("layout", "render_mode"):
                    problems.append(f"tasks[{i}].variants[{j}].env_kwargs.{key}: set by the suite runner, not here")
            if "faults" in v.env_kwargs or "randomize" in v.env_kwargs:
                problems += _check_variation(path, i, j, task, v)
    if problems:
        raise SuiteError(source, problems)
    return LoadedSuite(suite, path, hashlib.sha256(raw).hexdigest())
