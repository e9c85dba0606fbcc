"""Raster scenes read window by window onto one grid: alignment, per-band statistics, patches, augmentation.

Bytes come from the governed reader (or, for `hearth monitor`, from the user's own files) and are opened
with rasterio's MemoryFile: the compressed file is held in memory and only the requested window is
decoded, so the decoded scene never needs to fit. Trade-off: the compressed bytes of every band must fit
in RAM (a 10980x10980 Sentinel-2 band is ~150 MB as DEFLATE); for larger scenes, tile them at import.
A temp file would lift that limit but would put restricted data on disk unencrypted, which the store forbids.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import DatasetReader, MemoryFile
from rasterio.windows import Window, from_bounds
from rasterio.windows import bounds as window_bounds
from rasterio.windows import transform as window_transform

from hearthkit.errors import HearthError

BANDS = ("B02", "B03", "B04", "B08")


def open_bytes(data: bytes) -> DatasetReader:
    """A rasterio dataset over in-memory file bytes (the MemoryFile lives as long as the dataset)."""
    mem = MemoryFile(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # OSCD masks have none, by design
        ds = mem.open()
    ds._hearth_mem = mem  # keep the buffer alive with the dataset
    return ds


def georeferenced(ds: DatasetReader) -> bool:
    return ds.crs is not None and not ds.transform.is_identity


@dataclass(frozen=True)
class Grid:
    """The pixel grid every layer of a scene is read onto."""

    width: int
    height: int
    transform: object  # affine.Affine
    crs: object | None  # rasterio CRS

    def window_transform(self, window: Window):
        return window_transform(window, self.transform)


def read_on_grid(ds: DatasetReader, grid: Grid, window: Window, band: int = 1,
                 resampling: Resampling = Resampling.bilinear,
                 out_shape: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """WINDOW of GRID from DS band BAND as float32 (h, w), plus a bool mask of pixels DS actually covers: inside
    its extent, not its nodata value or internal mask, and finite.

    A georeferenced source is located by bounds (so a date-2 scene that is a few pixels smaller, or shifted,
    lands on the right pixels); a source without georeference is taken to share the grid pixel for pixel.
    """
    h, w = out_shape or (int(window.height), int(window.width))
    if georeferenced(ds) and grid.crs is not None:
        if ds.crs != grid.crs:
            raise HearthError(f"{ds.name}: CRS {ds.crs} differs from the scene's {grid.crs}; reproject it first")
        src = from_bounds(*window_bounds(window, grid.transform), transform=ds.transform)
    else:
        src = window
    # Snap to whole pixels when the source grid matches: avoids needless resampling blur.
    snapped = Window(*(round(v) for v in (src.col_off, src.row_off, src.width, src.height)))
    if all(abs(a - b) < 1e-3 for a, b in zip(snapped.flatten(), src.flatten(), strict=True)):
        src = snapped
    inside = (src.col_off >= 0 and src.row_off >= 0 and src.col_off + src.width <= ds.width
              and src.row_off + src.height <= ds.height)
    arr = ds.read(band, window=src, out_shape=(h, w), resampling=resampling, boundless=not inside, fill_value=0)
    # Which output pixels' centres fall inside the source raster.
    rows = src.row_off + (np.arange(h) + 0.5) * src.height / h
    cols = src.col_off + (np.arange(w) + 0.5) * src.width / w
    valid = ((rows >= 0) & (rows < ds.height))[:, None] & ((cols >= 0) & (cols < ds.width))[None, :]
    if ds.mask_flag_enums[band - 1] != [MaskFlags.all_valid]:  # nodata value, internal mask or alpha: honour it
        valid &= ds.read_masks(band, window=src, out_shape=(h, w), boundless=not inside) > 0
    arr = arr.astype(np.float32)
    finite = np.isfinite(arr)  # a NaN/inf pixel is no data either, whatever the file declares
    if not finite.all():
        arr[~finite] = 0  # NaN * 0 is NaN: it would reach the network through the normalised input
    return arr, valid & finite


Layer = DatasetReader | tuple[DatasetReader, int]  # a single-band file, or (multiband file, band number)


def _split(layer: Layer) -> tuple[DatasetReader, int]:
    return layer if isinstance(layer, tuple) else (layer, 1)


@dataclass
class Scene:
    """One place: before/after band stacks, and optionally a change mask and a land-cover map."""

    name: str
    before: list[Layer]
    after: list[Layer] = field(default_factory=list)
    mask: DatasetReader | None = None
    landcover: DatasetReader | None = None
    meta: dict = field(default_factory=dict)
    grid: Grid = None  # type: ignore[assignment]

    def __post_init__(self):
        if self.grid is None:
            self.grid = scene_grid(self)

    @property
    def shape(self) -> tuple[int, int]:
        return self.grid.height, self.grid.width

    def read_stack(self, which: str, window: Window,
                   out_shape: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Bands of date WHICH ('before'|'after') in WINDOW: (C, h, w) float32 and the covered-pixel mask."""
        layers = self.before if which == "before" else self.after
        arrs, valid = [], None
        for layer in layers:
            ds, band = _split(layer)
            a, v = read_on_grid(ds, self.grid, window, band, out_shape=out_shape)
            arrs.append(a)
            valid = v if valid is None else valid & v
        return np.stack(arrs), valid

    def read_labels(self, which: str, window: Window) -> np.ndarray:
        """Mask or land-cover ids in WINDOW (nearest neighbour: labels are never interpolated), int64."""
        ds = self.mask if which == "mask" else self.landcover
        if ds is None:
            raise HearthError(f"scene {self.name}: no {which} raster")
        a, _ = read_on_grid(ds, self.grid, window, resampling=Resampling.nearest)
        if which == "mask":  # masks are stored as imported (OSCD: 1 no change, 2 change); give 0/1
            return (a == self.meta.get("change_value", 1)).astype(np.int64)
        return a.astype(np.int64)


def scene_grid(scene: Scene) -> Grid:
    """The mask's grid when there is one (OSCD aligns everything to it), else date 1's."""
    ref = _split(scene.before[0])[0]
    for ds in (scene.mask, scene.landcover):
        if ds is None:
            continue
        if georeferenced(ds):
            return Grid(ds.width, ds.height, ds.transform, ds.crs)
        if (ds.width, ds.height) != (ref.width, ref.height):
            raise HearthError(f"scene {scene.name}: mask is {ds.width}x{ds.height} without georeference but date 1 "
                              f"is {ref.width}x{ref.height}")
    return Grid(ref.width, ref.height, ref.transform, ref.crs)


def group_entries(entries: list[dict], bands: tuple[str, ...] = BANDS) -> dict[str, dict]:
    """Manifest entries by scene: {scene: {'before': [entry per band], 'after': [...], 'mask': e, ...}}."""
    scenes: dict[str, dict] = defaultdict(lambda: {"before": {}, "after": {}})
    for e in entries:
        m = e.get("meta") or {}
        if e.get("kind") != "raster" or "scene" not in m:
            continue
        s = scenes[m["scene"]]
        if m["role"] in ("before", "after"):
            s[m["role"]][m["band"]] = e
        else:
            s[m["role"]] = e
    out = {}
    for name, s in sorted(scenes.items()):
        for role in ("before", "after"):
            if s[role] and set(bands) - set(s[role]):
                raise HearthError(f"scene {name}: {role} lacks bands {sorted(set(bands) - set(s[role]))} "
                                  "(excluded by policy or never imported)")
            s[role] = [s[role][b] for b in bands] if s[role] else []
        out[name] = s
    return out


def open_scenes(entries: list[dict], reader, bands: tuple[str, ...] = BANDS,
                need: tuple[str, ...] = ("before", "after", "mask")) -> list[Scene]:
    """Open the scenes of manifest ENTRIES through the governed READER (bytes, hash-verified, logged)."""
    scenes = []
    for name, s in group_entries(entries, bands).items():
        missing = [r for r in need if not s.get(r)]
        if missing:
            raise HearthError(f"scene {name}: no {', '.join(missing)} among the permitted items")
        opened = {r: [open_bytes(reader.read(e["content_hash"])) for e in s[r]] for r in ("before", "after")}
        extra = {r: open_bytes(reader.read(s[r]["content_hash"])) if s.get(r) else None
                 for r in ("mask", "landcover")}
        meta = (s.get("mask") or s.get("landcover") or s["before"][0])["meta"]
        if s.get("mask"):
            meta = {**meta, "change_value": s["mask"]["meta"].get("change_value", 1)}
        scenes.append(Scene(name, opened["before"], opened["after"], extra["mask"], extra["landcover"],
                            meta={**meta, "item_id": (s.get("mask") or s["before"][0])["item_id"]}))
    return scenes


def full_window(scene: Scene) -> Window:
    return Window(0, 0, scene.grid.width, scene.grid.height)


def blocks(height: int, width: int, size: int = 512) -> Iterator[Window]:
    """Non-overlapping windows covering a HEIGHT x WIDTH grid (the last ones may be smaller)."""
    for r in range(0, height, size):
        for c in range(0, width, size):
            yield Window(c, r, min(size, width - c), min(size, height - r))


def band_stats(scenes: list[Scene], dates: tuple[str, ...] = ("before", "after")) -> dict:
    """Per-band mean and std over every covered pixel of SCENES (training scenes only), read block by block."""
    n, s1, s2 = 0.0, None, None
    for sc in scenes:
        for which in dates:
            for win in blocks(*sc.shape):
                x, valid = sc.read_stack(which, win)
                v = x[:, valid].astype(np.float64)  # (C, n)
                s1 = v.sum(1) if s1 is None else s1 + v.sum(1)
                s2 = (v ** 2).sum(1) if s2 is None else s2 + (v ** 2).sum(1)
                n += v.shape[1]
    if not n:
        raise HearthError("no pixels to compute band statistics from")
    mean = s1 / n
    std = np.sqrt(np.maximum(s2 / n - mean ** 2, 1e-6))
    return {"mean": mean.tolist(), "std": std.tolist()}


def normalise(x: np.ndarray, valid: np.ndarray, stats: dict) -> np.ndarray:
    """Z-score per band with training statistics; pixels outside the source become 0 (the mean)."""
    mean = np.asarray(stats["mean"], np.float32)[:, None, None]
    std = np.asarray(stats["std"], np.float32)[:, None, None]
    return ((x - mean) / std) * valid[None]


def augment(arrays: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """The same random flip / 90-degree rotation on every array (..., H, W): valid for nadir imagery."""
    k = int(rng.integers(4))
    flip = bool(rng.integers(2))
    out = []
    for a in arrays:
        a = np.rot90(a, k, axes=(-2, -1))
        if flip:
            a = a[..., ::-1]
        out.append(np.ascontiguousarray(a))
    return out


def sliding_windows(height: int, width: int, size: int, stride: int) -> list[Window]:
    """Windows of SIZE every STRIDE pixels covering the grid; the last row/column is shifted to the edge."""
    def starts(n: int) -> list[int]:
        if n <= size:
            return [0]
        s = list(range(0, n - size, stride))
        return s + [n - size]
    return [Window(c, r, min(size, width), min(size, height)) for r in starts(height) for c in starts(width)]


def positive_pixels(scene: Scene, limit: int = 20000, seed: int = 0) -> np.ndarray:
    """Up to LIMIT (row, col) of changed pixels, scanned block by block (for positive-biased sampling)."""
    rng = np.random.default_rng(seed)
    found = []
    for win in blocks(*scene.shape):
        m = scene.read_labels("mask", win)
        rr, cc = np.nonzero(m > 0)
        found.append(np.stack([rr + int(win.row_off), cc + int(win.col_off)], 1))
    pos = np.concatenate(found) if found else np.zeros((0, 2), int)
    if len(pos) > limit:
        pos = pos[rng.choice(len(pos), limit, replace=False)]
    return pos


def train_rows(scene: Scene, val_fraction: float, patch: int) -> int:
    """Rows [0, r) are for training; the bottom strip below r validates (threshold choice)."""
    h = scene.shape[0]
    r = int(math.floor(h * (1 - val_fraction)))
    return r if r >= patch else h


def random_window(rng: np.random.Generator, height: int, width: int, patch: int,
                  centre: tuple[int, int] | None = None) -> Window:
    """A PATCH x PATCH window inside (height, width), at random or holding CENTRE."""
    ph, pw = min(patch, height), min(patch, width)
    if centre is None:
        r, c = int(rng.integers(0, height - ph + 1)), int(rng.integers(0, width - pw + 1))
    else:
        r = int(np.clip(centre[0] - rng.integers(0, ph), 0, height - ph))
        c = int(np.clip(centre[1] - rng.integers(0, pw), 0, width - pw))
    return Window(c, r, pw, ph)


def tiles_with_margin(height: int, width: int, tile: int, margin: int, rows: tuple[int, int] | None = None,
                      multiple: int = 8) -> Iterator[tuple[Window, Window]]:
    """(core, padded) windows: cores tile the grid (or its ROWS range); padded adds MARGIN context all round.

    Padded windows all have the same size (a multiple of MULTIPLE, as U-Nets need) and may reach past
    the scene's edge; reads there are boundless and masked as not covered.
    """
    r0, r1 = rows or (0, height)
    size = tile + 2 * margin
    size += (-size) % multiple
    for r in range(r0, r1, tile):
        for c in range(0, width, tile):
            core = Window(c, r, min(tile, width - c), min(tile, r1 - r))
            yield core, Window(c - margin, r - margin, size, size)


def crop(arr: np.ndarray, core: Window, padded: Window) -> np.ndarray:
    """The CORE part of an array (..., h, w) that covers PADDED."""
    r, c = int(core.row_off - padded.row_off), int(core.col_off - padded.col_off)
    return arr[..., r:r + int(core.height), c:c + int(core.width)]
