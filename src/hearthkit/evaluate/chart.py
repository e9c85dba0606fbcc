"""Bar charts of per-group error rates with their 95% intervals (Pillow; no plotting stack needed)."""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont


def bar_chart(rows: list[dict], metric: str, path: Path, title: str = "") -> Path:
    """One bar per (column, group) row with its CI whisker; the overall row first, in a darker colour."""
    rows = [r for r in rows if not math.isnan(r.get(metric, math.nan))]
    font = ImageFont.load_default()
    bar_h, gap, left, right, top = 22, 8, 230, 90, 40
    width, height = 900, top + len(rows) * (bar_h + gap) + 40
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    d.text((10, 10), title or metric.upper(), fill="black", font=font)
    hi = max([r[metric] for r in rows] + [max(r.get(f"{metric}_ci", [0, 0])) for r in rows
                                          if not any(math.isnan(x) for x in r.get(f"{metric}_ci", [0, 0]))] + [1e-9])
    scale = (width - left - right) / hi
    for i, r in enumerate(rows):
        y = top + i * (bar_h + gap)
        label = "overall" if r["by"] == "overall" else f"{r['by']}={r['group']}"
        d.text((10, y + 5), f"{label[:30]} (n={r['n']})", fill="black", font=font)
        colour = "#30506e" if r["by"] == "overall" else "#6a9fd0"
        d.rectangle([left, y, left + r[metric] * scale, y + bar_h], fill=colour)
        ci = r.get(f"{metric}_ci")
        if ci and not any(math.isnan(x) for x in ci):
            x0, x1, ym = left + ci[0] * scale, left + ci[1] * scale, y + bar_h // 2
            d.line([x0, ym, x1, ym], fill="black", width=2)
            d.line([x0, y + 4, x0, y + bar_h - 4], fill="black", width=2)
            d.line([x1, y + 4, x1, y + bar_h - 4], fill="black", width=2)
        d.text((left + max(r[metric], max(ci) if ci and not any(math.isnan(x) for x in ci) else 0) * scale + 6,
                y + 5), f"{r[metric]:.3f}", fill="black", font=font)
    d.line([left, height - 30, width - right, height - 30], fill="grey")
    d.text((left, height - 25), "0", fill="grey", font=font)
    d.text((width - right - 20, height - 25), f"{hi:.2f}", fill="grey", font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    img.save(tmp, format="PNG")
    tmp.replace(path)
    return path
