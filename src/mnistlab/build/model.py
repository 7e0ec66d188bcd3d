"""Build a Keras model from its YAML description: a list of keras.layers classes and arguments.

Architectures are data. A new one is a new file under conf/model/, never new code here.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterable, Mapping
from typing import Any

import keras

from mnistlab.build.losses import make_loss
from mnistlab.build.optimizers import LearningRate, make_optimizer
from mnistlab.core.errors import ConfigError, one_line


def layer_classes() -> dict[str, type]:
    """Every public keras.layers class, by name."""
    return {
        name: obj
        for name, obj in vars(keras.layers).items()
        if inspect.isclass(obj) and issubclass(obj, keras.layers.Layer) and not name.startswith("_")
    }


def build_model(
    name: str, layers: Iterable[Mapping[str, Any]], input_shape: tuple[int, ...], num_classes: int
) -> keras.Sequential:
    """A Sequential stack; each config error names the layer (model.layers.N) that caused it.

    Under a mixed-precision policy the last layer computes in float32 (Keras's advice: the
    softmax and the loss stay accurate), unless its config names a dtype."""
    classes = layer_classes()
    mixed = keras.mixed_precision.global_policy().compute_dtype != "float32"
    model = keras.Sequential(name=name)
    model.add(keras.Input(shape=input_shape))
    for i, spec in enumerate(layers):
        kwargs = dict(spec)
        layer_type = kwargs.pop("type")
        key = f"model.layers.{i}"
        if mixed and i == len(layers) - 1:
            kwargs.setdefault("dtype", "float32")
        if layer_type not in classes:
            close = difflib.get_close_matches(layer_type, classes, n=3)
            hint = f"did you mean {' or '.join(close)}?" if close else "see keras.io/api/layers"
            raise ConfigError(f"{key}.type", f"not a keras.layers class; {hint}", layer_type)
        try:
            model.add(classes[layer_type](**kwargs))
        except (TypeError, ValueError) as exc:
            raise ConfigError(key, f"Keras refused this {layer_type}: {one_line(exc, 300)}", dict(spec)) from None
    if model.output_shape[-1] != num_classes or len(model.output_shape) != 2:
        raise ConfigError(
            "model.layers",
            f"the model outputs shape {model.output_shape[1:]}, expected "
            f"({num_classes},): one probability per class (did you forget Flatten?)",
        )
    return model


def summary_text(model: keras.Model) -> str:
    lines: list[str] = []
    model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line))
    return "\n".join(lines) + "\n"


def compile_model(
    model: keras.Model, opt: Mapping, loss: Mapping, trainer: Mapping, learning_rate: LearningRate | None = None
) -> None:
    """The optimizer (with its schedule), the loss and the accuracy metric; Keras's execution settings."""
    model.compile(
        optimizer=make_optimizer(opt, learning_rate),
        loss=make_loss(loss),
        metrics=["accuracy"],
        steps_per_execution=trainer["steps_per_execution"],
        jit_compile=trainer["jit_compile"],
    )
