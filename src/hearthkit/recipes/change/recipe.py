"""The change recipe: governed raster items -> aligned patches -> Siamese U-Net -> thresholded change mask."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rasterio.windows import Window
from torch import nn

from hearthkit.data import geo
from hearthkit.data.loader import GovernedReader
from hearthkit.recipes.base import Recipe
from hearthkit.recipes.change.model import ChangeConfig, SiamUNet
from hearthkit.recipes.eo_backbone import BackboneHooks

THRESHOLDS = np.round(np.arange(0.05, 0.96, 0.05), 2)
# Dihedral transforms (90-degree turns, horizontal flip) in the order test-time augmentation uses them:
# 2 = identity + flip, 4 adds the half turn (their product is the vertical flip), 8 adds the quarter turns.
CALIBRATION_KEYS = ("method", "a", "b", "fitted", "area_rel_sd", "area_abs_sd")
AREA_TERMS = ("area_rel_sd", "area_abs_sd")
MIN_CHANGED_PIXELS = 50  # a validation strip with less change says nothing about relative area error
DIHEDRAL = [(0, False), (0, True), (2, False), (2, True), (1, False), (1, True), (3, False), (3, True)]


MATCH_QUANTILES = 1024  # points of the after -> before quantile map (per band)
MATCH_SAMPLE = 2_000_000  # pixels per band the quantiles are taken from (a strided sample of large scenes)


def match_table(scene: geo.Scene) -> np.ndarray | None:
    """(2, C, MATCH_QUANTILES): quantiles of the after and the before date per band over the pixels both cover,
    the map that histogram-matches the after date to the before date; None when they share no pixel."""
    h, w = scene.shape
    step = max(1, int(np.ceil(np.sqrt(h * w / MATCH_SAMPLE))))  # a large scene: every step-th row and column
    after, before = [], []
    for win in geo.blocks(h, w, max(step, 512 - 512 % step)):  # sides a multiple of step: one regular lattice
        x1, v1 = scene.read_stack("before", win)
        x2, v2 = scene.read_stack("after", win)
        both = (v1 & v2)[::step, ::step]
        before.append(x1[:, ::step, ::step][:, both])
        after.append(x2[:, ::step, ::step][:, both])
    b, a = np.concatenate(before, 1), np.concatenate(after, 1)  # (C, n)
    if not b.shape[1]:
        return None
    levels = np.linspace(0, 1, MATCH_QUANTILES)
    return np.stack([np.quantile(a, levels, axis=1).T, np.quantile(b, levels, axis=1).T]).astype(np.float32)


def match_after(x: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Map each band of the after date (C, h, w) through its quantiles onto the before date's (monotone)."""
    return np.stack([np.interp(x[c], table[0, c], table[1, c]) for c in range(len(x))]).astype(np.float32)


def input_scaling(scene: geo.Scene, mode: str, stats: dict) -> tuple[dict, dict, np.ndarray | None]:
    """How to scale the before and after dates: band statistics for each, and a histogram-match table or None."""
    if mode == "per_date":  # each date standardised over itself: gain/offset between dates cancels
        return geo.band_stats([scene], ("before",)), geo.band_stats([scene], ("after",)), None
    if mode == "match":  # the after date takes the before date's radiometry; absolute brightness is kept
        return stats, stats, match_table(scene)
    return stats, stats, None


def scale_pair(x1: np.ndarray, v1: np.ndarray, x2: np.ndarray, v2: np.ndarray,
               scaling: tuple[dict, dict, np.ndarray | None]) -> tuple[np.ndarray, np.ndarray]:
    """Both dates' band stacks as model inputs, by SCALING from input_scaling."""
    s1, s2, table = scaling
    if table is not None:
        x2 = match_after(x2, table)
    return geo.normalise(x1, v1, s1), geo.normalise(x2, v2, s2)


def forward_tta(model: nn.Module, t1: torch.Tensor, t2: torch.Tensor, n: int = 1) -> torch.Tensor:
    """Change probability (B, 1, H, W) averaged over the first N dihedral transforms (square inputs for N > 2)."""
    acc = None
    for k, flip in DIHEDRAL[:n]:
        a, b = (torch.rot90(t, k, (-2, -1)) for t in (t1, t2))
        if flip:
            a, b = a.flip(-1), b.flip(-1)
        p = torch.sigmoid(model(a, b))
        if flip:
            p = p.flip(-1)
        p = torch.rot90(p, -k, (-2, -1))
        acc = p if acc is None else acc + p
    return acc / n


class ChangePatches(torch.utils.data.Dataset):
    """Random patches of training scenes (above each scene's validation strip); patch i is fixed by (seed, i)."""

    def __init__(self, cfg: ChangeConfig, stats: dict, scenes: list[geo.Scene], seed: int = 0):
        self.cfg, self.stats, self.scenes, self.seed = cfg, stats, scenes, seed
        self.rows = [geo.train_rows(s, cfg.val_fraction, cfg.patch) for s in scenes]
        self.pos = []
        for s, r in zip(scenes, self.rows, strict=True):
            p = geo.positive_pixels(s, seed=seed)
            self.pos.append(p[p[:, 0] < r])
        self.scaling = [input_scaling(s, cfg.normalise, stats) for s in scenes]  # per scene
        area = np.array([r * s.shape[1] for s, r in zip(scenes, self.rows, strict=True)], float)
        self.weights = area / area.sum()

    def __len__(self) -> int:
        return self.cfg.patches_per_epoch

    def __getitem__(self, i: int) -> dict:
        rng = np.random.default_rng([self.seed, i])
        k = int(rng.choice(len(self.scenes), p=self.weights))
        sc, rows, pos = self.scenes[k], self.rows[k], self.pos[k]
        centre = tuple(pos[rng.integers(len(pos))]) if len(pos) and rng.random() < self.cfg.pos_fraction else None
        win = geo.random_window(rng, rows, sc.shape[1], self.cfg.patch, centre)
        win = Window(win.col_off, win.row_off, self.cfg.patch, self.cfg.patch)  # small scenes: pad past the edge
        x1, v1 = sc.read_stack("before", win)
        x2, v2 = sc.read_stack("after", win)
        y = sc.read_labels("mask", win)
        valid = (v1 & v2).astype(np.float32)
        # Augmentation draws from torch's RNG, which the engine seeds per rank and checkpoints.
        aug = np.random.default_rng(int(torch.randint(0, 2**31 - 1, ())))
        x1, x2 = scale_pair(x1, v1, x2, v2, self.scaling[k])
        if self.cfg.jitter:  # each date gets its own gain/offset: brightness alone must not look like change
            x1, x2 = (x * (1 + aug.normal(0, self.cfg.jitter, (len(x), 1, 1)))
                      + aug.normal(0, self.cfg.jitter, (len(x), 1, 1)) * valid for x in (x1, x2))
            x1, x2 = x1.astype(np.float32), x2.astype(np.float32)
        x1, x2, y, valid = geo.augment([x1, x2, y.astype(np.float32), valid], aug)
        return {"x1": torch.from_numpy(x1), "x2": torch.from_numpy(x2), "mask": torch.from_numpy(y),
                "valid": torch.from_numpy(valid)}


def change_loss(logits: torch.Tensor, y: torch.Tensor, valid: torch.Tensor, pos_weight: float,
                dice_weight: float, focal_gamma: float | None = None) -> torch.Tensor:
    """Weighted BCE (focal when FOCAL_GAMMA is given) + soft Dice over covered pixels: changed pixels are 0.3-4 %
    of a scene."""
    bce = F.binary_cross_entropy_with_logits(logits, y, pos_weight=torch.tensor(pos_weight), reduction="none")
    if focal_gamma is not None:
        p_t = torch.where(y > 0.5, torch.sigmoid(logits), torch.sigmoid(-logits))  # the true class's probability
        bce = bce * (1 - p_t).pow(focal_gamma)
    bce = (bce * valid).sum() / valid.sum().clamp(min=1)
    p = torch.sigmoid(logits) * valid
    dice = 1 - (2 * (p * y).sum() + 1) / (p.sum() + (y * valid).sum() + 1)
    return bce + dice_weight * dice


@torch.no_grad()
def predict_tiles(model: nn.Module, scene: geo.Scene, stats: dict, cfg: ChangeConfig,
                  rows: tuple[int, int] | None = None, normalise: str | None = None,
                  tta: int | None = None) -> Iterator[tuple[Window, np.ndarray, np.ndarray]]:
    """Change probability tile by tile over the scene: (core window, prob (h, w), covered (h, w)).

    NORMALISE and TTA override the model's settings (`hearth monitor --standardise scene`, ablations).
    """
    model.eval()
    mult = cfg.stride_multiple()
    scaling = input_scaling(scene, normalise or cfg.normalise, stats)
    for core, padded in geo.tiles_with_margin(*scene.shape, cfg.tile, cfg.margin, rows, multiple=mult):
        x1, v1 = scene.read_stack("before", padded)
        x2, v2 = scene.read_stack("after", padded)
        t1, t2 = (torch.from_numpy(x)[None] for x in scale_pair(x1, v1, x2, v2, scaling))
        prob = forward_tta(model, t1, t2, tta or cfg.tta)[0, 0].numpy()  # (h, w)
        yield core, geo.crop(prob, core, padded), geo.crop(v1 & v2, core, padded)


def confusion(model, scene, stats, cfg, thresholds: np.ndarray, rows=None) -> np.ndarray:
    """(len(thresholds), 4) counts tp, fp, fn, tn of the change class over SCENE (ROWS range)."""
    out = np.zeros((len(thresholds), 4), np.int64)
    for core, prob, covered in predict_tiles(model, scene, stats, cfg, rows):
        y = scene.read_labels("mask", core)[covered] > 0
        p = prob[covered][None, :] >= thresholds[:, None]  # (T, n)
        tp = (p & y).sum(1)
        fp = (p & ~y).sum(1)
        fn = (~p & y).sum(1)
        out += np.stack([tp, fp, fn, y.size - tp - fp - fn], 1)
    return out


def area_errors(p: np.ndarray, y: np.ndarray, scene_of: np.ndarray) -> dict:
    """Scene-wide changed-area errors, leave one scene out: for each scene, Platt fitted on the OTHER scenes'
    validation pixels, and this scene's expected changed area (sum of calibrated q) against its true one.

    Errors shared by a whole scene (season, haze, landscape) that no per-pixel variance sees, measured on pixels
    the calibration never saw. area_rel_sd: RMS of (true - expected) / expected over scenes with change expected
    or present; area_abs_sd: RMS of (true - expected) / covered pixels over all scenes (the interval's floor when
    little change is expected). Each is 1.0 (unknown: the widest reading) with fewer than two scenes measured.
    """
    from hearthkit.evaluate.calibration import apply_platt, fit_platt

    rel, absolute = [], []
    scenes = np.unique(scene_of)
    for k in scenes if len(scenes) >= 2 else ():
        held = scene_of == k
        q = apply_platt(p[held], fit_platt(p[~held], y[~held]))
        e, t = float(q.sum(dtype=np.float64)), float(y[held].sum())
        absolute.append((t - e) / int(held.sum()))
        if max(e, t) >= MIN_CHANGED_PIXELS:
            rel.append((t - e) / max(e, 1.0))

    def rms(v: list[float]) -> float:
        return float(np.sqrt(np.mean(np.square(v)))) if len(v) >= 2 else 1.0

    return {"area_rel_sd": rms(rel), "area_abs_sd": rms(absolute), "area_rel_errors": rel,
            "area_abs_errors": absolute}


def read_calibration(c: dict) -> dict:
    """The calibration `monitor` uses, from threshold.json's C. What an older file lacks takes the most restricted
    reading: no 'fitted' is judged from a and b (is_fitted), a missing area term is 1.0 (+-100 %) and listed in
    'unmeasured' so the monitor can say so."""
    from hearthkit.evaluate.calibration import is_fitted

    out = {"method": c.get("method", "platt"), "a": c.get("a", 1.0), "b": c.get("b", 0.0), "fitted": is_fitted(c)}
    out.update({k: c.get(k, 1.0) for k in AREA_TERMS})
    unmeasured = [k for k in AREA_TERMS if k not in c]
    return {**out, "unmeasured": unmeasured} if unmeasured else out


def f1_of(counts: np.ndarray) -> np.ndarray:
    tp, fp, fn = counts[..., 0], counts[..., 1], counts[..., 2]
    return 2 * tp / np.maximum(2 * tp + fp + fn, 1)


class ChangeRecipe(BackboneHooks, Recipe):
    """Bi-temporal change detection; scored by F1, precision, recall and IoU of the change class."""

    name = "change"
    ModelConfig = ChangeConfig
    metric_names = ("f1", "precision", "recall", "iou")
    groups = ("scene",)

    def prepare(self, cfg: ChangeConfig, train_entries: list[dict], out: Path, reader=None,
                manifest=None, parent=None) -> dict:
        scenes = geo.open_scenes(train_entries, reader, tuple(cfg.bands))
        prep = {"bands": cfg.bands, "stats": geo.band_stats(scenes), "threshold": 0.5,
                "train_scenes": [s.name for s in scenes]}
        if parent is not None:  # its weights expect inputs scaled by its own band statistics
            self.check_parent_shape(cfg, parent, ("bands", "width", "depth", "fusion", "base"))
            prep["stats"], prep["stats_from"] = self.load_prep(parent / "prep")["stats"], parent.name
        if cfg.base:  # issue 20: the backbone's config, its base (hash-checked), the bands' mapping onto its channels
            from hearthkit.recipes.eo_backbone import prepare_backbone

            prep["backbone"] = prepare_backbone(cfg, out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "prep.json").write_text(json.dumps(prep, indent=1))
        return prep

    def load_prep(self, folder: Path) -> dict:
        prep = json.loads((folder / "prep.json").read_text())
        th = folder / "threshold.json"
        if th.is_file():
            fitted = json.loads(th.read_text())
            prep["threshold"] = fitted.get("threshold", prep.get("threshold", 0.5))
            if isinstance(fitted.get("calibration"), dict):  # models trained before issue 24 have none: raw
                prep["calibration"] = read_calibration(fitted["calibration"])
        return prep

    def build_model(self, cfg: ChangeConfig, prep: dict) -> nn.Module:
        if cfg.base:  # issue 20: a pretrained backbone shared by both dates (eo_backbone.py)
            from hearthkit.recipes.eo_backbone import SiamBackbone

            return SiamBackbone(cfg, prep["backbone"])
        return SiamUNet(cfg)

    # issue 20: pretrained backbone hooks (model.base) come from BackboneHooks

    def dataset(self, cfg, prep, entries, reader, train):
        return ChangePatches(cfg, prep["stats"], geo.open_scenes(entries, reader, tuple(cfg.bands)))

    def collate(self, batch: list[dict]) -> dict:
        return {k: torch.stack([b[k] for b in batch]) for k in batch[0]}

    def loss(self, model, batch):
        logits = model(batch["x1"], batch["x2"])[:, 0]  # (B, H, W)
        cfg = getattr(model, "module", model).cfg  # DDP wraps the model; the model keeps its config
        loss = change_loss(logits, batch["mask"], batch["valid"], cfg.pos_weight, cfg.dice_weight,
                           cfg.focal_gamma if cfg.loss == "focal" else None)
        return loss, {"samples": float(len(logits)), "pixels": float(batch["valid"].sum())}

    def calibrate(self, model, cfg: ChangeConfig, prep: dict, entries: list[dict], reader: GovernedReader,
                  out: Path) -> dict:
        """On the validation strips of the training scenes: the F1-best threshold and a Platt calibration."""
        from hearthkit.evaluate.calibration import apply_platt, ece, fit_platt, reliability

        probs, labels, scene_of = [], [], []
        for k, sc in enumerate(geo.open_scenes(entries, reader, tuple(cfg.bands))):
            r = geo.train_rows(sc, cfg.val_fraction, cfg.patch)
            if r < sc.shape[0]:
                for core, prob, covered in predict_tiles(model, sc, prep["stats"], cfg, (r, sc.shape[0])):
                    probs.append(prob[covered])
                    labels.append(sc.read_labels("mask", core)[covered] > 0)
                    scene_of.append(np.full(int(covered.sum()), k))
        p = np.concatenate(probs) if probs else np.zeros(0, np.float32)
        y = np.concatenate(labels) if labels else np.zeros(0, bool)
        pred = p[None, :] >= THRESHOLDS[:, None]  # (T, n)
        tp, fp = (pred & y).sum(1), (pred & ~y).sum(1)
        counts = np.stack([tp, fp, y.sum() - tp, y.size - tp - fp - (y.sum() - tp)], 1)
        f1 = f1_of(counts)
        best = float(THRESHOLDS[int(f1.argmax())]) if y.any() or pred.any() else 0.5
        cal = fit_platt(p, y)
        q = apply_platt(p, cal)
        ks = np.concatenate(scene_of) if scene_of else np.zeros(0, int)
        calibration = {"method": "platt", **cal, **area_errors(p, y, ks), "fitted_on_pixels": int(y.size),
                       "ece_before": ece(p, y), "ece_after": ece(q, y),
                       "reliability_before": reliability(p, y), "reliability_after": reliability(q, y)}
        result = {"threshold": best, "validation_f1": float(f1.max()),
                  "curve": {f"{t:.2f}": round(float(v), 4) for t, v in zip(THRESHOLDS, f1, strict=True)},
                  "calibration": calibration}
        (out / "threshold.json").write_text(json.dumps(result, indent=1))
        return {"threshold": best, "calibration": {k: calibration[k] for k in CALIBRATION_KEYS}}

    def evaluate(self, model, cfg, prep, entries, reader):
        th = np.array([prep.get("threshold", 0.5)])
        records = []
        for sc in geo.open_scenes(entries, reader, tuple(cfg.bands)):
            tp, fp, fn, tn = (int(v) for v in confusion(model, sc, prep["stats"], cfg, th)[0])
            records.append({"item_id": sc.meta["item_id"], "external_id": sc.name, "scene": sc.name,
                            "tp": tp, "fp": fp, "fn": fn, "tn": tn})
        return records


RECIPE = ChangeRecipe()
