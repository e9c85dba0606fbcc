"""Pixel and patch metrics from summed counts: F1/precision/recall/IoU of a class, accuracy and mIoU."""

from __future__ import annotations

import numpy as np


def _counts(records: list[dict]) -> tuple[int, int, int]:
    return (sum(r["tp"] for r in records), sum(r["fp"] for r in records), sum(r["fn"] for r in records))


def _ratio(num: float, den: float) -> float:
    return num / den if den else float("nan")


def f1(records: list[dict]) -> float:
    tp, fp, fn = _counts(records)
    return _ratio(2 * tp, 2 * tp + fp + fn)


def precision(records: list[dict]) -> float:
    tp, fp, _ = _counts(records)
    return _ratio(tp, tp + fp)


def recall(records: list[dict]) -> float:
    tp, _, fn = _counts(records)
    return _ratio(tp, tp + fn)


def iou(records: list[dict]) -> float:
    tp, fp, fn = _counts(records)
    return _ratio(tp, tp + fp + fn)


def _confusion(records: list[dict]) -> np.ndarray:
    return sum(np.asarray(r["confusion"], np.int64) for r in records)


def accuracy(records: list[dict]) -> float:
    cm = _confusion(records)
    return _ratio(float(np.trace(cm)), float(cm.sum()))


def miou(records: list[dict]) -> float:
    """Mean over classes present (in reference or prediction) of TP / (TP + FP + FN)."""
    cm = _confusion(records)
    tp = np.diag(cm).astype(float)
    den = cm.sum(0) + cm.sum(1) - tp
    present = den > 0
    return float((tp[present] / den[present]).mean()) if present.any() else float("nan")


METRICS = {"f1": f1, "precision": precision, "recall": recall, "iou": iou, "accuracy": accuracy, "miou": miou}
