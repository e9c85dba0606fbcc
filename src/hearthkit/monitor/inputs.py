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


def open_date(path: Path, bands: list[str]) -> list[geo.Layer]:
    """Layers of one date: a folder with one *_<band>.tif per band, or a GeoTIFF with one band per model band."""
    path = Path(path)
    if path.is_dir():
        layers = []
        for band in bands:
            found = sorted(path.glob(f"*_{band}.tif")) or sorted(path.glob(f"*{band}*.tif"))
            if len(found) != 1:
                raise HearthError(f"{path}: expected one file *_{band}.tif for band {band}, found {len(found)}")
            layers.append(_open(found[0]))
        return layers
    ds = _open(path)
    if ds.count != len(bands):
        raise HearthError(f"{path}: has {ds.count} bands; the model reads {len(bands)} ({', '.join(bands)}) in "
                          "that order; pass a folder of band files or a stack with exactly those bands")
    return [(ds, i + 1) for i in range(ds.count)]


def _open(path: Path):
    import rasterio

    try:
        ds = rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise HearthError(f"{path}: not a readable GeoTIFF ({str(exc).splitlines()[0][:120]})") from None
    if not geo.georeferenced(ds):
        raise HearthError(f"{path}: has no georeference (CRS and transform); maps need one")
    return ds
