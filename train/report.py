"""What a finished run leaves to look at: curves, a confusion matrix, sample predictions and a
per-class classification report. numpy and matplotlib only (Agg, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_edge.common.fileio import atomic_path, atomic_write_json, atomic_write_text
from fmnist_edge.common.scores import confusion_matrix


def classification_report(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]
) -> dict[str, Any]:
    """Per-class precision, recall, F1 and support, plus accuracy and macro averages."""
    cm = confusion_matrix(y_true, y_pred, len(class_names))
    tp = np.diag(cm).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.nan_to_num(tp / cm.sum(axis=0))
        recall = np.nan_to_num(tp / cm.sum(axis=1))
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    classes = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(cm[i].sum()),
        }
        for i, name in enumerate(class_names)
    }
    return {
        "classes": classes,
        "accuracy": float(tp.sum() / max(cm.sum(), 1)),
        "macro_f1": float(f1.mean()),
        "support": int(cm.sum()),
    }


def format_report(report: dict[str, Any], title: str) -> str:
    lines = [title, f"{'class':>12} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>8}"]
    for name, r in report["classes"].items():
        lines.append(
            f"{name:>12} {r['precision']:9.4f} {r['recall']:9.4f} {r['f1']:9.4f} {r['support']:8d}"
        )
    lines.append(f"{'accuracy':>12} {report['accuracy']:29.4f} {report['support']:8d}")
    lines.append(f"{'macro f1':>12} {report['macro_f1']:29.4f}")
    return "\n".join(lines) + "\n"


def write_reports(out: Path, reports: dict[str, dict[str, Any]]) -> None:
    """classification_report.json and .txt, one section per split ('validation', 'test')."""
    atomic_write_json(out / "classification_report.json", reports)
    text = "\n".join(format_report(r, f"== {split} ==") for split, r in reports.items())
    atomic_write_text(out / "classification_report.txt", text)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")


def plot_curves(history: Sequence[dict[str, float]], path: Path) -> None:
    """Loss and accuracy per epoch, training against validation."""
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in zip(axes, ("loss", "accuracy"), strict=True):
        ax.plot(epochs, [h[key] for h in history], "o-", label="train")
        if f"val_{key}" in history[0]:  # absent when the run trained on every image
            ax.plot(epochs, [h[f"val_{key}"] for h in history], "o-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend()
    _save(fig, path)
    plt.close(fig)


def plot_confusion(
    cm: np.ndarray,
    path: Path,
    class_names: Sequence[str],
    title: str = "Confusion matrix (test)",
) -> None:
    plt = _pyplot()
    side = min(20.0, 4.0 + 0.35 * len(class_names))
    fig, ax = plt.subplots(figsize=(side + 1.0, side))
    im = ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    threshold = cm.max() / 2 if cm.size else 0
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            color = "white" if cm[i, j] > threshold else "black"
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7, color=color)
    fig.colorbar(im, ax=ax, fraction=0.046)
    _save(fig, path)
    plt.close(fig)


def plot_samples(
    images: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    path: Path,
    class_names: Sequence[str],
    n: int = 25,
) -> None:
    """A grid of held-out images, (N, H, W, C) uint8, titled 'predicted (true)', wrong ones in
    red."""
    plt = _pyplot()
    n = min(n, len(images))
    cols = 5
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2, rows * 2.2), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        image = np.asarray(images[k])
        ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray")
        ok = y_true[k] == y_pred[k]
        ax.set_title(
            f"{class_names[y_pred[k]]}\n({class_names[y_true[k]]})",
            fontsize=8,
            color="black" if ok else "red",
        )
    _save(fig, path)
    plt.close(fig)
