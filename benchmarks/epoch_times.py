"""The per-epoch clock of the plain-Keras benchmarks: the same span run.py's epoch_time_s covers
(epoch begin to epoch end, validation included), without any mnistlab code."""

import time

import keras


class EpochTimes(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start)
