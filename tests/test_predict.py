"""Using a trained model: ``mnistlab predict`` on image files rendered from the real MNIST test set,
its error cases, ``mnistlab promote`` into the registry, and the registered model served by a real
``mlflow models serve`` on 127.0.0.1, answering a ``curl``.

One real ``cnn`` is trained for the module (1 epoch on all 54,000 training images, ~40 s), beside a
worse ``mlp12`` that also logs a model and one that logs none, so that "the best run" is a choice.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import cli_env, error_lines, mlflow_client, run_cli
from mnistlab.data import images_for_model, load_mnist
from mnistlab.data.images import prepare, to_mnist
from servers import model_server

MNISTLAB = Path(sys.executable).parent / "mnistlab"  # the console script, installed beside python
RENDERED = 500


@dataclass(frozen=True)
class Trained:
    store: str
    cnn: str  # run ids
    mlp: str
    no_model: str
    test_accuracy: float  # the cnn's, on the 10,000 raw test arrays, as logged


def mnistlab(*args: str, store: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """The ``mnistlab`` command as a user types it, against ``store``."""
    return subprocess.run(
        [str(MNISTLAB), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(store),
        cwd=Path(store[len("sqlite:///") :]).parent if store else None,
    )


def _name(store: str, run_id: str) -> str:
    return mlflow_client(store).get_run(run_id).info.run_name


def _run_id(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return next(line.split()[2] for line in proc.stdout.splitlines() if line.startswith("MLflow run"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mnist_dir) -> Trained:
    store = f"sqlite:///{tmp_path_factory.mktemp('predict') / 'mlflow.db'}"
    cnn = _run_id(run_cli("model=cnn", "trainer.epochs=1", "trainer.verbose=0", store=store))
    mlp = _run_id(run_cli("model=mlp12", "data.limit=256", "trainer.verbose=0", store=store))  # later, worse
    no_model = _run_id(
        run_cli("model=mlp12", "data.limit=64", "trainer.verbose=0", "tracking.log_model=false", store=store)
    )
    accuracy = mlflow_client(store).get_run(cnn).data.metrics["test_accuracy"]
    return Trained(store, cnn, mlp, no_model, accuracy)


def render(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """An MNIST digit as someone might photograph or draw it: either polarity, padded off-centre,
    scaled up to 200x200, sometimes coloured ink on tinted paper."""
    pad = int(rng.integers(0, 50))
    top, left = int(rng.integers(0, pad + 1)), int(rng.integers(0, pad + 1))
    image = np.pad(digit, ((top, pad - top), (left, pad - left)))  # square: the aspect ratio is kept
    dark_on_light = bool(rng.integers(0, 2))
    if dark_on_light:
        image = 255 - image
    picture = Image.fromarray(image).resize((200, 200), Image.Resampling.BICUBIC)
    if rng.random() < 0.3:  # blue ink on yellowish paper, or yellow chalk on a blue board
        level = np.asarray(picture, dtype=np.float32)[..., None] / 255
        paper, ink = np.array([250, 240, 200]), np.array([20, 40, 160])
        light, dark = (paper, ink) if dark_on_light else (np.array([240, 220, 90]), np.array([20, 40, 110]))
        picture = Image.fromarray((dark + level * (light - dark)).astype(np.uint8), "RGB")
    return picture


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, mnist_dir) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """500 test images spread over the whole test set, saved as PNG (lossless) or JPEG (quality
    50-90): (files, their labels, the raw 28x28 arrays they came from)."""
    raw = load_mnist(mnist_dir)
    folder = tmp_path_factory.mktemp("rendered")
    rng = np.random.default_rng(6)
    indices = np.arange(0, len(raw.x_test), len(raw.x_test) // RENDERED)[:RENDERED]
    files = []
    for index in indices:
        picture = render(raw.x_test[index], rng)
        if rng.random() < 0.5:
            path = folder / f"{index:05d}.png"
            picture.save(path)
        else:
            path = folder / f"{index:05d}.jpg"
            picture.save(path, quality=int(rng.integers(50, 91)))
        files.append(path)
    return files, raw.y_test[indices], raw.x_test[indices]


def test_rendered_test_images_are_recognised_as_well_as_the_raw_arrays(trained, rendered, tmp_path, mnist_dir):
    files, labels, raw = rendered
    proc = mnistlab(
        "predict", *map(str, files), "--json", "--show", "--out", str(tmp_path / "seen"), store=trained.store
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    answer = json.loads(proc.stdout)
    # no --run/--model: the best FINISHED run with a model, not the latest one, and it says so
    assert answer["model"]["run_id"] == trained.cnn and trained.cnn in answer["model"]["description"]
    assert "the best FINISHED run with a model in experiment 'mnistlab'" in answer["model"]["description"]
    rows = answer["predictions"]
    assert [row["image"] for row in rows] == list(map(str, files)) and answer["errors"] == []
    for row in rows:
        probabilities = np.array(row["probabilities"])
        assert abs(probabilities.sum() - 1) < 1e-3 and row["digit"] == int(probabilities.argmax())
        assert [t["probability"] for t in row["top3"]] == sorted(probabilities)[::-1][:3]
        assert [probabilities[t["digit"]] for t in row["top3"]] == [t["probability"] for t in row["top3"]]
        assert row["probability"] == row["top3"][0]["probability"]
    # each photo's polarity was recognised (the paper is the light part in every other file)
    assert sum(row["inverted"] for row in rows) not in (0, len(rows))

    import mlflow.keras

    mlflow.set_tracking_uri(trained.store)
    model = mlflow.keras.load_model(f"runs:/{trained.cnn}/model")

    def accuracy(images: np.ndarray, expected: np.ndarray) -> float:
        return float((model.predict(images_for_model(images), verbose=0).argmax(1) == expected).mean())

    raw_accuracy = accuracy(raw, labels)
    rendered_accuracy = float((np.array([row["digit"] for row in rows]) == labels).mean())
    # the steps alone on all 10,000 raw test arrays (no rendering): what they cost the model, free of
    # the sampling noise of 500 images (about 0.7 points either way at this accuracy)
    test = load_mnist(mnist_dir)
    steps_accuracy = accuracy(np.stack([to_mnist(x)[0] for x in test.x_test]), test.y_test)
    print(
        f"\ncnn test accuracy on the 10,000 raw arrays {trained.test_accuracy:.4f} (after the preprocessing "
        f"steps {steps_accuracy:.4f}); on the {RENDERED} images: raw {raw_accuracy:.4f}, "
        f"rendered {rendered_accuracy:.4f}"
    )
    assert abs(rendered_accuracy - raw_accuracy) <= 0.01  # the same images, as raw arrays and as photos
    assert abs(steps_accuracy - trained.test_accuracy) <= 0.005

    # --show: the 28x28 image the model saw, as preprocess computes it, for every file
    for row in rows[:20]:
        seen = np.asarray(Image.open(row["seen_as"]))
        assert seen.shape == (28, 28) and np.array_equal(seen, prepare(row["image"]).pixels)


def test_the_table_names_the_model_and_the_top_three(trained, rendered):
    files, _labels, _ = rendered
    proc = mnistlab("predict", str(files[0]), str(files[1]), "--run", trained.mlp, store=trained.store)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"model: run {_name(trained.store, trained.mlp)!r} ({trained.mlp}), test accuracy ")
    assert lines[1].split() == ["image", "digit", "probability", "top-3"]
    for line, path in zip(lines[2:4], files[:2], strict=True):
        cells = line.split()
        assert cells[0] == str(path) and cells[1] == cells[3] and cells[2].endswith("%")  # digit = top-1
        assert len(cells) == 3 + 3 * 2  # three (digit, probability) pairs


@pytest.mark.fast
@pytest.mark.parametrize("variant", ["transparent", "wide canvas", "small", "exif rotated", "bmp"])
def test_preprocessing_gives_back_the_mnist_digit(variant, mnist_dir, tmp_path):
    """Cases the rendered set does not cover, on real test digits: no model needed."""
    digits = load_mnist(mnist_dir).x_test[:20]
    for index, digit in enumerate(digits):
        path = tmp_path / f"{index}.png"
        if variant == "transparent":  # a drawing app's export: black ink, alpha = ink, RGB black everywhere
            rgba = np.zeros((28, 28, 4), np.uint8)
            rgba[..., 3] = digit
            Image.fromarray(rgba, "RGBA").resize((140, 140), Image.Resampling.BICUBIC).save(path)
        elif variant == "wide canvas":  # off-centre on a 300x120 sheet
            sheet = np.full((120, 300), 235, np.uint8)
            sheet[30:86, 200:256] = 235 - np.asarray(Image.fromarray(digit).resize((56, 56))) * (235 / 255)
            Image.fromarray(sheet).save(path)
        elif variant == "small":  # smaller than MNIST's 20-pixel box: scaled up
            Image.fromarray(digit).resize((16, 16), Image.Resampling.LANCZOS).save(path)
        elif variant == "bmp":  # a Windows bitmap, 24-bit colour, dark on light
            path = tmp_path / f"{index}.bmp"
            Image.fromarray(255 - digit).convert("RGB").resize((84, 84)).save(path)
        else:  # stored sideways with an EXIF orientation tag, as phone cameras do
            exif = Image.Exif()
            exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
            Image.fromarray(np.rot90(255 - digit, 1)).resize((112, 112)).save(path, exif=exif)
        seen = prepare(path).pixels.astype(np.float32)
        # Pearson correlation with the original digit, allowing a shift of one pixel (the centre of
        # mass is rounded to a pixel): 1 is identical; two different test digits score 0.0-0.5
        correlation = max(
            np.corrcoef(np.roll(seen, (dy, dx), axis=(0, 1)).ravel(), digit.ravel())[0, 1]
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
        )
        assert correlation > 0.8, (variant, index, correlation)


def _bad_files(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    text = folder / "notes.png"
    text.write_text("not an image\n")
    Image.fromarray(np.full((64, 64), 255, np.uint8)).save(folder / "blank.png")
    truncated = folder / "truncated.png"
    Image.fromarray((np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    return {
        "text": text,
        "blank": folder / "blank.png",
        "truncated": truncated,
        "missing": folder / "missing.png",
        "folder": folder,
    }


@pytest.mark.fast
def test_unusable_images_are_refused_one_line_each_before_any_model_loads(tmp_path):
    bad = _bad_files(tmp_path / "in")
    order = ["text", "blank", "truncated", "missing", "folder"]
    for command in ("predict", "preprocess"):
        proc = mnistlab(command, *(str(bad[k]) for k in order), store=f"sqlite:///{tmp_path / 'none.db'}")
        assert proc.returncode == 2 and proc.stdout == ""
        lines = error_lines(proc)
        assert [line.split(": ")[1] for line in lines] == [str(bad[k]) for k in order], lines
        assert "not an image file Pillow can read" in lines[0]
        assert "the image is blank" in lines[1]
        assert "cannot read the image" in lines[2]
        assert lines[3].endswith("no such file") and lines[4].endswith("is a folder, not an image file")
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / "none.db").exists()  # no store was opened, let alone created


def test_model_choices_that_cannot_work_are_refused(trained, rendered, tmp_path):
    files, _, _ = rendered
    image = str(files[0])
    cases = [
        (["predict", image, "--run", "0" * 32], 2, f"error: --run {'0' * 32}: no such run in {trained.store}"),
        (
            ["predict", image, "--run", trained.no_model],
            2,
            f"error: --run {trained.no_model}: run {_name(trained.store, trained.no_model)!r} "
            f"({trained.no_model}) (FINISHED) has no logged model",
        ),
        (
            ["predict", image, "--model", "models:/no-such-model@champion"],
            2,
            "error: models:/no-such-model@champion: cannot load this model",
        ),
        (["predict", image, "--experiment", "nope"], 1, "error: --experiment 'nope': no such experiment"),
        (["promote", trained.no_model, "--name", "x"], 2, f"error: RUN_ID {trained.no_model}: run "),
        (["promote", "f" * 32, "--name", "x"], 2, f"error: RUN_ID {'f' * 32}: no such run"),
        (
            ["predict", image, "--uri", f"sqlite:///{tmp_path / 'none.db'}"],
            1,
            f"error: no MLflow store at {tmp_path / 'none.db'}",
        ),
    ]
    for args, code, start in cases:
        proc = mnistlab(*args, store=trained.store)
        lines = error_lines(proc)
        assert (proc.returncode, len(lines)) == (code, 1) and lines[0].startswith(start), (args, proc.stderr[-2000:])
        assert proc.stdout == "" and "Traceback" not in proc.stderr
    # a good image beside a blank one: the good one is predicted, the blank one reported, exit 2
    blank = tmp_path / "blank.jpg"
    Image.fromarray(np.full((120, 90, 3), 250, np.uint8)).save(blank, quality=60)  # JPEG noise on white
    proc = mnistlab("predict", image, str(blank), "--run", trained.cnn, "--json", store=trained.store)
    assert proc.returncode == 2, proc.stderr[-2000:]
    answer = json.loads(proc.stdout)
    assert [row["image"] for row in answer["predictions"]] == [image]
    assert [e["image"] for e in answer["errors"]] == [str(blank)] and "blank" in answer["errors"][0]["error"]
    assert error_lines(proc) == [f"error: {answer['errors'][0]['error']}"]


def test_promote_then_predict_and_serve_the_champion(trained, rendered, tmp_path):
    files, _labels, _ = rendered
    client = mlflow_client(trained.store)
    first = mnistlab("promote", trained.mlp, "--name", "mnist-cnn", store=trained.store)
    proc = mnistlab("promote", trained.cnn, "--name", "mnist-cnn", store=trained.store)
    assert first.returncode == 0 and proc.returncode == 0, first.stderr[-2000:] + proc.stderr[-2000:]
    assert proc.stdout.splitlines()[:2] == [
        f"registered run {_name(trained.store, trained.cnn)!r} ({trained.cnn}), test accuracy "
        f"{trained.test_accuracy:.2%} as mnist-cnn version 2",
        "alias champion -> version 2 (it was on version 1)",
    ]
    champion = client.get_model_version_by_alias("mnist-cnn", "champion")
    assert (str(champion.version), champion.run_id) == ("2", trained.cnn)
    assert champion.tags["test_accuracy"] == f"{trained.test_accuracy:.4f}"

    sample = [str(path) for path in files[:8]]
    proc = mnistlab("predict", *sample, "--model", "models:/mnist-cnn@champion", "--json", store=trained.store)
    assert proc.returncode == 0, proc.stderr[-3000:]
    local = json.loads(proc.stdout)
    assert local["model"]["uri"] == "models:/mnist-cnn@champion"
    by_run = json.loads(mnistlab("predict", *sample, "--run", trained.cnn, "--json", store=trained.store).stdout)
    assert [r["probabilities"] for r in local["predictions"]] == [r["probabilities"] for r in by_run["predictions"]]

    # README's recipe: mnistlab preprocess > request.json; mlflow models serve; curl -d @request.json
    request = tmp_path / "request.json"
    proc = mnistlab("preprocess", *sample, store=trained.store)
    assert proc.returncode == 0, proc.stderr[-2000:]
    request.write_text(proc.stdout)
    assert np.array(json.loads(proc.stdout)["inputs"]).shape == (len(sample), 28, 28, 1)
    curl = shutil.which("curl")
    assert curl, "curl is needed for the serving test (apt-get install curl)"
    with model_server("models:/mnist-cnn@champion", trained.store, tmp_path / "serve.log") as url:
        answer = subprocess.run(
            [
                curl,
                "-sS",
                "--fail-with-body",
                f"{url}/invocations",
                "-H",
                "Content-Type: application/json",
                "-d",
                f"@{request}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert answer.returncode == 0, answer.stdout + answer.stderr
    served = np.array(json.loads(answer.stdout)["predictions"])
    assert served.shape == (len(sample), 10)
    np.testing.assert_allclose(served, [r["probabilities"] for r in local["predictions"]], atol=1e-5)
    assert list(served.argmax(1)) == [r["digit"] for r in local["predictions"]]


def _deep_images(raw_digits: np.ndarray, folder: Path) -> tuple[list[Path], list[Path]]:
    """The same digits twice, light on dark: as 8-bit PNGs, and as 16-bit PNGs (grey levels up to
    4095, as a 12-bit scanner writes them) and 32-bit float TIFFs in turn."""
    folder.mkdir()
    eight, deep = [], []
    for i, digit in enumerate(raw_digits):
        Image.fromarray(digit).save(eight_path := folder / f"{i:03d}-8.png")
        eight.append(eight_path)
        if i % 2:
            wide = Image.fromarray((digit.astype(np.uint16) * 16).astype(np.uint16))  # mode I;16
            wide.save(path := folder / f"{i:03d}-16.png")
        else:
            Image.fromarray(digit.astype(np.float32) / 255.0 * 0.8 + 0.1, "F").save(path := folder / f"{i:03d}-f.tiff")
        deep.append(path)
    return eight, deep


def test_images_of_more_than_8_bits_are_scaled_by_their_own_range(trained, rendered, tmp_path):
    """Pillow's grey conversion clipped 16-bit levels (87% of such digits recognised became 13%):
    the deep images must be read as their 8-bit copies are."""
    _, labels, raw = rendered
    eight, deep = _deep_images(raw[:100], tmp_path / "deep")
    answers = []
    for files in (eight, deep):
        proc = mnistlab("predict", *map(str, files), "--run", trained.cnn, "--json", store=trained.store)
        assert proc.returncode == 0, proc.stderr[-2000:]
        answers.append([row["digit"] for row in json.loads(proc.stdout)["predictions"]])
    right = [np.mean(np.array(a) == labels[:100]) for a in answers]
    assert right[0] > 0.9 and abs(right[1] - right[0]) <= 0.02, right
    assert Image.open(deep[1]).mode == "I;16" and Image.open(deep[0]).mode == "F"


def test_only_regular_files_of_a_sane_size_are_read(tmp_path, mnist_dir):
    fifo = tmp_path / "digit.png"
    os.mkfifo(fifo)
    huge = tmp_path / "huge.png"
    Image.new("L", (12_000, 12_000), 0).save(huge)  # 144 megapixels in a file of a few hundred KB
    proc = mnistlab("preprocess", str(fifo), str(huge), store=None, timeout=60)  # a FIFO would block forever
    assert proc.returncode == 2
    assert error_lines(proc) == [
        f"error: {fifo}: not a regular file (a pipe, a socket or a device); give an image file",
        f"error: {huge}: 12000 x 12000 pixels (144 megapixels) is more than predict reads (40); scale the image down",
    ]
    # a large photo under the limit is reduced before any work on its pixels, and still read right
    digit = load_mnist(mnist_dir).x_test[0]
    big = tmp_path / "big.png"
    Image.fromarray(255 - digit).resize((6000, 6000), Image.Resampling.BICUBIC).save(big)
    small = tmp_path / "small.png"
    Image.fromarray(255 - digit).resize((200, 200), Image.Resampling.BICUBIC).save(small)
    proc = mnistlab("preprocess", str(big), str(small), store=None, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    big_input, small_input = (np.array(x) for x in json.loads(proc.stdout)["inputs"])
    assert np.corrcoef(big_input.ravel(), small_input.ravel())[0, 1] > 0.95


def test_a_model_that_runs_code_when_it_loads_needs_trust(trained, tmp_path):
    import mlflow.pyfunc

    class Echo(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return np.full((len(model_input), 10), 0.1)

    mlflow.set_tracking_uri(trained.store)
    with mlflow.start_run(experiment_id=mlflow_client(trained.store).get_experiment_by_name("mnistlab").experiment_id):
        info = mlflow.pyfunc.log_model(name="model", python_model=Echo())
    image = tmp_path / "digit.png"
    Image.fromarray(np.pad(np.full((10, 4), 255, np.uint8), 9)).save(image)
    proc = mnistlab("predict", str(image), "--model", info.model_uri, store=trained.store)
    assert proc.returncode == 2
    assert error_lines(proc) == [
        f"error: {info.model_uri}: a python_function model, which runs code of its own when it loads (only .keras "
        "files load in Keras's safe mode); pass --trust-model if you trust where it came from"
    ]
    trusted = mnistlab("predict", str(image), "--model", info.model_uri, "--trust-model", "--json", store=trained.store)
    assert trusted.returncode == 0, trusted.stderr[-2000:]
    assert json.loads(trusted.stdout)["predictions"][0]["probability"] == pytest.approx(0.1)
