"""Import bi-temporal GeoTIFF scenes in the OSCD layout: one raster item per band file and mask.

Layout (the Onera Satellite Change Detection dataset's, also written by `hearth demo-data geo`):
DIR/<scene>/imgs_1|imgs_2/*_B02|B03|B04|B08.tif (one band each), DIR/<scene>/cm/<scene>-cm.tif (change
mask, 0/1, may lack a georeference), optional DIR/<scene>/lc/<scene>-lc.tif (land-cover class ids at
date 1), DIR/<scene>/dates.txt, DIR/<scene>/<scene>.geojson. DIR/archive.yaml names the collection and
consent; without it the OSCD defaults below apply (licence, citation, non-commercial label).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from sqlalchemy import select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Item
from hearthkit.errors import HearthError
from hearthkit.governance import audit
from hearthkit.governance.vocabulary import LABELS
from hearthkit.ingest.archive import ArchiveInfo, collection_with_consent, read_archive_info
from hearthkit.ingest.audio import reason
from hearthkit.ingest.speech_folder import ImportReport
from hearthkit.store.vault import Store

BANDS = ("B02", "B03", "B04", "B08")
BAND_NAMES = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir"}
DATE_DIRS = {"imgs_1": "before", "imgs_2": "after"}
LAYOUTS = ("oscd",)

OSCD_CITATION = ("Caye Daudt, R., Le Saux, B., Boulch, A., Gousseau, Y.: Urban Change Detection for Multispectral "
                 "Earth Observation Using Convolutional Neural Networks. IGARSS 2018. Contains modified "
                 "Copernicus Sentinel data 2015-2018.")
# The dataset as published: images are modified Copernicus Sentinel data (free, full and open use), the
# change labels are CC BY-NC-SA. The authors' public release is the collective permission; the non-commercial
# term of the labels is a bc:non_commercial label on the whole collection, so a commercial request is refused
# by that label, with its reason, rather than silently by a missing purpose.
OSCD_INFO = {
    "collection": {"name": "oscd", "community": "OSCD authors (ONERA, Telecom ParisTech)",
                   "licence": "change labels CC BY-NC-SA 4.0 (non-commercial only); images: modified Copernicus "
                              "Sentinel data, free and open", "citation": OSCD_CITATION},
    "collective_consent": [{"subject": "OSCD authors (ONERA, Telecom ParisTech)",
                            "given_by": "Caye Daudt, Le Saux, Boulch, Gousseau (public release)",
                            "given_at": "2018-07-22",
                            "purposes": ["community_use", "language_revitalization", "education_outreach",
                                         "research", "public_release", "commercial"],
                            "evidence": "public release with IGARSS 2018; licence terms enforced by the "
                                        "bc:non_commercial label on the collection"}],
    "labels": [{"key": "bc:non_commercial", "text": "Change labels are CC BY-NC-SA: non-commercial use only"},
               {"key": "bc:provenance", "text": "Onera Satellite Change Detection dataset (Sentinel-2), "
                                                "github.com/ChenHongruixuan/ChangeDetectionRepository@020f7702"}],
}


class BadRaster(ValueError):
    """A raster file that cannot be imported; the message is the reason."""


@dataclass
class _File:
    external_id: str
    data: bytes
    media_type: str
    meta: dict


def probe_raster(data: bytes, name: str, bands: int = 1) -> dict:
    """Georeference and shape of a GeoTIFF's bytes; BadRaster if unreadable or the band count is wrong."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError
    from rasterio.io import MemoryFile

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)  # OSCD masks have none, by design
            mem = MemoryFile(data)
            ds = mem.open()
        with mem, ds:
            if ds.count != bands:
                raise BadRaster(f"has {ds.count} bands, expected {bands}")
            georef = ds.crs is not None and not ds.transform.is_identity
            info = {"width": ds.width, "height": ds.height, "count": ds.count, "dtype": ds.dtypes[0],
                    "crs": ds.crs.to_string() if georef else None,
                    "transform": list(ds.transform)[:6] if georef else None,
                    "bounds": list(ds.bounds) if georef else None}
            # Decode every block once: a truncated or corrupt file fails here, not during training.
            for _, window in ds.block_windows(1):
                ds.read(1, window=window)
            return info
    except BadRaster:
        raise
    except (RasterioError, rasterio.errors.RasterioIOError, ValueError) as exc:
        raise BadRaster(f"not a readable GeoTIFF ({reason(exc)[:120]})") from None


def _class_values(data: bytes) -> np.ndarray:
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.io import MemoryFile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with MemoryFile(data) as mem, mem.open() as ds:
            return np.unique(ds.read(1))


def _change_value(values: set[int], rel: str) -> int:
    """The pixel value that means 'changed': 0/1 masks use 1, OSCD's .tif masks 1/2 use 2, PNG-style 0/255 use 255."""
    for encoding, changed in (({0, 1}, 1), ({1, 2}, 2), ({0, 255}, 255)):
        if values <= encoding:
            return changed
    raise BadRaster(f"values {sorted(values)[:8]} are not a change mask; use 0 no change / 1 change")


def _dates(scene: Path) -> dict[str, str]:
    """{'before': 'YYYY-MM-DD', 'after': ...} from dates.txt (date_1: 20160120); empty if absent."""
    out: dict[str, str] = {}
    p = scene / "dates.txt"
    if p.is_file():
        for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, val = line.partition(":")
            val = val.strip()
            role = {"date_1": "before", "date_2": "after"}.get(key.strip())
            if role and len(val) == 8 and val.isdigit():
                out[role] = f"{val[:4]}-{val[4:6]}-{val[6:]}"
    return out


def _read_scene(scene: Path, classes: list[str]) -> list[_File]:
    """Validate one scene folder; return its files, or raise BadRaster('relative/file: reason')."""
    name = scene.name
    dates = _dates(scene)
    files: list[_File] = []
    grids: dict[str, dict] = {}
    for sub, role in DATE_DIRS.items():
        for band in BANDS:
            found = sorted((scene / sub).glob(f"*_{band}.tif")) if (scene / sub).is_dir() else []
            rel = f"{name}/{sub}/*_{band}.tif"
            if len(found) != 1:
                raise BadRaster(f"{rel}: {'missing' if not found else f'{len(found)} files match'}; "
                                f"each date needs exactly one file per band {', '.join(BANDS)}")
            path = found[0]
            rel = f"{name}/{sub}/{path.name}"
            data = path.read_bytes()
            try:
                info = probe_raster(data, rel)
            except BadRaster as exc:
                raise BadRaster(f"{rel}: {exc}") from None
            if info["crs"] is None:
                raise BadRaster(f"{rel}: no georeference (CRS and transform); export it as a GeoTIFF with both")
            grid = grids.setdefault(role, info)
            if (info["width"], info["height"], info["transform"]) != (grid["width"], grid["height"],
                                                                      grid["transform"]):
                raise BadRaster(f"{rel}: grid differs from the other bands of {sub}; resample all bands "
                                "of a date to one grid")
            files.append(_File(f"{name}/{sub}/{band}", data, "image/tiff",
                               {**info, "scene": name, "role": role, "band": band, "band_name": BAND_NAMES[band],
                                "date": dates.get(role), "file": rel}))
    ref = grids["before"]
    for sub, role, needed in (("cm", "mask", True), ("lc", "landcover", False)):
        path = scene / sub / f"{name}-{sub}.tif"
        rel = f"{name}/{sub}/{path.name}"
        if not path.is_file():
            if needed:
                raise BadRaster(f"{rel}: change mask missing; add it or move the scene out of the folder")
            continue
        data = path.read_bytes()
        try:
            info = probe_raster(data, rel)
        except BadRaster as exc:
            raise BadRaster(f"{rel}: {exc}") from None
        if info["crs"] is None and (info["width"], info["height"]) != (ref["width"], ref["height"]):
            raise BadRaster(f"{rel}: {info['width']}x{info['height']} with no georeference, but date 1 is "
                            f"{ref['width']}x{ref['height']}; a mask must match date 1's grid")
        values = set(_class_values(data).tolist())
        meta = {**info, "scene": name, "role": role, "file": rel, "grid": "own" if info["crs"] else "imgs_1"}
        if role == "mask":
            meta["change_value"] = _change_value(values, rel)
        elif values and (min(values) < 0 or max(values) >= max(1, len(classes))):
            raise BadRaster(f"{rel}: class ids {sorted(values)[:8]} outside 0..{len(classes) - 1} "
                            f"(classes in archive.yaml: {classes})")
        if role == "landcover":
            meta["classes"] = classes
        if role == "mask":
            geo = scene / f"{name}.geojson"
            if geo.is_file() and geo.stat().st_size < 200_000:
                try:
                    meta["area_geojson"] = json.loads(geo.read_text(encoding="utf-8"))
                except (ValueError, UnicodeDecodeError):
                    raise BadRaster(f"{name}/{geo.name}: not valid GeoJSON") from None
        files.append(_File(f"{name}/{sub}", data, "image/tiff", meta))
    return files


def _collection_info(folder: Path) -> tuple[ArchiveInfo, list[dict], list[str]]:
    """The collection, consent, collection labels and class names: archive.yaml, else the OSCD defaults."""
    if (folder / "archive.yaml").is_file():
        info = read_archive_info(folder)
        raw = yaml.safe_load((folder / "archive.yaml").read_text(encoding="utf-8")) or {}
    else:
        raw = OSCD_INFO
        info = ArchiveInfo.model_validate(raw)
    labels = raw.get("labels") or []
    for lab in labels:
        if not isinstance(lab, dict) or lab.get("key") not in LABELS:
            raise HearthError(f"{folder}/archive.yaml: field labels: {lab!r} is not a known Local Contexts key "
                              "such as bc:non_commercial")
    return info, labels, [str(c) for c in raw.get("classes") or []]


def import_geotiff_folder(catalog: Catalog, store: Store, folder: Path, layout: str = "oscd",
                          progress=None) -> ImportReport:
    """Import every scene of FOLDER; bad scenes are reported (one line per file) and skipped, atomically."""
    folder = Path(folder)
    if layout not in LAYOUTS:
        raise HearthError(f"layout {layout!r} is unknown; choose one of: {', '.join(LAYOUTS)}")
    if not folder.is_dir():
        raise HearthError(f"{folder}: not a folder")
    info, labels, classes = _collection_info(folder)
    report = ImportReport(collection=info.collection.name)
    scenes = sorted(p for p in folder.iterdir() if p.is_dir() and (p / "imgs_1").is_dir())
    if not scenes:
        raise HearthError(f"{folder}: no scene folders with imgs_1/ inside; expected the OSCD layout "
                          "<scene>/imgs_1, imgs_2, cm")
    pending: list[_File] = []
    for n, scene in enumerate(scenes):
        if progress:
            progress(n, len(scenes))
        try:
            pending += _read_scene(scene, classes)
        except BadRaster as exc:
            report.problems.append((str(exc).split(": ", 1)[0], str(exc).split(": ", 1)[1]
                                    + f" (scene {scene.name} skipped)"))
    _commit(catalog, store, info, labels, pending, report)
    return report


def _commit(catalog: Catalog, store: Store, info: ArchiveInfo, labels: list[dict], pending: list[_File],
            report: ImportReport) -> None:
    """Store the bytes, then write collection, consent, labels and items in one transaction."""
    digests = [store.put(f.data) for f in pending]  # content-addressed: an aborted import leaves no catalog rows
    with catalog.session() as s:
        coll = collection_with_consent(s, info, labels)
        have = {x.external_id: x.content_hash for x in s.scalars(select(Item).where(Item.collection_id == coll.id))}
        for f, digest in zip(pending, digests, strict=True):
            if f.external_id in have:
                if have[f.external_id] == digest:
                    report.unchanged += 1
                else:
                    report.problems.append((f.external_id, "already imported with different content; "
                                            "give the new version a new scene name"))
                continue
            s.add(Item(collection_id=coll.id, external_id=f.external_id, kind="raster", content_hash=digest,
                       size_bytes=len(f.data), media_type=f.media_type, meta=f.meta))
            report.imported += 1
        audit.append(s, "import", collection=info.collection.name, batch=1, imported=report.imported,
                     items=[f.external_id for f in pending if f.external_id not in have],
                     unchanged=report.unchanged, skipped=len(report.problems), done=True)
