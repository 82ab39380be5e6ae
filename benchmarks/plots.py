"""The report's PNG plots. matplotlib is imported inside each function, with the Agg backend,
so a headless Pi without it still gets report.md and report.json."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_edge.common.fileio import atomic_path
from fmnist_edge.common.labels import CLASS_NAMES

from .inputs import FORMATS


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    _pyplot().close(fig)
    return path


def _format_key(fmt: str) -> tuple[int, str]:
    return (FORMATS.index(fmt) if fmt in FORMATS else len(FORMATS), fmt)


def pareto(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Accuracy against batch-1 p50 latency, one point per row (format x runtime x threads),
    a colour per format; the line joins the Pareto front (nothing both faster and better)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    pts = [r for r in rows if r.get("accuracy") is not None and r.get("p50_ms")]
    formats = sorted({r["format"] for r in pts}, key=_format_key)
    markers = {"ai-edge-litert": "o", "tflite-runtime": "s", "tf.lite": "^", "keras": "D"}
    cmap = plt.get_cmap("tab10")
    for i, fmt in enumerate(formats):
        for r in (r for r in pts if r["format"] == fmt):
            ax.scatter(
                r["p50_ms"],
                100 * r["accuracy"],
                color=cmap(i),
                marker=markers.get(r["runtime"], "x"),
                s=40,
                zorder=3,
            )
            ax.annotate(
                f"{r['threads']}t",
                (r["p50_ms"], 100 * r["accuracy"]),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
        ax.scatter([], [], color=cmap(i), label=fmt)  # one legend entry per format
    for runtime, marker in markers.items():
        if any(r["runtime"] == runtime for r in pts):
            ax.scatter([], [], color="grey", marker=marker, label=runtime)
    front, best = [], -1.0
    for r in sorted(pts, key=lambda r: (r["p50_ms"], -r["accuracy"])):
        if r["accuracy"] > best:
            front.append(r)
            best = r["accuracy"]
    if len(front) > 1:
        ax.plot(
            [r["p50_ms"] for r in front],
            [100 * r["accuracy"] for r in front],
            color="black",
            lw=0.8,
            ls="--",
            zorder=2,
            label="Pareto front",
        )
    ax.set_xscale("log")
    ax.set_xlabel("latency per image, batch 1, p50 (ms, log scale)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title("Accuracy against latency (labels: threads)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def confusion_diff(
    diff: np.ndarray, path: Path, title: str, class_names: Sequence[str] = CLASS_NAMES
) -> Path:
    """A (K, K) confusion-matrix difference (rows true, columns predicted), red = more."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 6))
    lim = max(int(np.abs(diff).max()), 1)
    im = ax.imshow(diff, cmap="RdBu_r", vmin=-lim, vmax=lim)
    for (i, j), v in np.ndenumerate(diff):
        if v:
            ax.text(j, i, f"{v:+d}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(class_names)), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, shrink=0.8, label="images")
    return _save(fig, path)


def latency_distribution(samples: dict[str, np.ndarray], path: Path) -> Path:
    """One horizontal box per (format, runtime, threads): the timed batch-1 calls in ms."""
    plt = _pyplot()
    labels = list(samples)
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(labels) + 1.5))
    ax.boxplot(
        [samples[k] for k in labels],
        orientation="horizontal",
        whis=(1, 99),
        showfliers=True,
        flierprops={"markersize": 2},
        tick_labels=labels,
    )
    ax.set_xscale("log")
    ax.set_xlabel("latency per image, batch 1 (ms, log scale); whiskers at p1 and p99")
    ax.invert_yaxis()  # first row on top, as in the report's table
    ax.grid(True, axis="x", which="both", alpha=0.3)
    ax.set_title("Latency distribution")
    ax.tick_params(axis="y", labelsize=8)
    return _save(fig, path)


def changed_grid(
    images: np.ndarray,
    labels: np.ndarray,
    before: np.ndarray,
    after: np.ndarray,
    path: Path,
    title: str,
    class_names: Sequence[str] = CLASS_NAMES,
) -> Path:
    """Images whose prediction changed: 'true / reference -> new' above each, in a grid."""
    plt = _pyplot()
    n = len(images)
    cols = min(max(n, 1), 6)
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.1 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, y, b, a in zip(axes.flat, images, labels, before, after, strict=False):
        img = np.asarray(img)
        ax.imshow(img[..., 0] if img.ndim == 3 and img.shape[-1] == 1 else img, cmap="gray",
                  vmin=0, vmax=255)
        colour = "green" if a == y else "red" if b == y else "black"
        ax.set_title(
            f"{class_names[y]}\n{class_names[b]} -> {class_names[a]}", fontsize=7, color=colour
        )
    if n == 0:
        axes.flat[0].text(0.5, 0.5, "no prediction changed", ha="center", va="center")
    fig.suptitle(
        title + "\n(true class; reference -> quantized; green fixed, red broken)", fontsize=9
    )
    return _save(fig, path)


def slug(text: str) -> str:
    """A format label as a file-name part: "int8 (a.tflite)" -> "int8_a.tflite"."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", text).strip("_")


def write_plots(
    out_dir: Path,
    rows: Sequence[dict[str, Any]],
    samples: dict[str, np.ndarray],
    evals: dict[str, Any],
    comparisons: dict[str, Any],
    reference: str | None,
    images: np.ndarray,
    cfg: Any,
) -> list[str]:
    """Every plot of the report: the Pareto view, the latency distribution, and for each
    format against the float reference its confusion difference and a grid of a seeded sample
    of the images whose prediction changed. Returns the file names written."""
    written = [
        pareto(rows, out_dir / "pareto.png").name,
        latency_distribution(samples, out_dir / "latency.png").name,
    ]
    rng = np.random.default_rng(cfg.seed)
    for label, cmp in comparisons.items():
        if label == reference:
            continue
        title = f"Confusion matrix: {label} minus {reference} (rows true, columns predicted)"
        path = out_dir / f"confusion_diff_{slug(label)}.png"
        names = evals[label].class_names
        written.append(confusion_diff(cmp.confusion_diff, path, title, names).name)
        pick = np.sort(rng.permutation(cmp.changed.size)[: cfg.changed_samples])
        idx, ev = cmp.changed[pick], evals[label]
        title = f"{label}: {cmp.changed.size} of {ev.n} predictions changed against {reference}"
        path = out_dir / f"changed_{slug(label)}.png"
        grid = changed_grid(
            images[idx], ev.labels[idx], cmp.changed_from[pick], ev.preds[idx], path, title, names
        )
        written.append(grid.name)
    return written
