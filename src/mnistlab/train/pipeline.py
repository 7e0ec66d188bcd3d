"""The input pipeline: each epoch's batches in an order drawn from (seed, epoch) alone."""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf


def shuffled_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, first_epoch: int):
    """One epoch of batches, in an order drawn from (seed, epoch) alone: epoch 7 has the same
    batches whether or not the run stopped at epoch 5. (Keras's own shuffle continues one
    generator across epochs, which a resumed fit restarts.)

    Keras iterates it once per epoch (the dataset's cardinality is the epoch's steps): with
    steps_per_execution > 1 an epoch's last execution then ends at the epoch's last batch, where
    one long stream of all epochs' batches let it run on into the next epoch's. Each pass takes
    the next epoch number from a counter in the pipeline, starting at ``first_epoch``.
    Like Keras's array adapter: the arrays enter once, each batch is a gather; the last one may be short.
    Also like it, tf.data's default graph rewrites are off: they ran at each epoch's new iterator,
    over a graph that holds the arrays, delaying the epoch's first batch, and change no batch."""
    n = len(x)
    full = n // batch_size * batch_size
    steps = math.ceil(n / batch_size)
    epochs_started = tf.Variable(first_epoch - 1, dtype=tf.int64, trainable=False)
    images, labels = tf.constant(x), tf.constant(y)  # in once; each pass only gathers from them

    def epoch_batches(_: tf.Tensor) -> tf.data.Dataset:
        epoch = epochs_started.assign_add(1)  # once per pass over the dataset
        order = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), seed=tf.stack([tf.constant(seed, tf.int64), epoch])
        )
        batches = tf.data.Dataset.from_tensor_slices(tf.reshape(order[:full], (-1, batch_size)))
        return batches.concatenate(tf.data.Dataset.from_tensors(order[full:])) if full < n else batches

    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = False
    return (
        tf.data.Dataset.from_tensors(0)
        .flat_map(epoch_batches)
        .apply(tf.data.experimental.assert_cardinality(steps))
        .map(lambda i: (tf.gather(images, i), tf.gather(labels, i)), num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
        .with_options(options)
    )
