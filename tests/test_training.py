"""Training internals that the config documents as facts, checked on a slice of the real data."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from conftest import CONF_DIR


@pytest.fixture(scope="module")
def small_data(mnist_dir):
    from mnistlab.data import load_mnist, prepare

    return prepare(load_mnist(mnist_dir), val_split=0.1, limit=600, encoding="integer")


def _train(data, steps_per_execution: int, seed: int = 3):
    from mnistlab.build.model import build_model, compile_model
    from mnistlab.train.fit import train
    from mnistlab.train.runtime import seed_everything

    layers = yaml.safe_load((CONF_DIR / "model" / "tiny_cnn.yaml").read_text())["layers"]
    seed_everything(seed)
    model = build_model("tiny_cnn", layers, data.input_shape, 10)
    trainer = {"steps_per_execution": steps_per_execution, "jit_compile": False}
    compile_model(model, {"name": "adam", "lr": 0.01}, {"name": "crossentropy"}, trainer)
    epochs = []
    result = train(
        model,
        data,
        {"epochs": 2, "batch_size": 32, "verbose": 0},
        lambda epoch, metrics: epochs.append((epoch, sorted(metrics))),
    )
    return model, result, epochs


@pytest.mark.parametrize("steps_per_execution", [8, 32])
def test_steps_per_execution_changes_speed_not_results(small_data, steps_per_execution):
    """600 images / batch 32 = 19 steps, which neither 8 nor 32 divides: an epoch's last execution
    must still end at the epoch's end (it used to run on into the next epoch's batches: the same
    final weights, but every epoch's metrics, checkpoint and early-stopping decision taken at the
    wrong step). Weights and every epoch's metrics are bit-identical to one step per execution."""
    one, one_result, _ = _train(small_data, steps_per_execution=1)
    many, many_result, _ = _train(small_data, steps_per_execution=steps_per_execution)
    for a, b in zip(one.get_weights(), many.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    timed = ("epoch_time_s",)
    assert {k: v for k, v in many_result.history.items() if k not in timed} == {
        k: v for k, v in one_result.history.items() if k not in timed
    }


@pytest.mark.fast
def test_each_epoch_is_reported_with_time_and_learning_rate(small_data):
    _, result, epochs = _train(small_data, steps_per_execution=8)
    expected = ["accuracy", "epoch_time_s", "loss", "lr", "val_accuracy", "val_loss"]
    assert epochs == [(0, expected), (1, expected)]
    assert result.history["lr"] == [pytest.approx(0.01)] * 2
    assert result.train_time_s >= sum(result.history["epoch_time_s"]) > 0


@pytest.mark.parametrize(
    "loss",
    [{"name": "crossentropy"}, {"name": "mse"}, {"name": "crossentropy", "label_smoothing": 0.1}],
    ids=["ce", "mse", "ce_smoothed"],
)
def test_one_pass_evaluation_matches_keras_evaluate(mnist_dir, loss):
    """train.evaluate computes the test scores from predict(); Keras's evaluate() must agree."""
    from mnistlab.build.losses import label_encoding
    from mnistlab.build.model import build_model, compile_model
    from mnistlab.data import load_mnist, prepare
    from mnistlab.train.evaluate import evaluate
    from mnistlab.train.fit import train
    from mnistlab.train.runtime import seed_everything

    data = prepare(load_mnist(mnist_dir), val_split=0.1, limit=600, encoding=label_encoding(loss))
    layers = yaml.safe_load((CONF_DIR / "model" / "cnn32.yaml").read_text())["layers"]
    layers[3]["kernel_regularizer"] = "l2"  # a regularisation term belongs in the loss too
    seed_everything(5)
    model = build_model("cnn32", layers, data.input_shape, 10)
    compile_model(model, {"name": "sgd", "lr": 0.05}, loss, {"steps_per_execution": 1, "jit_compile": False})
    train(model, data, {"epochs": 1, "batch_size": 64, "verbose": 0}, lambda *_: None)
    scores, probabilities = evaluate(model, data, loss)
    keras_loss, keras_accuracy = model.evaluate(data.x_test, data.y_test, verbose=0)
    assert scores["test_accuracy"] == pytest.approx(keras_accuracy, abs=1e-6)
    assert scores["test_loss"] == pytest.approx(keras_loss, rel=1e-4)
    assert probabilities.shape == (10000, 10)


def test_evaluation_predicts_as_the_trained_model_does(small_data):
    """evaluate() predicts through its own traced function of the model, in batches of its own
    size: the probabilities are bit for bit those of the model's own predict() (its
    steps_per_execution, Keras's batch)."""
    from mnistlab.train.evaluate import evaluate

    model, _, _ = _train(small_data, steps_per_execution=8)
    _, probabilities = evaluate(model, small_data, {"name": "crossentropy"})
    expected = model.predict(small_data.x_test, batch_size=1024, verbose=0)
    np.testing.assert_array_equal(probabilities, expected)


@pytest.mark.parametrize("name", ["dense", "cnn"])
def test_prediction_in_mixed_bfloat16_is_keras_predict_bit_for_bit(small_data, name):
    """The models `trainer.precision=auto` trains in bfloat16 where the CPU computes it: the same
    probabilities as predict(), on 3,000 images (a last batch shorter than the others)."""
    import keras

    from mnistlab.build.model import build_model, compile_model
    from mnistlab.train.evaluate import predict
    from mnistlab.train.runtime import seed_everything, set_precision

    layers = yaml.safe_load((CONF_DIR / "model" / f"{name}.yaml").read_text())["layers"]
    policy = keras.mixed_precision.global_policy().name
    set_precision("mixed_bfloat16")
    try:
        seed_everything(2)
        model = build_model(name, layers, small_data.input_shape, 10)
        compile_model(
            model,
            {"name": "adam", "lr": 0.001},
            {"name": "crossentropy"},
            {"steps_per_execution": 32, "jit_compile": False},
        )
    finally:
        set_precision(policy)
    images = small_data.x_test[:3000]
    np.testing.assert_array_equal(predict(model, images), model.predict(images, verbose=0))


@pytest.mark.fast
def test_interrupts_wait_for_a_store_write_to_end():
    """Ctrl-C in the middle of a sqlite commit used to leave the run locked out of its own store
    (left RUNNING): inside interrupts.deferred the signal is held, then raised."""
    import os
    import signal

    from mnistlab.core.interrupts import deferred

    done = []
    with pytest.raises(KeyboardInterrupt), deferred():
        os.kill(os.getpid(), signal.SIGINT)
        done.append("the write went on")
    assert done == ["the write went on"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


def _swallowing_the_interrupt() -> None:
    """What TensorFlow sometimes does with a KeyboardInterrupt raised in Python code it called."""
    import os
    import signal

    try:
        os.kill(os.getpid(), signal.SIGINT)
    except KeyboardInterrupt:
        raise TypeError("Failed to convert elements of (None,) to Tensor") from None


@pytest.mark.fast
@pytest.mark.parametrize("signal_sent", [True, False])
def test_an_error_raised_after_ctrl_c_is_the_interrupt(signal_sent):
    """CI saw a sweep job end FAILED with TensorFlow's TypeError instead of KILLED: Ctrl-C had come
    out of fit() as another error. Within interrupts.raised, an error after a signal is the interrupt."""
    from mnistlab.core.interrupts import raised

    with pytest.raises(KeyboardInterrupt if signal_sent else TypeError) as caught, raised():
        if signal_sent:
            _swallowing_the_interrupt()
        raise TypeError("a real bug")
    if signal_sent:
        assert isinstance(caught.value.__cause__, TypeError)
    with pytest.raises(TypeError):  # the signal is forgotten when the block ends
        with raised():
            raise TypeError("a real bug")


@pytest.mark.fast
def test_a_signal_whose_interrupt_was_swallowed_stops_at_the_next_check():
    """CI saw a SIGTERMed run train on to FINISHED (exit 0): the interrupt had been raised where it
    was discarded. The epoch-end check (interrupts.check, in every run's epoch callback) raises it."""
    import os
    import signal

    from mnistlab.core.errors import Terminated
    from mnistlab.core.interrupts import check, raised

    check()  # nothing received: nothing raised
    with pytest.raises(Terminated), raised():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except Terminated:
            pass  # what the code that swallowed it did
        check()
    check()  # forgotten once the block ends


@pytest.mark.fast
def test_each_epochs_batches_come_from_seed_and_epoch_alone():
    """shuffled_batches: every epoch is a permutation of the images (the last batch short), epoch 2
    of a pipeline started at epoch 0 is epoch 2 of one started there (a resume), another seed
    shuffles otherwise; and tf.data's per-epoch graph rewrites stay off (they cost each epoch)."""
    from mnistlab.train.pipeline import shuffled_batches

    x = np.arange(50, dtype=np.float32).reshape(50, 1)  # synthetic: each image is its own index
    y = np.arange(50)

    def epochs(seed: int, first: int, count: int) -> list[list[list[int]]]:
        dataset = shuffled_batches(x, y, 16, seed, first)
        return [[b.tolist() for b in (labels.numpy() for _, labels in dataset)] for _ in range(count)]

    run = epochs(7, 0, 3)
    for batches in run:
        assert [len(b) for b in batches] == [16, 16, 16, 2]
        assert sorted(i for b in batches for i in b) == list(range(50))
    assert run[0] != run[1] != run[2]
    assert epochs(7, 2, 1)[0] == run[2]
    assert epochs(8, 0, 1)[0] != run[0]
    assert shuffled_batches(x, y, 16, 7, 0).options().experimental_optimization.apply_default_optimizations is False
