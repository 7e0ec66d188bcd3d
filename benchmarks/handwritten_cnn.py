"""The default experiment written by hand in plain Keras, as a reference for run.py's speed.

Same data split, layers, optimizer, epochs and batch size as `python run.py`; no MLflow, no
Hydra, Keras's default steps_per_execution. Only the IDX parsing is borrowed from mnistlab.
Prints one JSON line: test accuracy and timings.
"""

import argparse
import json
import os
import time

start = time.perf_counter()
import keras  # noqa: E402

from mnistlab.data import load_mnist, prepare  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--seed", type=int, default=42)
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--batch-size", type=int, default=128)
args = parser.parse_args()

data = prepare(load_mnist(os.environ["MNIST_DIR"]), val_split=0.1, limit=None, encoding="integer")
keras.utils.set_random_seed(args.seed)
model = keras.Sequential([
    keras.Input((28, 28, 1)),
    keras.layers.Conv2D(64, 3, activation="relu"),
    keras.layers.MaxPooling2D(2),
    keras.layers.Flatten(),
    keras.layers.Dense(128, activation="relu"),
    keras.layers.Dropout(0.2),
    keras.layers.Dense(64, activation="relu"),
    keras.layers.Dense(10, activation="softmax"),
])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=False)
fit_start = time.perf_counter()
model.fit(data.x_train, data.y_train, batch_size=args.batch_size, epochs=args.epochs,
          validation_data=(data.x_val, data.y_val), verbose=0)
train_time = time.perf_counter() - fit_start
loss, accuracy = model.evaluate(data.x_test, data.y_test, verbose=0)
print(json.dumps({"test_accuracy": accuracy, "train_time_s": train_time, "wall_time_s": time.perf_counter() - start}))
