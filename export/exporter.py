"""``export(cfg)``: a trained Keras classifier -> validated, self-describing .tflite files.

The source is checked first (source.py). For each mode: convert, attach the fmnist_edge
metadata, write a candidate file beside the target, score it with edge_runtime on images the
model never trained on (holdout.py), enforce --max-drop, and only then rename it into place. A
failed mode leaves nothing behind and the other modes still run.
Every file gets the standard TFLite metadata too, written last (standard_metadata.py), and
--target mediapipe adds each file's RGB variant, checked against it the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_edge.common.errors import QualityError, UsageError
from fmnist_edge.common.fileio import atomic_path, atomic_write_bytes
from fmnist_edge.common.kerasfile import load_keras
from fmnist_edge.edge_runtime.record import ModelRecord

from .config import CALIBRATION_SAMPLES, ExportConfig, variant_name
from .convert import calibration_indices, convert, io_quantization, without_softmax
from .holdout import Holdout, load_export_data
from .mediapipe_model import mediapipe_model
from .record import (
    agreement_record,
    base_record,
    mediapipe_record,
    mode_record,
    validation_record,
)
from .source import check_classifier, resolve_source
from .standard_metadata import write_standard_metadata
from .validate import Validation, compare, keras_proba, rgb_proba, tflite_proba

MEDIAPIPE_TOLERANCE_PP = 0.1  # the -mediapipe.tflite's top-1 accuracy vs its source file's


@dataclass(frozen=True)
class _Holdout(Holdout):
    float_proba: np.ndarray  # (N, 10) float32, the Keras model's output on the images


class _Rejected(Exception):
    """Unwinds atomic_path, which then removes the candidate file."""


@dataclass(frozen=True)
class DerivedFile:
    target: str  # --target: "mediapipe"
    path: Path
    size_bytes: int
    check: dict[str, Any]  # agreement with the file it was made from (record.agreement_record)


@dataclass(frozen=True)
class ExportResult:
    mode: str  # float32, float16, int8 or dynamic
    variant: str  # the mode, tagged with the I/O dtype when int8 I/O isn't int8
    path: Path | None  # the file written; None when --max-drop rejected it
    size_bytes: int  # of the .tflite, metadata included
    convert_seconds: float  # TFLiteConverter.convert() alone
    validation: Validation
    passed: bool  # within --max-drop (always True without one)
    metadata: ModelRecord | None = field(repr=False, default=None)
    derived: tuple[DerivedFile, ...] = ()  # --target files made from this one

    def line(self) -> str:
        """One human line: mode, size, conversion time, accuracies, drop, agreement."""
        v = self.validation
        where = f"-> {self.path}" if self.passed else "REJECTED by --max-drop, no file written"
        return (
            f"{self.variant:<14} {self.size_bytes / 1024:9.1f} KiB"
            f"  convert {self.convert_seconds:5.1f} s"
            f"  float {100 * v.float_accuracy:6.2f}%  tflite {100 * v.tflite_accuracy:6.2f}%"
            f"  drop {v.drop_pp:+.2f} pp  agree {100 * v.agreement:6.2f}%  {where}"
        ) + "".join(
            f"\n{'  + ' + d.target:<14} {d.size_bytes / 1024:9.1f} KiB"
            f"  tflite {100 * d.check['tflite_accuracy']:6.2f}%"
            f"  agree {100 * d.check['agreement']:6.2f}% with {self.variant}  -> {d.path}"
            for d in self.derived
        )


log = logging.getLogger("fmnist.export")


# --- where files go ---------------------------------------------------------------------------


def output_paths(cfg: ExportConfig, model_path: Path, name: str) -> dict[str, Path]:
    """mode -> target file: ``--out`` itself when it names a .tflite, else
    ``{name}-{variant}.tflite`` in ``--out`` or beside the model."""
    out = cfg.out
    if out is not None and (out.suffix == ".tflite" or out.is_file()):
        if len(cfg.modes) > 1:
            raise UsageError(
                f"--out {out} names one file but {len(cfg.modes)} modes were asked for"
            )
        return {cfg.modes[0]: out}
    folder = model_path.parent if out is None else out
    return {m: folder / f"{name}-{variant_name(m, cfg.int8_io)}.tflite" for m in cfg.modes}


def mediapipe_path(target: Path) -> Path:
    """Where --target mediapipe puts the variant of ``target``: beside it, -mediapipe added."""
    return target.with_name(f"{target.stem}-mediapipe{target.suffix or '.tflite'}")


def _prepare_targets(paths: list[Path], force: bool) -> None:
    for path in paths:
        if path.is_dir():
            raise UsageError(f"{path}: is a directory")
        if path.exists() and not force:
            raise UsageError(f"{path}: already exists (use --force to overwrite)")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(
                f"{path.parent}: cannot create folder ({exc.strerror or exc})"
            ) from None


# --- the export -------------------------------------------------------------------------------


def export(
    cfg: ExportConfig, report: Callable[[ExportResult], None] | None = None
) -> list[ExportResult]:
    """Convert, describe, validate and write every mode of ``cfg``; ``report`` sees each result
    as soon as it exists. Raises QualityError after the last mode if any exceeded --max-drop."""
    model_path, metrics = resolve_source(cfg.source)
    name = str((metrics or {}).get("arch") or model_path.stem)
    targets = output_paths(cfg, model_path, name)
    derived = {m: mediapipe_path(p) for m, p in targets.items() if "mediapipe" in cfg.targets}
    _prepare_targets([*targets.values(), *derived.values()], cfg.force)  # before minutes of work
    log.info("loading %s", model_path)
    data = load_export_data(metrics, cfg.data_dir, cfg.validate_samples)
    model = load_keras(model_path)
    check_classifier(model, model_path, data.dataset)
    logits_model = None if cfg.keep_softmax else without_softmax(model)
    held = data.holdout
    log.info(
        "scoring %s images of the %s with the Keras model", f"{len(held.labels):,}", held.split
    )
    proba = keras_proba(model, held.images, cfg.batch_size)
    holdout = _Holdout(held.images, held.labels, held.split, proba)
    calibration = None
    if "int8" in cfg.modes:  # from the images the run trained on: never held-out, never test
        asked = cfg.calibration_samples
        try:
            picked = calibration_indices(
                data.train.labels,
                data.dataset.num_classes,
                asked or CALIBRATION_SAMPLES,
                cfg.seed,
                strict=asked is not None,
            )
        except ValueError as exc:
            raise UsageError(f"--calibration-samples {asked}: {exc}") from None
        if len(picked) < CALIBRATION_SAMPLES and asked is None:
            log.info("calibrating on all %d training images (fewer than 500)", len(picked))
        calibration = np.asarray(data.train.images[picked])

    arch = str((metrics or {}).get("arch") or getattr(model, "name", None) or model_path.stem)
    base = base_record(
        cfg, model_path, metrics, arch, data, holdout.float_proba, logits_model is not None
    )
    net = model if logits_model is None else logits_model  # validated against ``model``
    results, rejected = [], []
    for mode in cfg.modes:
        result = _export_one(
            cfg, mode, net, calibration, base, targets[mode], holdout, derived.get(mode)
        )
        results.append(result)
        if not result.passed:
            rejected.append(result)
        if report is not None:
            report(result)
    if rejected:
        raise QualityError(
            "; ".join(
                f"{r.variant}: accuracy drop {r.validation.drop_pp:.2f} pp exceeds "
                f"--max-drop {cfg.max_drop:g}, no file written"
                for r in rejected
            )
        )
    return results


def _export_one(
    cfg: ExportConfig,
    mode: str,
    model: Any,
    calibration: np.ndarray | None,
    base: dict[str, Any],
    target: Path,
    holdout: _Holdout,
    mediapipe_target: Path | None = None,
) -> ExportResult:
    variant = variant_name(mode, cfg.int8_io)
    calibrating = f", calibrating on {len(calibration):,} images" if mode == "int8" else ""
    log.info("%s: converting%s", variant, calibrating)
    raw, seconds = convert(model, mode, calibration if mode == "int8" else None, cfg.int8_io)
    log.info("%s: validating on %s images", variant, f"{len(holdout.labels):,}")
    shape = holdout.images.shape[1:]
    used = len(calibration) if calibration is not None else None
    meta = mode_record(base, cfg, mode, io_quantization(raw, shape), seconds, used)
    try:
        with atomic_path(target) as candidate:  # removed unless the block succeeds
            candidate.write_bytes(meta.write_into(raw))
            proba = tflite_proba(candidate, holdout.images, cfg.threads)
            validation = compare(holdout.float_proba, proba, holdout.labels)
            meta = meta.replace(validation=validation_record(validation, holdout.split))
            # the standard metadata last: re-serializing the model would drop its labels zip
            data = write_standard_metadata(meta.write_into(raw), meta)
            passed = cfg.max_drop is None or validation.drop_pp <= cfg.max_drop
            if not passed:
                raise _Rejected
            atomic_write_bytes(candidate, data)  # fsynced, then renamed over target
    except _Rejected:
        pass
    derived = ()
    if passed and mediapipe_target is not None:
        derived = (_export_mediapipe(cfg, raw, meta, proba, target, mediapipe_target, holdout),)
    return ExportResult(
        mode=mode,
        variant=variant_name(mode, cfg.int8_io),
        path=target if passed else None,
        size_bytes=len(data),
        convert_seconds=seconds,
        validation=validation,
        passed=passed,
        metadata=meta,
        derived=derived,
    )


def _export_mediapipe(
    cfg: ExportConfig,
    raw: bytes,
    meta: dict[str, Any],
    reference: np.ndarray,
    source: Path,
    target: Path,
    holdout: _Holdout,
) -> DerivedFile:
    """``source``'s MediaPipe variant (mediapipe_model.py), scored on the same images, and
    written only if its top-1 accuracy is that of ``source`` (``reference``: its outputs)."""
    graph = mediapipe_model(raw, meta.output_values == "logits", str(source))
    rgb_shape = (*holdout.images.shape[1:3], 3)
    mp_meta = mediapipe_record(meta, io_quantization(graph, rgb_shape), source.name)
    with atomic_path(target) as candidate:  # removed unless the block succeeds
        candidate.write_bytes(graph)
        proba = rgb_proba(candidate, holdout.images, cfg.threads)
        check = agreement_record(reference, proba, holdout.labels, source.name, holdout.split)
        if abs(check["difference_pp"]) > MEDIAPIPE_TOLERANCE_PP:
            raise QualityError(
                f"{target}: top-1 accuracy {100 * check['tflite_accuracy']:.2f}% is not "
                f"{source.name}'s {100 * check['reference_accuracy']:.2f}% (within "
                f"{MEDIAPIPE_TOLERANCE_PP} pp); no file written"
            )
        mp_meta = mp_meta.replace(validation=check)
        data = write_standard_metadata(mp_meta.write_into(graph), mp_meta)
        atomic_write_bytes(candidate, data)
    return DerivedFile("mediapipe", target, len(data), check)
