"""Which optional extra each command needs, and the one-line refusal when it is not installed.

The base install runs the twin, the envs, ``twin play``, ``twin smoke`` and ``twin bench``;
``[eval]`` adds evaluation (results, reports, ONNX policies); ``[train]`` adds torch for training,
demonstrations, export and loading torch checkpoints; ``[telemetry]`` recording (Parquet);
``[ray]`` the Ray backend; ``[service]`` the evaluation service (``[postgres]`` its PostgreSQL
driver).
"""

from __future__ import annotations

import importlib.util

MODULE_EXTRA: dict[str, str] = {
    "torch": "train",
    "safetensors": "train",
    "onnx": "train",
    "onnxscript": "train",
    "tensorboard": "train",
    "pyarrow": "eval",
    "matplotlib": "eval",
    "onnxruntime": "eval",
    "ray": "ray",
    "tomli_w": "telemetry",
    "fastapi": "service",
    "uvicorn": "service",
    "sqlalchemy": "service",
    "alembic": "service",
    "httpx": "service",
    "psycopg": "postgres",
    "simpy": "line",
    "asyncua": "opcua",
}
"""Each optional top-level module and the extra that installs it."""


COMMAND_NEEDS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "envs": ("", (), ""),
    "smoke": ("", (), ""),
    "play": ("", (), "`--telemetry` needs [telemetry] (pyarrow)"),
    "record": ("telemetry", ("pyarrow",), ""),
    "fidelity": ("telemetry", ("pyarrow", "matplotlib"), ""),
    "replay": ("telemetry", ("pyarrow",), ""),
    "calibrate": ("telemetry", ("pyarrow", "matplotlib", "tomli_w"), ""),
    "layout": ("", (), ""),
    "bench": ("", (), ""),
    "demos": ("train", ("torch", "safetensors"), ""),
    "train": ("train", ("torch", "safetensors", "tensorboard", "matplotlib"), "`--backend ray` also needs [ray]"),
    "export": ("train", ("torch", "safetensors", "onnx", "onnxscript", "onnxruntime"), ""),
    "eval": (
        "eval",
        ("pyarrow", "matplotlib"),
        "ONNX policies need onnxruntime (in [eval]); a checkpoint folder needs [train]; `--backend ray` needs [ray]",
    ),
    "report": ("eval", ("matplotlib",), ""),
    "compare": ("", (), "`--plot` needs [eval] (matplotlib)"),
    "serve": (
        "service",
        ("fastapi", "uvicorn", "sqlalchemy", "alembic", "onnxruntime"),
        "PostgreSQL needs [postgres]",
    ),
    "worker": ("service", ("sqlalchemy", "alembic", "onnxruntime"), "PostgreSQL needs [postgres]"),
    "admin": ("service", ("sqlalchemy", "alembic"), "PostgreSQL needs [postgres]"),
    "submit": ("service", ("httpx",), ""),
    "line": ("", (), "`line run --mode des` needs [line] (simpy)"),
    "serve-opcua": ("opcua", ("asyncua",), ""),
    "sweep": ("line", ("simpy", "matplotlib"), "`--backend ray` needs [ray]; sweep.parquet needs pyarrow"),
}
"""Each ``twin`` command: the extra it needs (empty: the base install), the modules checked before
it runs, and what else some of its options need."""


class MissingExtra(Exception):
    """A command needs an optional extra that is not installed (exit 2, one line)."""

    def __init__(self, what: str, extra: str, missing: list[str] | None = None) -> None:
        self.what, self.extra, self.missing = what, extra, missing or []
        names = f" ({', '.join(self.missing)} not installed)" if self.missing else ""
        super().__init__(f'{what} needs the [{extra}] extra{names}: pip install "factory-twin[{extra}]"')


def installed(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(what: str, extra: str, modules: list[str] | None = None) -> None:
    """Raise MissingExtra unless every module of ``extra`` (or the ``modules`` given) is installed."""
    wanted = modules if modules is not None else [m for m, e in MODULE_EXTRA.items() if e == extra]
    missing = [m for m in wanted if not installed(m)]
    if missing:
        raise MissingExtra(what, extra, missing)


def require_command(command: str) -> None:
    """Raise MissingExtra unless what ``twin COMMAND`` needs is installed."""
    extra, modules, _ = COMMAND_NEEDS[command]
    if extra:
        require(f"twin {command}", extra, list(modules))


def from_import_error(what: str, exc: ModuleNotFoundError) -> MissingExtra | None:
    """The MissingExtra a ``ModuleNotFoundError`` of an optional module stands for, else None."""
    top = (exc.name or "").split(".")[0]
    extra = MODULE_EXTRA.get(top)
    return MissingExtra(what, extra, [top]) if extra else None
