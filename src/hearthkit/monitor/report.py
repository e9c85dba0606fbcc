"""The one-page HTML report: the map, per-territory figures, the model's restrictions and the files written."""

from __future__ import annotations

import base64
import html
from datetime import UTC, datetime
from pathlib import Path


def _num(x: float | None, fmt: str = "{:,.2f}") -> str:
    return "–" if x is None or x != x else fmt.format(x)  # None (or NaN) where a territory is not covered


def _interval(t: dict) -> str:
    if not t.get("interval_ha"):
        return "<td>–</td><td>not covered</td>" if "interval_ha" in t else "<td>–</td><td>–</td>"
    lo, hi = t["interval_ha"]
    return f"<td>{_num(t['expected_changed_ha'])}</td><td>{_num(lo)} – {_num(hi)}</td>"


def _covered(t: dict) -> str:
    frac = t.get("covered_fraction")
    return "–" if frac is None else f"{frac:.0%}"


def _least_sure(t: dict) -> str:
    e = html.escape
    places = t.get("least_sure") or []
    if t.get("unsure_ha", 0.0) is None:
        return f"<h3>{e(t['name'])}</h3><p>not covered by the scene: nothing to say</p>"
    if not places:
        return f"<h3>{e(t['name'])}</h3><p>no unsure area ({_num(t.get('unsure_ha', 0.0))} ha)</p>"
    items = "".join(
        f"<li>{_num(p['unsure_ha'], '{:,.3f}')} ha unsure around "
        + (f"lat {p['lat']:.5f}, lon {p['lon']:.5f}" if "lat" in p else f"x {p['x']:.1f}, y {p['y']:.1f}")
        + f" (pixel row {p['row']}, column {p['col']})</li>" for p in places)
    return (f"<h3>{e(t['name'])}</h3><p>{_num(t['unsure_ha'])} ha unsure in all; most unsure places:</p>"
            f"<ol>{items}</ol>")


def write_report(summary: dict, path: Path, png: Path) -> None:
    """A self-contained HTML page (the PNG is embedded) next to the GeoTIFFs it names."""
    e = html.escape
    img = base64.b64encode(png.read_bytes()).decode()
    rows = "".join(f"<tr><td>{e(t['name'])}</td><td>{_num(t['area_ha'])}</td><td>{_covered(t)}</td>"
                   f"<td>{_num(t['changed_ha'])}</td>"
                   f"<td>{_num(t['percent_changed'], '{:.2f} %')}</td>{_interval(t)}</tr>"
                   for t in summary["territories"])
    level = summary["territories"][0].get("interval_level", 0.9) if summary["territories"] else 0.9
    unsure = "".join(_least_sure(t) for t in summary["territories"])
    warn = "".join(f"<p class=warn>&#9888; {e(w)}</p>" for w in summary.get("warnings", []))
    cal = summary.get("calibration")
    calib = ("calibrated on the training scenes' validation strips (Platt scaling)" if cal and cal.get("fitted")
             else "<b>not calibrated</b> (" + ("its calibration fit failed" if cal else "the model has no calibration")
             + "): the interval is the widest reading")
    cell = summary.get("cell") or {"pixels": 16, "metres": float("nan")}
    cell_text = f"{cell['pixels']} x {cell['pixels']} pixel cells (about {_num(cell['metres'], '{:,.0f}')} m)"
    restr = ", ".join(summary["restrictions"]) or "none"
    attrib = "".join(f"<li>{e(a)}</li>" for a in summary["attribution"]) or "<li>none recorded</li>"
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Change report: {e(summary['model'])}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:1em auto;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #999;padding:.3em .7em;text-align:right}}
td:first-child,th:first-child{{text-align:left}}img{{max-width:100%;border:1px solid #999}}
.warn{{background:#fff3cd;border:1px solid #c90;padding:.4em}}</style></head>
<body><h1>Where the land changed</h1>{warn}
<p>Model <b>{e(summary['model'])}</b>; a pixel counts as changed when its change probability is at least
{summary['threshold']:.2f}. Grid {summary['width']} x {summary['height']} pixels, {e(str(summary['crs']))}.</p>
<img alt="map of detected change" src="data:image/png;base64,{img}">
<h2>Change per territory</h2>
<table><tr><th>territory</th><th>area with data (ha)</th><th>covered (% of it)</th><th>changed (ha)</th>
<th>changed (% of area)</th>
<th>expected changed (ha)</th><th>{level:.0%} interval (ha)</th></tr>{rows}</table>
<p><small>"Changed" counts pixels at or above the threshold. "Expected" sums each pixel's change probability,
{calib}; the interval allows for the model's errors hanging together within {cell_text} (wider and safer
than treating every pixel as independent) and for a scene-wide error as large as it was on the training cities'
validation strips, measured on cities the calibration was not fitted on. It does not cover a scene further from
what the model learned (another sensor, season or landscape) than any of those. Figures count only the part of
a territory with data on both dates ("covered").</small></p>
<h2>Where the model is least sure</h2>
<p>Places ({cell_text}) with the most area whose change probability is between 0.2 and 0.8: check these
on the ground or on other imagery before citing the figures.</p>{unsure}
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
