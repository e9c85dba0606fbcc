"""`hearth monitor`: where did the land change between two dates, and how much inside each territory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from hearthkit.cli.common import PurposeOpt, RequesterOpt, WorkspaceOpt, console, open_catalog, user_errors
from hearthkit.cli.common import table as cli_table

MONITOR_EXAMPLE = ("\n\nExample: hearth monitor demo-change --before scenes/scene06/imgs_1 "
                   "--after scenes/scene06/imgs_2 --territory scenes/scene06/scene06.geojson --out maps/scene06")


@user_errors
def monitor(
    model: Annotated[str, typer.Argument(help="A published change model (see `hearth models`) or its folder.")],
    before: Annotated[Path, typer.Option(help="Date 1: a folder of *_B02/B03/B04/B08.tif, or one multiband GeoTIFF.")],
    after: Annotated[Path, typer.Option(help="Date 2, the same way; aligned onto date 1's grid.")],
    territory: Annotated[Path | None, typer.Option(help="GeoJSON polygons (EPSG:4326) to give figures for.")] = None,
    out: Annotated[Path, typer.Option(help="Folder for the GeoTIFFs, map.png, report.html, monitor.json.")] = Path(
        "monitor-out"),
    purpose: PurposeOpt = "community_use",
    requester: RequesterOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Sliding-window change detection over whole scenes: GeoTIFFs, a map, hectares changed per territory, a report."""
    from hearthkit.data.geo import Scene
    from hearthkit.lineage.serving import record_use, resolve_use
    from hearthkit.monitor.inputs import load_model, open_date
    from hearthkit.monitor.run import run_monitor

    ws, catalog = open_catalog(workspace)
    served = resolve_use(catalog, model, "monitor", requester, purpose)  # status, inherited labels, protocols
    lm = load_model(ws, catalog, model, purpose, requester, served=served)
    scene = Scene(before.name, open_date(before, lm.prep["bands"]), open_date(after, lm.prep["bands"]))
    with Progress(TextColumn("detecting change"), BarColumn(), TextColumn("{task.completed}/{task.total} tiles"),
                  TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task("tiles", total=None)
        summary = run_monitor(lm, scene, out, territory,
                              progress=lambda i, n: bar.update(task, completed=i, total=n))
    record_use(catalog, served.name, "monitor", requester, purpose, pixels=summary["pixels"],
               territories=len(summary["territories"]))
    table = cli_table("territory", "area (ha)", "changed (ha)", "changed (%)")
    for t in summary["territories"]:
        table.add_row(t["name"], f"{t['area_ha']:,.2f}", f"{t['changed_ha']:,.2f}", f"{t['percent_changed']:.2f}")
    console.print(table)
    if summary["restrictions"]:
        console.print(f"model restrictions: {', '.join(summary['restrictions'])}")
    console.print(f"{summary['pixels']:,} pixels in {summary['inference_s']:.1f} s "
                  f"({summary['pixels'] / max(summary['inference_s'], 1e-9):,.0f} pixels/s)")
    console.print(f"wrote {out}/change_probability.tif, change.tif, map.png, report.html, monitor.json")
