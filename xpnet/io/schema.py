"""What an xpnet checkpoint's metadata and arrays must hold, checked before anything is used.

Array names: ``layers.<i>.<W|b>`` (the parameters of layer ``i``), ``buffers.<i>.<name>`` (the
non-trainable buffers of layer ``i``, format version 2 on) and, in training checkpoints,
``optimizer.<j>.<state>`` (the optimizer state of parameter ``j``).

Format versions: 1 (xpnet 0.1.0) had no buffers; 2 adds them. A reader of version 2 reads both:
a version-1 file is simply one whose layers have no buffers.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..backend import resolve_backend
from ..errors import CheckpointError
from ..layers import Dense, Layer, layer_from_config
from .codec import FORMAT_NAME, is_int_list

__all__ = ["FORMAT_VERSION", "check_arrays", "check_metadata", "fail", "rebuild_layers"]

#: The version this release writes; it reads every version up to this one.
FORMAT_VERSION = 2
DTYPES = ("float32", "float64")
_SHA_RE = re.compile(r"[0-9a-f]{64}")
NAME_RE = re.compile(
    r"(layers|buffers|optimizer)\.(0|[1-9][0-9]{0,8})\.([A-Za-z_][A-Za-z0-9_]{0,63})"
)
_TOP_KEYS = {
    "format",
    "format_version",
    "xpnet_version",
    "dtype",
    "layers",
    "weights_sha256",
    "metadata_sha256",
    "training",
}
_TRAINING_KEYS = {"epoch", "history", "optimizer", "loss", "fit", "rng_state"}


def fail(path: Path, what: str) -> CheckpointError:
    """The error for a file that is not a valid checkpoint, naming the file and the reason."""
    return CheckpointError(f"xpnet: {path} is not a valid xpnet checkpoint: {what}")


def _typename(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def _get(d: dict[str, Any], key: str, kind: Any, where: str, path: Path) -> Any:
    if key not in d:
        raise fail(path, f"metadata field {where}{key} is missing")
    v = d[key]
    ok = (
        (isinstance(v, int) and not isinstance(v, bool))
        if kind is int
        else (isinstance(v, (int, float)) and not isinstance(v, bool))
        if kind is float
        else isinstance(v, kind)
    )
    if not ok:
        name = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise fail(path, f"metadata field {where}{key} must be {name}, got {_typename(v)}")
    return v


def _check_keys(d: dict[str, Any], allowed: set[str], where: str, path: Path) -> None:
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise fail(path, f"unknown metadata fields in {where or 'the top level'}: {unknown}")


def check_metadata(meta: Any, path: Path) -> None:
    """Check the metadata record's fields and types (not yet its digest or the arrays)."""
    if not isinstance(meta, dict):
        raise fail(path, f"the metadata must be a JSON object, got {_typename(meta)}")
    if meta.get("format") != FORMAT_NAME:
        raise fail(path, f"metadata field format must be {FORMAT_NAME!r}")
    version = _get(meta, "format_version", int, "", path)
    if version > FORMAT_VERSION:
        raise fail(
            path,
            f"format version {version} was written by a newer xpnet; this one "
            f"({__version__}) reads versions up to {FORMAT_VERSION}: upgrade xpnet",
        )
    if version < 1:
        raise fail(path, f"format version {version} is invalid")
    _check_keys(meta, _TOP_KEYS, "", path)
    _get(meta, "xpnet_version", str, "", path)
    dtype = _get(meta, "dtype", str, "", path)
    if dtype not in DTYPES:
        raise fail(path, f"metadata field dtype must be one of {DTYPES}, got {dtype!r}")
    for key in ("weights_sha256", "metadata_sha256"):
        if not _SHA_RE.fullmatch(_get(meta, key, str, "", path)):
            raise fail(path, f"metadata field {key} is not a SHA-256 hex digest")
    layers = _get(meta, "layers", list, "", path)
    for i, entry in enumerate(layers):
        where = f"layers[{i}]."
        if not isinstance(entry, dict):
            raise fail(path, f"metadata field layers[{i}] must be dict, got {_typename(entry)}")
        _check_keys(entry, {"kind", "config"}, f"layers[{i}]", path)
        _get(entry, "kind", str, where, path)
        config = _get(entry, "config", dict, where, path)
        for k, v in config.items():
            if not (v is None or isinstance(v, (str, int, float))):
                raise fail(path, f"metadata field {where}config.{k} must be a JSON scalar")
    if "training" in meta:
        _check_training(meta["training"], path)


def _check_training(t: Any, path: Path) -> None:
    if not isinstance(t, dict):
        raise fail(path, f"metadata field training must be dict, got {_typename(t)}")
    _check_keys(t, _TRAINING_KEYS, "training", path)
    w = "training."
    epoch = _get(t, "epoch", int, w, path)
    if epoch < 0:
        raise fail(path, f"metadata field training.epoch must be >= 0, got {epoch}")
    _get(t, "loss", str, w, path)
    fit = _get(t, "fit", dict, w, path)
    _check_keys(fit, {"batch_size", "shuffle"}, "training.fit", path)
    _get(fit, "batch_size", int, "training.fit.", path)
    _get(fit, "shuffle", bool, "training.fit.", path)
    rng = _get(t, "rng_state", dict, w, path)
    _get(rng, "bit_generator", str, "training.rng_state.", path)
    opt = _get(t, "optimizer", dict, w, path)
    _check_keys(opt, {"name", "hyperparameters", "steps"}, "training.optimizer", path)
    _get(opt, "name", str, "training.optimizer.", path)
    _get(opt, "hyperparameters", dict, "training.optimizer.", path)
    steps = _get(opt, "steps", list, "training.optimizer.", path)
    if not is_int_list(steps, max_len=1 << 20):
        raise fail(path, "metadata field training.optimizer.steps must be non-negative ints")
    history = _get(t, "history", dict, w, path)
    if history.get("epoch") != list(range(epoch)):
        raise fail(path, f"metadata field training.history.epoch must be [0, ..., {epoch - 1}]")
    for k, v in history.items():
        if not (isinstance(v, list) and len(v) == epoch):
            raise fail(path, f"metadata field training.history.{k} must list {epoch} values")
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
            raise fail(path, f"metadata field training.history.{k} must hold numbers")


def rebuild_layers(meta: dict[str, Any], path: Path) -> list[Layer]:
    """The (unbuilt) layers the metadata describes, each config checked to be canonical."""
    layers = []
    for i, entry in enumerate(meta["layers"]):
        try:
            layer = layer_from_config(entry["kind"], entry["config"])
        except (TypeError, ValueError) as exc:
            raise fail(path, f"layer {i} ({entry['kind']}) cannot be rebuilt: {exc}") from exc
        if layer.config() != entry["config"]:
            raise fail(path, f"layer {i} ({entry['kind']}) config is not canonical")
        layers.append(layer)
    return layers


def expected_arrays(
    layers: list[Layer], dtype: str
) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
    """Parameter and buffer names and shapes from the architecture alone.

    A Dense layer's shapes come from its config (its weights may be large); any other layer is
    built on the host, which for layers without big parameters costs nothing.
    """
    params: dict[str, tuple[int, ...]] = {}
    buffers: dict[str, tuple[int, ...]] = {}
    host = resolve_backend("numpy")
    for i, layer in enumerate(layers):
        if isinstance(layer, Dense):
            params[f"layers.{i}.W"] = (layer.in_features, layer.out_features)
            params[f"layers.{i}.b"] = (layer.out_features,)
            continue
        layer.build(host, dtype, np.random.default_rng(0))
        params.update({f"layers.{i}.{p.name}": tuple(p.shape) for p in layer.parameters()})
        buffers.update({f"buffers.{i}.{k}": tuple(v.shape) for k, v in layer.buffers().items()})
    return params, buffers


def check_arrays(meta: dict[str, Any], arrays: dict[str, np.ndarray], path: Path) -> None:
    """Check the arrays' names, shapes, dtypes and values against the recorded architecture."""
    for name in arrays:
        if not NAME_RE.fullmatch(name):
            raise fail(path, f"unexpected array name {name!r}")
    params, buffers = expected_arrays(rebuild_layers(meta, path), meta["dtype"])
    dtype = np.dtype(meta["dtype"])
    for prefix, expected in (("layers.", params), ("buffers.", buffers)):
        found = {k for k in arrays if k.startswith(prefix)}
        missing, extra = sorted(set(expected) - found), sorted(found - set(expected))
        if missing or extra:
            what = "parameters" if prefix == "layers." else "buffers"
            raise fail(
                path,
                f"the {what} do not match the architecture (missing {missing}, extra {extra})",
            )
    n_params = len(params)
    param_names = list(params)
    if "training" in meta and len(meta["training"]["optimizer"]["steps"]) != n_params:
        raise fail(path, f"training.optimizer.steps must have {n_params} entries")
    for name, a in arrays.items():
        if name.startswith("layers."):
            want = params[name]
        elif name.startswith("buffers."):
            want = buffers[name]
        else:
            if "training" not in meta:
                raise fail(path, f"optimizer array {name!r} in a file without training state")
            j = int(name.split(".")[1])
            if j >= n_params:
                raise fail(path, f"optimizer array {name!r} refers to a missing parameter")
            want = params[param_names[j]]
        if a.shape != want:
            raise fail(path, f"array {name!r} has shape {a.shape}, the architecture needs {want}")
        if a.dtype != dtype:
            raise fail(path, f"array {name!r} has dtype {a.dtype}, the model's is {dtype}")
        if not np.isfinite(a).all():
            raise fail(path, f"array {name!r} holds NaN or infinite values")
