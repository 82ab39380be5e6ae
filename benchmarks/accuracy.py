"""What a format costs in accuracy: top-1, per class, the confusion matrix, and what changed
against the float reference. Pure numpy on predicted labels; no model is run here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fmnist_edge.common.labels import CLASS_NAMES
from fmnist_edge.common.scores import confusion_matrix

__all__ = ["Comparison", "Evaluation", "compare", "confusion_matrix", "per_class_accuracy"]


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """(n,) recall of each class (diagonal / row sum); NaN for a class with no images."""
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)


@dataclass(frozen=True)
class Evaluation:
    """One model's predictions on the evaluation images, and how long the pass took."""

    format: str  # "keras", "float32", "float16", "int8", ...
    preds: np.ndarray  # (N,) predicted class
    labels: np.ndarray  # (N,) true class
    seconds: float  # wall time of the whole pass
    # what ran it: "keras predict, batch 256", "ai-edge-litert 2.3.0, 2 interpreters x 1 thread
    # (--max-threads: 2), edge_runtime Classifier"
    runtime: str
    threads: int | None  # cores it used (None: the runtime's own pool, Keras)
    class_names: tuple[str, ...] = CLASS_NAMES  # the model's classes, in label order

    @property
    def n(self) -> int:
        return int(self.labels.size)

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.preds == self.labels)) if self.n else float("nan")

    @property
    def confusion(self) -> np.ndarray:
        return confusion_matrix(self.labels, self.preds, len(self.class_names))

    @property
    def per_class(self) -> np.ndarray:
        return per_class_accuracy(self.confusion)

    @property
    def images_per_s(self) -> float:
        return self.n / self.seconds if self.seconds > 0 else float("inf")


@dataclass(frozen=True)
class Comparison:
    """A format against the float reference, on the same images."""

    reference: str  # the reference's format
    drop_pp: float  # reference accuracy - this accuracy, in percentage points
    agreement: float  # fraction of images where both predict the same class
    per_class_drop_pp: np.ndarray  # (10,) per-class accuracy drop in points
    confusion_diff: np.ndarray  # (10, 10) this confusion - reference confusion
    changed: np.ndarray  # (K,) indices (into the evaluated images) whose prediction changed
    changed_from: np.ndarray  # (K,) the reference's prediction at those images


def compare(reference: Evaluation, other: Evaluation) -> Comparison:
    """``other`` measured against ``reference`` (both on the same images, same order)."""
    if not np.array_equal(reference.labels, other.labels):
        raise ValueError("the two evaluations are not on the same images")
    changed = np.flatnonzero(reference.preds != other.preds)
    return Comparison(
        reference=reference.format,
        drop_pp=100.0 * (reference.accuracy - other.accuracy),
        agreement=float(np.mean(reference.preds == other.preds)) if other.n else float("nan"),
        per_class_drop_pp=100.0 * (reference.per_class - other.per_class),
        confusion_diff=other.confusion - reference.confusion,
        changed=changed,
        changed_from=reference.preds[changed],
    )


def _num(x: float) -> float | None:
    """JSON has no NaN: None instead."""
    return None if x is None or np.isnan(x) else float(x)


def to_dict(
    ev: Evaluation, cmp: Comparison | None, image_ids: np.ndarray | None = None
) -> dict[str, Any]:
    """The JSON record of one format's accuracy. ``image_ids`` maps evaluated positions to
    test-set indices (the --quick subset); the changed list uses test-set indices."""
    ids = np.arange(ev.n) if image_ids is None else np.asarray(image_ids)
    out: dict[str, Any] = {
        "format": ev.format,
        "images": ev.n,
        "accuracy": _num(ev.accuracy),
        "runtime": ev.runtime,
        "threads": ev.threads,
        "seconds": ev.seconds,
        "images_per_s": ev.images_per_s,
        "per_class": {
            name: _num(acc) for name, acc in zip(ev.class_names, ev.per_class, strict=True)
        },
        "confusion": ev.confusion.tolist(),
    }
    if cmp is not None:
        out.update(
            reference=cmp.reference,
            drop_pp=_num(cmp.drop_pp),
            agreement=_num(cmp.agreement),
            per_class_drop_pp={
                name: _num(d)
                for name, d in zip(ev.class_names, cmp.per_class_drop_pp, strict=True)
            },
            confusion_diff=cmp.confusion_diff.tolist(),
            changed_count=int(cmp.changed.size),
            # [test index, true label, reference prediction, this prediction]
            changed=[
                [int(ids[i]), int(ev.labels[i]), int(ref), int(ev.preds[i])]
                for i, ref in zip(cmp.changed, cmp.changed_from, strict=True)
            ],
        )
    return out
