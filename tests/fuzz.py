"""Mutations of valid input files for the fuzz tests: types, magnitudes, nesting, encodings,
truncation. Deterministic: every mutant comes from a fixed seed."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from typing import Any

# What a leaf value is replaced with: other types, absurd magnitudes, non-finite numbers.
REPLACEMENTS: list[Any] = [
    "x",
    "",
    True,
    [],
    {},
    [1, 2, 3, 4, 5, 6, 7, 8],
    0,
    -1,
    2**63 - 1,
    -(2**63),
    1e308,
    -1e308,
    1e-308,
    1e9,
    float("nan"),
    float("inf"),
    "\u202e\u0000" * 3,
    "z" * 5000,
]


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() and k.isascii() else json.dumps(k)


def to_toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(to_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {to_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def to_toml(data: dict[str, Any]) -> str:
    """TOML with every value inline (enough for the mutants)."""
    return "".join(f"{_key(k)} = {to_toml_value(v)}\n" for k, v in data.items())


def _leaves(data: Any, path: tuple = ()) -> Iterator[tuple]:
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(data, list) and data and isinstance(data[0], dict | list):
        for i, v in enumerate(data):
            yield from _leaves(v, (*path, i))
    else:
        yield path


def _replace(data: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(data, dict):
        return {k: (_replace(v, rest, value) if k == head else v) for k, v in data.items()}
    return [(_replace(v, rest, value) if i == head else v) for i, v in enumerate(data)]


def _scaled(v: Any, factor: float) -> Any:
    if isinstance(v, bool) or not isinstance(v, int | float | list):
        return None
    if isinstance(v, list):
        if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in v):
            return None
        return [x * factor for x in v]
    return v * factor


def _get(data: Any, path: tuple) -> Any:
    for p in path:
        data = data[p]
    return data


def structured_mutants(data: dict[str, Any], seed: int = 0, per_leaf: int = 4) -> Iterator[tuple[str, str]]:
    """(label, TOML text): every leaf replaced by other types and scaled by absurd factors,
    whole tables removed, lists made huge or nested deep."""
    rng = random.Random(seed)
    for path in _leaves(data):
        where = ".".join(map(str, path))
        for value in rng.sample(REPLACEMENTS, per_leaf):
            yield f"{where} = {value!r:.30}", to_toml(_replace(data, path, value))
        for factor in (1e9, -1.0, 0.0):
            scaled = _scaled(_get(data, path), factor)
            if scaled is not None:
                yield f"{where} * {factor:g}", to_toml(_replace(data, path, scaled))
        yield f"{where} nested", to_toml(_replace(data, path, [[[[[[1.0]]]]]]))
    for key in data:
        yield f"without {key}", to_toml({k: v for k, v in data.items() if k != key})
        value = data[key]
        if isinstance(value, list) and value:
            yield f"{key} x 300", to_toml({**data, key: value * 300})
    yield "unknown key", to_toml({**data, "unknown_key": 1})


def text_mutants(text: str, seed: int = 0, count: int = 60) -> Iterator[tuple[str, bytes]]:
    """(label, file bytes): truncations, flipped bytes, invalid UTF-8, deep nesting, a BOM, huge files."""
    rng = random.Random(seed)
    raw = text.encode()
    for _ in range(count // 3):
        cut = rng.randrange(len(raw))
        yield f"truncated at {cut}", raw[:cut]
    for _ in range(count // 3):
        b = bytearray(raw)
        i = rng.randrange(len(b))
        b[i] = rng.randrange(256)
        yield f"byte {i} set to {b[i]:#04x}", bytes(b)
    for _ in range(count // 6):
        i = rng.randrange(len(raw))
        yield f"invalid UTF-8 at {i}", raw[:i] + b"\xff\xfe\xc3" + raw[i:]
    line = rng.choice([ln for ln in text.splitlines() if "=" in ln and not ln.lstrip().startswith("#")])
    key = line.split("=")[0].strip()
    for depth in (100, 1000, 100_000):
        yield f"{key} nested {depth} deep (arrays)", (text + f"\nx{depth} = " + "[" * depth + "]" * depth).encode()
        yield (
            f"{key} nested {depth} deep (tables)",
            (text + f"\ny{depth} = " + "{a = " * depth + "1" + "}" * depth).encode(),
        )
    yield "BOM", b"\xef\xbb\xbf" + raw
    yield "UTF-16", text.encode("utf-16")
    yield "empty", b""
    yield "NUL bytes", raw.replace(b"\n", b"\x00\n", 3)
    yield "2 MiB of comments", raw + b"#" * (2 * 2**20) + b"\n"
