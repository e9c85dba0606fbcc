"""Open a published change model and the user's before/after scenes (band files in a folder, or one multiband file)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hearthkit.data import geo
from hearthkit.errors import HearthError
from hearthkit.recipes import load


@dataclass
class LoadedModel(load.LoadedModel):
    """A published change model, with what the report must say about it."""

    restrictions: list[str] = field(default_factory=list)
    attribution: list[str] = field(default_factory=list)


def load_model(ws, catalog, name: str, purpose: str, requester: str | None = None, served=None) -> LoadedModel:
    """The change model NAME (or a folder) if its status and lineage allow PURPOSE for REQUESTER, with its restrictions.

    SERVED, when the caller already checked the use (`lineage.serving.resolve_use`), skips the second check.
    """
    from hearthkit.governance.manifest import Manifest
    from hearthkit.lineage.serving import resolve_use

    served = served or resolve_use(catalog, name, "monitor", requester, purpose)
    folder = served.folder
    if not (folder / "model.safetensors").is_file():
        raise HearthError(f"model {served.name!r}: no model.safetensors in {folder}; see `hearth models`")
    restrictions, attribution = list(served.restrictions), []
    manifest = ws.run_dir(served.name) / "manifest.json"
    if served.source == "registered" and manifest.is_file():
        man = Manifest.read(manifest)
        attribution, restrictions = man.attribution, sorted(set(restrictions) | set(man.restrictions))
    lm = load.open_model(folder, "change")
    return LoadedModel(lm.name, lm.recipe, lm.cfg, lm.prep, lm.model, restrictions, attribution)


# Central wavelengths (nm) of the Sentinel-2 bands a model may read, and their common names, for --bands.
WAVELENGTH_NM = {"B01": 443, "B02": 490, "B03": 560, "B04": 665, "B05": 705, "B06": 740, "B07": 783, "B08": 842,
                 "B8A": 865, "B09": 945, "B11": 1610, "B12": 2190}
COMMON_NAME = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir"}


def parse_bands(text: str | None) -> list[str] | None:
    """`--bands` as a list of tokens: band numbers ('1,2,3,4'), names ('blue,green,red,nir'), wavelengths
    ('490nm,...'), or the single word 'wavelength' (each model band to the file's nearest band)."""
    if text is None:
        return None
    tokens = [t.strip() for t in text.split(",") if t.strip()]
    if not tokens:
        raise HearthError("--bands: empty; give band numbers (e.g. 1,2,3,4), names or wavelengths")
    return tokens


def _wavelengths(ds) -> list[float | None]:
    """Per band of DS its centre wavelength in nm from the file's metadata (ENVI `wavelength`), or None."""
    out = []
    for i in range(1, ds.count + 1):
        tags = ds.tags(i)
        try:
            w = float(tags.get("wavelength", tags.get("WAVELENGTH", "")))
        except ValueError:
            out.append(None)
            continue
        unit = (tags.get("wavelength_units") or tags.get("WAVELENGTH_UNITS") or "nm").lower()
        out.append(w * 1000 if unit.startswith("micro") or unit in ("um", "µm") else w)
    return out


def select_bands(ds, tokens: list[str], bands: list[str], path: Path) -> list[int]:
    """Band numbers (1-based) of DS for the model's BANDS, chosen by TOKENS (see `parse_bands`)."""
    waves = _wavelengths(ds)
    if tokens == ["wavelength"]:
        if not any(waves):
            raise HearthError(f"{path}: no wavelength in its metadata; choose bands by number, e.g. --bands 1,2,3,4")
        tokens = [f"{WAVELENGTH_NM.get(b, 0)}nm" for b in bands]
    if len(tokens) != len(bands):
        raise HearthError(f"--bands: {len(tokens)} given ({', '.join(tokens)}); the model reads {len(bands)} "
                          f"({', '.join(bands)}), in that order")
    names = [(d or "").lower() for d in ds.descriptions]
    picked = []
    for tok, band in zip(tokens, bands, strict=True):
        low = tok.lower()
        if low.isdigit():
            i = int(low)
            if not 1 <= i <= ds.count:
                raise HearthError(f"{path}: --bands {tok}: the file has bands 1 to {ds.count}")
        elif low.endswith("nm") and low[:-2].replace(".", "", 1).isdigit():
            want = float(low[:-2])
            near = [(abs(w - want), k + 1) for k, w in enumerate(waves) if w is not None]
            if not near or min(near)[0] > 60:
                raise HearthError(f"{path}: no band within 60 nm of {tok} for {band} (wavelengths: "
                                  f"{', '.join(str(w) for w in waves)}); choose it by number")
            i = min(near)[1]
        else:
            hits = [k + 1 for k, n in enumerate(names) if n == low or low in n.split()]
            if len(hits) != 1:
                raise HearthError(f"{path}: --bands {tok}: {'no' if not hits else len(hits)} band(s) named so "
                                  f"(names: {', '.join(ds.descriptions[k] or '-' for k in range(ds.count))})")
            i = hits[0]
        picked.append(i)
    return picked


def open_date(path: Path, bands: list[str], select: list[str] | None = None) -> list[geo.Layer]:
    """Layers of one date: a folder with one *_<band>.tif per band, or one multiband raster (GeoTIFF, ENVI, ...).

    SELECT (from `--bands`) picks the file's bands for the model's BANDS, in order; in a folder it names the
    band token of each file instead (e.g. B1,B2,B3,B4 for *_B1.tif ...).
    """
    path = Path(path)
    if path.is_dir():
        if select is not None and len(select) != len(bands):
            raise HearthError(f"--bands: {len(select)} given; the model reads {len(bands)} ({', '.join(bands)})")
        layers = []
        for band, token in zip(bands, select or bands, strict=True):
            found = sorted(path.glob(f"*_{token}.tif")) or sorted(path.glob(f"*{token}*.tif"))
            if len(found) != 1:
                raise HearthError(f"{path}: expected one file *_{token}.tif for band {band}, found {len(found)}")
            layers.append(_open(found[0]))
        return layers
    ds = _open(path)
    if select is not None:
        return [(ds, i) for i in select_bands(ds, select, bands, path)]
    if ds.count != len(bands):
        raise HearthError(f"{path}: has {ds.count} bands; the model reads {len(bands)} ({', '.join(bands)}) in "
                          "that order; choose them with --bands (e.g. --bands 1,2,3,4), or pass a folder of band "
                          "files or a stack with exactly those bands")
    return [(ds, i + 1) for i in range(ds.count)]


def range_warnings(scene: geo.Scene, stats: dict, bands: list[str], standardise: str) -> list[str]:
    """One line per date whose band values do not look like the training scenes' (another sensor, scaling)."""
    import numpy as np

    tm, ts = np.asarray(stats["mean"]), np.asarray(stats["std"])
    out = []
    for which, label in (("before", "date 1"), ("after", "date 2")):
        own = geo.band_stats([scene], (which,))
        m, s = np.asarray(own["mean"]), np.asarray(own["std"])
        off = (np.abs(m - tm) > 3 * ts) | (s > 4 * ts) | (s < ts / 4)
        if not off.any():
            continue
        detail = "; ".join(f"{bands[i]} mean {m[i]:.4g} sd {s[i]:.3g} vs training {tm[i]:.4g} sd {ts[i]:.3g}"
                           for i in np.nonzero(off)[0])
        if standardise == "per_date":
            out.append(f"{label}: values unlike the model's training scenes ({detail}); each date is standardised "
                       "by its own statistics, so only the pattern of values is used")
        else:
            out.append(f"{label}: values outside the model's training range ({detail}): another sensor or "
                       "scaling? The change map is unreliable; use --standardise scene")
    return out


def _open(path: Path):
    import rasterio

    try:
        ds = rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise HearthError(f"{path}: not a readable GeoTIFF ({str(exc).splitlines()[0][:120]})") from None
    if not geo.georeferenced(ds):
        raise HearthError(f"{path}: has no georeference (CRS and transform); maps need one")
    return ds
