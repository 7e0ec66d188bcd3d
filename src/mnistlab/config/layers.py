"""A model's layers checked without Keras: each type against Keras's layer classes and the argument
names they take (keras_layers.json, written by build/layer_table.py), and the model's size
estimated layer by layer, so that a typo or a model that cannot fit in memory is refused before
the data loads and TensorFlow starts."""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from mnistlab.core.errors import ConfigError

TABLE = Path(__file__).with_name("keras_layers.json")
#: layers that keep the shape and hold no parameters
SHAPE_KEEPING = {
    "Activation",
    "ReLU",
    "LeakyReLU",
    "ELU",
    "Softmax",
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
    "Rescaling",
    "Identity",
    "ActivityRegularization",
    "RandomRotation",
    "RandomTranslation",
    "RandomZoom",
    "RandomFlip",
    "RandomContrast",
    "RandomBrightness",
}
BYTES_PER_PARAM = 4 * 4  # float32 weights, their gradients, and two optimizer slots (Adam's moments)


@cache
def keras_layers() -> dict[str, dict]:
    return json.loads(TABLE.read_text())["layers"]


def check_layer(key: str, layer: Mapping[str, Any]) -> None:
    """The type is a keras.layers class, every argument one it takes, the required ones given."""
    classes = keras_layers()
    layer_type = layer["type"]
    if layer_type not in classes:
        close = difflib.get_close_matches(layer_type, classes, n=3)
        hint = f"did you mean {' or '.join(close)}?" if close else "see keras.io/api/layers"
        raise ConfigError(f"{key}.type", f"not a keras.layers class; {hint}", layer_type)
    known = classes[layer_type]
    for arg in layer:
        if arg != "type" and arg not in known["args"]:
            close = difflib.get_close_matches(arg, known["args"], n=1)
            hint = f"did you mean {close[0]}?" if close else f"it takes {', '.join(known['args'])}"
            raise ConfigError(f"{key}.{arg}", f"{layer_type} has no argument {arg!r}; {hint}", layer[arg])
    missing = [arg for arg in known["required"] if arg not in layer]
    if missing:
        raise ConfigError(key, f"{layer_type} needs {', '.join(missing)}", dict(layer))


def estimate(layers: Sequence[Mapping[str, Any]], input_shape: tuple[int, ...]) -> list[tuple[int, int]] | None:
    """(parameters, output elements per image) of each layer, or None when a layer's size cannot be
    told without building it (a type this estimate does not know, or arguments it cannot read)."""
    shape, sizes = tuple(input_shape), []
    for layer in layers:
        try:
            params, shape = _layer(dict(layer), shape)
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            return None
        if params is None:
            return None
        sizes.append((params, math.prod(shape)))
    return sizes


def _tuple(value: Any, n: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (list, tuple)) else (int(value),) * n


def _conv_out(size: int, kernel: int, stride: int, padding: str, dilation: int = 1) -> int:
    if padding == "same":
        return math.ceil(size / stride)
    return max(0, (size - dilation * (kernel - 1) - 1) // stride + 1)


def _layer(spec: dict, shape: tuple[int, ...]) -> tuple[int | None, tuple[int, ...]]:
    kind = spec["type"]
    if kind in SHAPE_KEEPING:
        return 0, shape
    if kind == "Flatten":
        return 0, (math.prod(shape),)
    if kind == "Reshape":
        return 0, tuple(spec["target_shape"])
    if kind == "Dense":
        units = int(spec["units"])
        return shape[-1] * units + (units if spec.get("use_bias", True) else 0), (*shape[:-1], units)
    if kind in ("Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2D", "SeparableConv2D"):
        n = len(shape) - 1
        kernel, strides = _tuple(spec["kernel_size"], n), _tuple(spec.get("strides", 1), n)
        dilation = _tuple(spec.get("dilation_rate", 1), n)
        padding, channels = spec.get("padding", "valid"), shape[-1]
        spatial = tuple(_conv_out(s, k, st, padding, d) for s, k, st, d in zip(shape[:-1], kernel, strides, dilation))
        bias = spec.get("use_bias", True)
        if kind == "DepthwiseConv2D":
            out = channels * int(spec.get("depth_multiplier", 1))
            return math.prod(kernel) * out + (out if bias else 0), (*spatial, out)
        filters = int(spec["filters"])
        if kind == "SeparableConv2D":
            depth = channels * int(spec.get("depth_multiplier", 1))
            return math.prod(kernel) * depth + depth * filters + (filters if bias else 0), (*spatial, filters)
        groups = int(spec.get("groups", 1))
        return math.prod(kernel) * channels // groups * filters + (filters if bias else 0), (*spatial, filters)
    if kind.startswith(("MaxPooling", "AveragePooling")):
        n = len(shape) - 1
        pool = _tuple(spec.get("pool_size", 2), n)
        strides = _tuple(spec.get("strides") or pool, n)
        padding = spec.get("padding", "valid")
        return 0, (*(_conv_out(s, p, st, padding) for s, p, st in zip(shape[:-1], pool, strides)), shape[-1])
    if kind.startswith(("GlobalAveragePooling", "GlobalMaxPooling")):
        return 0, (shape[-1],)
    if kind == "BatchNormalization":
        return shape[-1] * (2 + spec.get("center", True) + spec.get("scale", True)), shape
    if kind == "LayerNormalization":
        return shape[-1] * (spec.get("center", True) + spec.get("scale", True)), shape
    return None, shape


def available_memory() -> int | None:
    """Bytes this machine has available now (Linux), else None."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_size(
    layers: Sequence[Mapping[str, Any]], input_shape: tuple[int, ...], batch_size: int, max_params: int
) -> None:
    """Refuse a model above ``max_params`` parameters, or one whose training would need more memory
    than the machine has (weights, gradients, optimizer state, and a batch's activations twice)."""
    sizes = estimate(layers, input_shape)
    if sizes is None:
        return
    total = sum(params for params, _ in sizes)
    largest = max(range(len(sizes)), key=lambda i: sizes[i][0])
    where = _describe(largest, layers[largest])
    need = total * BYTES_PER_PARAM + 2 * 4 * batch_size * sum(elements for _, elements in sizes)
    if total > max_params:
        raise ConfigError(
            where,
            f"the model would have {total:,} parameters, more than model.max_params="
            f"{max_params:,} (training it would need about {_bytes(need)}); raise model.max_params "
            "if you mean it",
        )
    free = available_memory()
    if free is not None and need > free:
        raise ConfigError(
            where,
            f"training this model ({total:,} parameters, batch {batch_size}) would need about "
            f"{_bytes(need)}, more than the {_bytes(free)} this machine has available; make the "
            "layers or trainer.batch_size smaller",
        )


def _describe(index: int, layer: Mapping[str, Any]) -> str:
    size_arg = next((arg for arg in ("units", "filters") if arg in layer), None)
    return f"model.layers.{index}.{size_arg}={layer[size_arg]!r}" if size_arg else f"model.layers.{index}"


def _bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} TiB"
