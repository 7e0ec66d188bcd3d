"""Writes config/keras_layers.json: every public keras.layers class with the argument names it takes,
so that validation can check a model's layers without importing Keras (seconds). Rerun after a
Keras upgrade (a test compares the file with the installed Keras):

    python -m mnistlab.build.layer_table
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import keras

from mnistlab.build.model import layer_classes

TABLE = Path(__file__).resolve().parents[1] / "config" / "keras_layers.json"
#: what keras.layers.Layer takes beyond its signature (it pops these from its **kwargs)
LAYER_KWARGS = ("input_dim", "input_shape")


def describe(cls: type) -> dict:
    """The arguments ``cls`` takes (its own and those its bases' __init__ accept through **kwargs),
    the ones it requires, and the parameter-free shape it keeps for the size estimate."""
    args: list[str] = []
    required: list[str] = []
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        signature = inspect.signature(klass.__init__)
        params = list(signature.parameters.values())[1:]
        for p in params:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            if p.name not in args:
                args.append(p.name)
            if klass is cls and p.default is p.empty and p.kind != p.KEYWORD_ONLY:
                required.append(p.name)
        if klass is keras.layers.Layer or not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    if issubclass(cls, keras.layers.Layer):
        args += [name for name in LAYER_KWARGS if name not in args]
    return {"args": args, "required": required}


def table() -> dict:
    return {
        "keras": keras.__version__,
        "layers": {name: describe(cls) for name, cls in sorted(layer_classes().items())},
    }


def main() -> None:
    TABLE.write_text(json.dumps(table(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {TABLE}")


if __name__ == "__main__":
    main()
