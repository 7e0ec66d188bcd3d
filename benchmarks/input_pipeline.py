"""Benchmark the input pipeline: mnistlab's (training.shuffled_batches: the arrays enter once, each
epoch's order is drawn from (seed, epoch) so a resumed run sees the same batches, each batch is a
gather) against the NumPy arrays handed to Keras's fit() with shuffle=True (Keras's array adapter:
one random generator across epochs; what mnistlab did before resume existed) and a hand-built
in-memory tf.data pipeline (from_tensor_slices, shuffle, batch, prefetch). Writes the
`input_pipeline` section of RESULTS.md.

    MNIST_DIR=../shared/datasets/mnist python benchmarks/input_pipeline.py

Small models with small batches are where an input pipeline shows; both variants alternate.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import keras
import tensorflow as tf

from epoch_times import EpochTimes
from mnistlab.data import load_mnist, prepare
from mnistlab.train.pipeline import shuffled_batches
from results import machine, write_section

MODELS = {
    "mlp12": lambda: [keras.layers.Flatten(), *(keras.layers.Dense(12, activation="relu") for _ in range(3))],
    "dense512": lambda: [keras.layers.Flatten(), keras.layers.Dense(512, activation="relu")],
}


def epoch_time(model: str, batch: int, epochs: int, pipeline: str, data) -> float:
    keras.utils.set_random_seed(42)
    net = keras.Sequential([keras.Input((28, 28, 1)), *MODELS[model](), keras.layers.Dense(10, activation="softmax")])
    net.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    timer = EpochTimes()
    if pipeline == "arrays":
        net.fit(data.x_train, data.y_train, batch_size=batch, epochs=epochs, shuffle=True, verbose=0, callbacks=[timer])
    elif pipeline == "mnistlab":
        net.fit(
            shuffled_batches(data.x_train, data.y_train, batch, 42, 0),
            epochs=epochs,
            steps_per_epoch=-(-len(data.x_train) // batch),
            shuffle=False,
            verbose=0,
            callbacks=[timer],
        )
    else:
        ds = (
            tf.data.Dataset.from_tensor_slices((data.x_train, data.y_train))
            .shuffle(len(data.x_train), seed=42, reshuffle_each_iteration=True)
            .batch(batch)
            .prefetch(tf.data.AUTOTUNE)
        )
        net.fit(ds, epochs=epochs, verbose=0, callbacks=[timer])
    return statistics.median(timer.times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if not os.environ.get("MNIST_DIR"):
        sys.exit("set MNIST_DIR to the folder with the MNIST IDX files")
    data = prepare(load_mnist(os.environ["MNIST_DIR"]), val_split=0.1, limit=None, encoding="integer")
    lines = [
        f"Machine: {machine()}.",
        "",
        f"54,000 training images, {args.epochs} epochs per fit, per-epoch time = median of the epochs after "
        f"the first; {args.rounds} alternating rounds, each round's value listed.",
        "",
        "| model | batch | mnistlab: `shuffled_batches` (per-epoch order from seed and epoch) "
        "| NumPy arrays to fit(), shuffle=True | tf.data from_tensor_slices + shuffle + prefetch |",
        "|---|---|---|---|---|",
    ]
    for model, batch in (("mlp12", 32), ("dense512", 128)):
        times: dict[str, list[float]] = {"mnistlab": [], "arrays": [], "tf.data": []}
        for _ in range(args.rounds):
            for pipeline in times:
                times[pipeline].append(epoch_time(model, batch, args.epochs, pipeline, data))
                print(model, batch, pipeline, f"{times[pipeline][-1]:.2f} s", flush=True)
        cells = [", ".join(f"{t:.2f} s" for t in times[p]) for p in times]
        lines.append(f"| `{model}` | {batch} | {' | '.join(cells)} |")
    write_section("input_pipeline", "Input pipeline (`benchmarks/input_pipeline.py`)", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
