"""`hearth monitor`: where did the land change between two dates, and how much inside each territory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from hearthkit.cli.common import PurposeOpt, RequesterOpt, WorkspaceOpt, console, open_catalog, user_errors
from hearthkit.cli.common import table as cli_table

MONITOR_EXAMPLE = ("\n\nExample: hearth monitor demo-change --before scenes/scene06/imgs_1 "
                   "--after scenes/scene06/imgs_2 --territory scenes/scene06/scene06.geojson --out maps/scene06"
                   "\n\nExample (Landsat TM, 6-band uint8 ENVI): hearth monitor demo-change --before tm_1990.img "
                   "--after tm_2010.img --bands 1,2,3,4 --standardise scene --out maps/tm")


@user_errors
def monitor(
    model: Annotated[str, typer.Argument(help="A published change model (see `hearth models`) or its folder.")],
    before: Annotated[Path, typer.Option(help="Date 1: a folder of *_B02/B03/B04/B08.tif, or one multiband "
                                              "raster (GeoTIFF, ENVI; see --bands).")],
    after: Annotated[Path, typer.Option(help="Date 2, the same way; aligned onto date 1's grid.")],
    territory: Annotated[Path | None, typer.Option(help="GeoJSON polygons (EPSG:4326) to give figures for.")] = None,
    out: Annotated[Path, typer.Option(help="Folder for the GeoTIFFs, map.png, report.html, monitor.json.")] = Path(
        "monitor-out"),
    bands: Annotated[str | None, typer.Option(
        help="Which bands of a multiband file feed the model's bands, in its order: numbers (1,2,3,4), names "
             "(blue,green,red,nir), wavelengths (490nm,...), or 'wavelength' (nearest by the file's metadata). "
             "For a folder: the band token of each file name.")] = None,
    standardise: Annotated[str, typer.Option(
        help="'model' (as the model was trained), or 'scene': each date scaled by its own band statistics "
             "(another sensor, uint8 DNs).")] = "model",
    purpose: PurposeOpt = "community_use",
    requester: RequesterOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Sliding-window change detection over whole scenes: GeoTIFFs, a map, hectares changed per territory, a report."""
    from hearthkit.data.geo import Scene
    from hearthkit.errors import HearthError
    from hearthkit.lineage.serving import record_use, resolve_use
    from hearthkit.monitor.inputs import load_model, open_date, parse_bands
    from hearthkit.monitor.run import run_monitor

    if standardise not in ("model", "scene"):
        raise HearthError(f"--standardise {standardise!r}: use 'model' or 'scene'")
    select = parse_bands(bands)
    ws, catalog = open_catalog(workspace)
    served = resolve_use(catalog, model, "monitor", requester, purpose)  # status, inherited labels, protocols
    lm = load_model(ws, catalog, model, purpose, requester, served=served)
    scene = Scene(before.name, open_date(before, lm.prep["bands"], select), open_date(after, lm.prep["bands"], select))
    with Progress(TextColumn("detecting change"), BarColumn(), TextColumn("{task.completed}/{task.total} tiles"),
                  TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task("tiles", total=None)
        summary = run_monitor(lm, scene, out, territory,
                              progress=lambda i, n: bar.update(task, completed=i, total=n),
                              standardise="per_date" if standardise == "scene" else None)
    record_use(catalog, served.name, "monitor", requester, purpose, pixels=summary["pixels"],
               territories=len(summary["territories"]))
    table = cli_table("territory", "area (ha)", "covered", "changed (ha)", "changed (%)", "expected (ha)",
                      "90% interval (ha)", "unsure (ha)")
    for row in territory_rows(summary):
        table.add_row(*row)
    console.print(table)
    for w in summary["warnings"]:
        console.print(f"[yellow]warning:[/] {w}")
    if summary["restrictions"]:
        console.print(f"model restrictions: {', '.join(summary['restrictions'])}")
    console.print(f"{summary['pixels']:,} pixels in {summary['inference_s']:.1f} s "
                  f"({summary['pixels'] / max(summary['inference_s'], 1e-9):,.0f} pixels/s)")
    console.print(f"wrote {out}/change_probability.tif, change.tif, map.png, report.html, monitor.json")



def territory_rows(summary: dict) -> list[tuple[str, ...]]:
    """The table's cells per territory; one not covered by the scene shows no figure (not 0.00)."""
    rows = []
    for t in summary["territories"]:
        if t["interval_ha"] is None:
            rows.append((t["name"], f"{t['area_ha']:,.2f}", "0%", "–", "–", "–", "not covered", "–"))
            continue
        lo, hi = t["interval_ha"]
        rows.append((t["name"], f"{t['area_ha']:,.2f}", f"{t['covered_fraction']:.0%}", f"{t['changed_ha']:,.2f}",
                     f"{t['percent_changed']:.2f}", f"{t['expected_changed_ha']:,.2f}", f"{lo:,.2f} – {hi:,.2f}",
                     f"{t['unsure_ha']:,.2f}"))
    return rows
