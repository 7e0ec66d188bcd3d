"""What a run's test predictions say beyond one accuracy: its interval, each class's precision,
recall and F1, and the per-image table that paired tests between runs read."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mnistlab.reports.proportion import wilson_interval

PREDICTIONS_ARTIFACT = "predictions/test.parquet"


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """counts[true, predicted]."""
    return np.bincount(labels * num_classes + predicted, minlength=num_classes**2).reshape(num_classes, num_classes)


@dataclass(frozen=True)
class TestReport:
    """A run's scores on the test set, from its labels and predicted classes."""

    counts: np.ndarray  # confusion matrix, counts[true, predicted]
    class_names: tuple[str, ...]

    @classmethod
    def of(cls, labels: np.ndarray, predicted: np.ndarray, class_names: tuple[str, ...]) -> TestReport:
        return cls(confusion_matrix(labels, predicted, len(class_names)), class_names)

    @property
    def correct(self) -> int:
        return int(np.trace(self.counts))

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def per_class(self) -> list[dict[str, float | int | str]]:
        """Precision, recall and F1 of each class (0 where a class was never predicted or never seen)."""
        right = np.diag(self.counts).astype(float)
        predicted, actual = self.counts.sum(axis=0), self.counts.sum(axis=1)
        precision = np.divide(right, predicted, out=np.zeros_like(right), where=predicted > 0)
        recall = np.divide(right, actual, out=np.zeros_like(right), where=actual > 0)
        both = precision + recall
        f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(right), where=both > 0)
        return [
            {"class": name, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(self.class_names, precision, recall, f1, actual, strict=True)
        ]

    def per_class_csv(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=["class", "precision", "recall", "f1", "support"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.per_class())
        return out.getvalue()

    def metrics(self) -> dict[str, float]:
        """The accuracy's 95% Wilson interval and each class's recall, as MLflow metrics."""
        low, high = wilson_interval(self.correct, self.total)
        recalls = {f"test_recall_{row['class']}": row["recall"] for row in self.per_class()}
        return {"test_accuracy_ci_low": low, "test_accuracy_ci_high": high, **recalls}


@dataclass(frozen=True)
class Misclassified:
    """The first misclassified test images, in test-set order (so the same model always shows the
    same ones): what the misclassified figure draws."""

    images: np.ndarray  # the images shown
    numbers: np.ndarray  # their positions in the test set
    labels: np.ndarray  # their true classes
    predicted: np.ndarray  # the classes predicted for them
    wrong: int  # misclassified test images in all
    total: int  # test images

    @classmethod
    def of(cls, images: np.ndarray, labels: np.ndarray, predicted: np.ndarray, limit: int = 64) -> Misclassified:
        """Up to ``limit`` of the test images whose ``predicted`` class is not their label."""
        wrong = np.flatnonzero(labels != predicted)
        shown = wrong[:limit]
        return cls(images[shown], shown, labels[shown], predicted[shown], len(wrong), len(labels))


def predictions_frame(labels: np.ndarray, probabilities: np.ndarray):
    """One row per test image: index, label, predicted class, and each class's probability (float32)."""
    columns = {
        "index": np.arange(len(labels), dtype=np.int32),
        "label": labels.astype(np.int16),
        "predicted": probabilities.argmax(axis=1).astype(np.int16),
    }
    columns.update({f"prob_{k}": probabilities[:, k].astype(np.float32) for k in range(probabilities.shape[1])})
    return pd.DataFrame(columns)


def write_predictions(frame, path) -> None:
    """zstd with the floats' bytes split by significance (~0.3 MB for 10,000 images, 0.55 MB with
    parquet's defaults, whose dictionaries do not fit probabilities)."""
    floats = [c for c in frame.columns if c.startswith("prob_")]
    frame.to_parquet(
        path, compression="zstd", index=False, use_dictionary=["label", "predicted"], use_byte_stream_split=floats
    )
