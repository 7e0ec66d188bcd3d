"""The published baselines written by hand in plain Keras: the reference run.py is timed against.

Same data split, layers, optimizer (Keras's defaults unless --lr), loss, epochs, batch size and
seed as the matching preset; no Hydra, no MLflow, no mnistlab callbacks. Only the IDX parsing is borrowed
from mnistlab (the same arrays, so the same data). Prints one JSON line: test accuracy, the time
of every epoch (validation included, as run.py's epoch_time_s) and the start-up costs.

    MNIST_DIR=... python benchmarks/plain_keras.py --model cnn --optimizer adam --loss crossentropy \
        --epochs 5 --batch-size 32
"""

import argparse
import json
import os
import time

start = time.perf_counter()
import keras  # noqa: E402
import numpy as np  # noqa: E402

from epoch_times import EpochTimes  # noqa: E402
from mnistlab.data import load_mnist, prepare  # noqa: E402

import_time = time.perf_counter() - start
L = keras.layers


def cnn_bn(first: int, second: int) -> list:
    """Two batch-normalised 3x3 convolutions of ``first`` and ``second`` filters, then a dense 128 head."""
    return [
        L.Conv2D(first, 3, use_bias=False),
        L.BatchNormalization(),
        L.ReLU(),
        L.MaxPooling2D(2),
        L.Conv2D(second, 3, use_bias=False),
        L.BatchNormalization(),
        L.ReLU(),
        L.MaxPooling2D(2),
        L.Flatten(),
        L.Dense(128, use_bias=False),
        L.BatchNormalization(),
        L.ReLU(),
        L.Dropout(0.3),
    ]


def model(name: str) -> list:
    """The architectures of conf/model/, as one would type them. Only the chosen model's layers
    are created: creating a layer can draw from the random generators (Dropout's seed), and the
    weights must start from the same draws as in run.py."""
    body = {
        "cnn": lambda: [
            L.Conv2D(64, 3, activation="relu"),
            L.MaxPooling2D(2),
            L.Flatten(),
            L.Dense(128, activation="relu"),
            L.Dropout(0.2),
            L.Dense(64, activation="relu"),
        ],
        "cnn32": lambda: [
            L.Conv2D(32, 3, activation="relu"),
            L.MaxPooling2D(2),
            L.Flatten(),
            L.Dense(128, activation="relu"),
        ],
        "cnn_bn": lambda: cnn_bn(32, 64),
        "cnn_bn16": lambda: cnn_bn(16, 32),
        "dense": lambda: [L.Flatten(), L.Dense(512, activation="relu"), L.Dense(512, activation="relu")],
        "dense512": lambda: [L.Flatten(), L.Dense(512, activation="relu")],
        "mlp12": lambda: [
            L.Flatten(),
            L.Dense(12, activation="relu"),
            L.Dense(12, activation="relu"),
            L.Dense(12, activation="relu"),
        ],
        "tiny_cnn": lambda: [
            L.Conv2D(5, 2, padding="same", activation="relu"),
            L.MaxPooling2D(2),
            L.Conv2D(5, 2, padding="same", activation="relu"),
            L.Flatten(),
            L.Dropout(0.5),
        ],
    }[name]()
    return [*body, L.Dense(10, activation="softmax", dtype="float32")]  # float32 output, also under mixed precision


parser = argparse.ArgumentParser()
parser.add_argument("--model", default="cnn")
parser.add_argument("--optimizer", default="adam", choices=["adam", "sgd", "rmsprop"])
parser.add_argument("--loss", default="crossentropy", choices=["crossentropy", "mse"])
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--batch-size", type=int, default=128)
parser.add_argument("--seed", type=int, default=42)
parser.add_argument("--precision", default="float32", choices=["float32", "mixed_bfloat16"])
parser.add_argument("--val-split", type=float, default=0.1, help="as data.val_split: 0 trains on all 60,000 images")
parser.add_argument("--lr", type=float, help="learning rate (the peak of --schedule onecycle); unset: Keras's default")
parser.add_argument("--schedule", default="constant", choices=["constant", "onecycle"])
parser.add_argument("--label-smoothing", type=float, default=0.0)
parser.add_argument("--limit", type=int, help="as data.limit: the first N training images left after the split")
args = parser.parse_args()

data_start = time.perf_counter()
raw = load_mnist(os.environ["MNIST_DIR"])
data = prepare(raw, val_split=args.val_split, limit=args.limit, encoding="integer")
data_time = time.perf_counter() - data_start
y_train, y_val, y_test = data.y_train, data.y_val, data.y_test
loss = "sparse_categorical_crossentropy"
if args.loss == "mse" or args.label_smoothing:  # Keras smooths one-hot labels only
    y_train, y_val, y_test = (keras.utils.to_categorical(y, 10) for y in (y_train, y_val, y_test))
    loss = (
        keras.losses.CategoricalCrossentropy(label_smoothing=args.label_smoothing)
        if args.loss == "crossentropy"
        else "mean_squared_error"
    )


def learning_rate(steps: int) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """One cycle as Keras writes it: a linear warmup over 30% of the steps from lr / 25 up to lr,
    then a cosine down to lr / 250,000."""
    if args.schedule == "constant":
        return args.lr
    warmup = round(0.3 * steps)
    return keras.optimizers.schedules.CosineDecay(
        args.lr / 25, decay_steps=steps - warmup, alpha=1 / 250_000, warmup_target=args.lr, warmup_steps=warmup
    )


keras.utils.set_random_seed(args.seed)
keras.mixed_precision.set_global_policy(args.precision)
net = keras.Sequential([keras.Input((28, 28, 1)), *model(args.model)])
optimizer = args.optimizer
if args.lr is not None:
    steps = -(-len(data.x_train) // args.batch_size) * args.epochs
    optimizer = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop}[
        args.optimizer
    ](learning_rate=learning_rate(steps))
net.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"], jit_compile=False)
timer = EpochTimes()
fit_start = time.perf_counter()
history = net.fit(
    data.x_train,
    y_train,
    batch_size=args.batch_size,
    epochs=args.epochs,
    validation_data=(data.x_val, y_val) if len(data.x_val) else None,
    verbose=0,
    callbacks=[timer],
)
train_time = time.perf_counter() - fit_start
test_start = time.perf_counter()
probabilities = net.predict(data.x_test, batch_size=1024, verbose=0)
accuracy = float(np.mean(probabilities.argmax(axis=1) == raw.y_test))
test_time = time.perf_counter() - test_start
print(
    json.dumps(
        {
            "test_accuracy": accuracy,
            "train_accuracy": history.history["accuracy"][-1],
            "epoch_times": timer.times,
            "train_time_s": train_time,
            "import_time_s": import_time,
            "data_time_s": data_time,
            "test_time_s": test_time,
            "wall_time_s": time.perf_counter() - start,
        }
    )
)
