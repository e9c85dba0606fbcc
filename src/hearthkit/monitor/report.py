"""The one-page HTML report: the map, per-territory figures, the model's restrictions and the files written."""

from __future__ import annotations

import base64
import html
from datetime import UTC, datetime
from pathlib import Path


def _num(x: float, fmt: str = "{:,.2f}") -> str:
    return "–" if x != x else fmt.format(x)  # NaN for an empty territory


def write_report(summary: dict, path: Path, png: Path) -> None:
    """A self-contained HTML page (the PNG is embedded) next to the GeoTIFFs it names."""
    e = html.escape
    img = base64.b64encode(png.read_bytes()).decode()
    rows = "".join(f"<tr><td>{e(t['name'])}</td><td>{_num(t['area_ha'])}</td><td>{_num(t['changed_ha'])}</td>"
                   f"<td>{_num(t['percent_changed'], '{:.2f} %')}</td></tr>" for t in summary["territories"])
    restr = ", ".join(summary["restrictions"]) or "none"
    attrib = "".join(f"<li>{e(a)}</li>" for a in summary["attribution"]) or "<li>none recorded</li>"
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Change report: {e(summary['model'])}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:1em auto;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #999;padding:.3em .7em;text-align:right}}
td:first-child,th:first-child{{text-align:left}}img{{max-width:100%;border:1px solid #999}}</style></head>
<body><h1>Where the land changed</h1>
<p>Model <b>{e(summary['model'])}</b>; a pixel counts as changed when its change probability is at least
{summary['threshold']:.2f}. Grid {summary['width']} x {summary['height']} pixels, {e(str(summary['crs']))}.</p>
<img alt="map of detected change" src="data:image/png;base64,{img}">
<h2>Change per territory</h2>
<table><tr><th>territory</th><th>area (ha)</th><th>changed (ha)</th><th>changed (% of area)</th></tr>{rows}</table>
<h2>About this model</h2>
<p>Restrictions inherited from its training data: <b>{e(restr)}</b>.</p><p>Attribution:</p><ul>{attrib}</ul>
<h2>Files</h2><ul><li><a href="change_probability.tif">change_probability.tif</a> (probability, float32)</li>
<li><a href="change.tif">change.tif</a> (1 change, 0 none, 255 no data)</li><li><a href="map.png">map.png</a></li>
<li><a href="monitor.json">monitor.json</a> (the figures, machine-readable)</li></ul>
<p><small>Written {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} by hearthkit in
{summary['inference_s']:.1f} s ({summary['pixels'] / max(summary['inference_s'], 1e-9):,.0f} pixels/s).</small></p>
</body></html>
"""
    path.write_text(page, encoding="utf-8")
