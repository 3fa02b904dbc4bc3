"""A config or a trial's hyperparameters as MLflow params: flattened, keys cleaned, values cut to MLflow's limits
(a tracking call must not crash a search), and the small encoders the tracker shares."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from mlflow.utils.validation import MAX_ENTITY_KEY_LENGTH, MAX_PARAM_VAL_LENGTH

# Keys longer than MLflow's limit are cut and get this many hex chars of the full key's hash, so two long keys
# with the same prefix stay distinct params.
_KEY_HASH_CHARS = 8
# What MLflow accepts in param / metric / tag keys (mlflow.utils.validation, non-Windows rule). Anything else
# (brackets, commas, "=") is replaced by "_" rather than raised: a tracking call must not crash a search.
_INVALID_KEY_CHARS = re.compile(r"[^/\w.\- :]")


def to_plain(obj: Any) -> Any:
    """A JSON/YAML-safe copy of `obj`: numpy scalars and arrays, tuples, sets and paths become plain types."""
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_plain(v) for v in obj]
    if isinstance(obj, set | frozenset):
        return sorted((to_plain(v) for v in obj), key=repr)
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, Path):
        return str(obj)
    tolist = getattr(obj, "tolist", None)  # numpy arrays and scalars, torch tensors
    if callable(tolist):
        return to_plain(tolist())
    return str(obj)


def _is_scalar(obj: Any) -> bool:
    return obj is None or isinstance(obj, bool | int | float | str)


def _flatten_into(out: dict[str, Any], prefix: str, obj: Any) -> None:
    if isinstance(obj, Mapping):
        if not obj and prefix:
            out[prefix] = "{}"
        for k, v in obj.items():
            _flatten_into(out, f"{prefix}.{k}" if prefix else str(k), v)
    elif isinstance(obj, list) and not all(_is_scalar(v) for v in obj):
        # Lists of sections (e.g. the solvers to try) get one param per leaf, like nested dicts.
        for i, v in enumerate(obj):
            _flatten_into(out, f"{prefix}.{i}", v)
    else:
        # A list of numbers (a preference vector, a reference point) stays one readable param.
        out[prefix] = json.dumps(obj) if isinstance(obj, list) else obj


def sanitize_key(key: str) -> str:
    clean = _INVALID_KEY_CHARS.sub("_", key).strip("/") or "_"
    # MLflow also refuses keys that a path normalization would change ("a//b", "a/./b", "..").
    clean = re.sub(r"/+", "/", clean)
    clean = "/".join(part if part not in (".", "..") else part.replace(".", "_") for part in clean.split("/"))
    if len(clean) > MAX_ENTITY_KEY_LENGTH:
        digest = hashlib.sha1(key.encode()).hexdigest()[:_KEY_HASH_CHARS]
        clean = f"{clean[: MAX_ENTITY_KEY_LENGTH - _KEY_HASH_CHARS - 1]}-{digest}"
    return clean


def truncate_value(value: str, limit: int, where: str) -> str:
    if len(value) <= limit:
        return value
    note = f"...[truncated from {len(value)} chars; {where}]"
    return value[: limit - len(note)] + note


def flatten_params(config: Mapping[str, Any], *, full_value_in: str = "full value not logged") -> dict[str, str]:
    """Flatten a nested config into MLflow params: `{"solver": {"lr": 0.1}}` -> `{"solver.lr": "0.1"}`.

    Why flatten: the MLflow UI compares and filters runs by params, which are flat strings. Nested dicts and
    lists of dicts become dotted keys (`solvers.0.name`); lists of scalars stay one JSON param. MLflow's limits
    are applied here rather than left to MLflow (which raises on long keys and, depending on an env var,
    raises or silently cuts long values): keys with characters MLflow refuses get "_" instead, keys over
    250 chars are cut and suffixed with a hash, values over 6000 chars are cut with a note naming
    `full_value_in` (where the untruncated value can be found).
    """
    flat: dict[str, Any] = {}
    _flatten_into(flat, "", to_plain(config))
    out: dict[str, str] = {}
    for key, value in flat.items():
        clean = sanitize_key(key)
        if clean in out:  # two keys that differ only in refused characters
            clean = sanitize_key(f"{clean}-{hashlib.sha1(key.encode()).hexdigest()[:_KEY_HASH_CHARS]}")
        out[clean] = truncate_value(str(value), MAX_PARAM_VAL_LENGTH, full_value_in)
    return out


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def quote_filter_value(value: str) -> str:
    """Quote a value for an MLflow filter string (which has no escape character: pick the unused quote)."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(f"Cannot search MLflow for a value containing both quote characters. Found {value!r}.")


def json_default(obj: Any) -> Any:
    """`json.dumps` fallback for what configs and fronts carry besides plain types (numpy, paths, sets)."""
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, set | frozenset):
        return sorted(obj, key=repr)
    tolist = getattr(obj, "tolist", None)  # numpy arrays and scalars, torch tensors
    if callable(tolist):
        return tolist()
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")
