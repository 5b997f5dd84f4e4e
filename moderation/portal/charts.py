"""Dashboard charts drawn server-side as SVG: no chart library, no CDN,
readable without JavaScript. Every label is escaped."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

COLOURS = {"human": "#6d9dc5", "auto": "#5a6270", "approved": "#5fae8a", "rejected": "#d7776b",
           "escalated": "#d9a94f"}


def hourly_bars(per_hour: list[tuple[datetime, int, int]], width: int = 720, height: int = 180) -> SafeString:
    """Stacked bars per hour: moderators on top of automatic routing."""
    if not per_hour:
        return mark_safe("")
    top = max((h + a for _, h, a in per_hour), default=0) or 1
    pad_left, pad_right, pad_bottom = 36, 24, 22
    plot_w, plot_h = width - pad_left - pad_right, height - pad_bottom - 8
    slot = plot_w / len(per_hour)
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="Decisions per hour, moderators and automatic">']
    for fraction in (0, 0.5, 1):
        y = 8 + plot_h * (1 - fraction)
        parts.append(f'<line class="grid" x1="{pad_left}" x2="{width - pad_right}" y1="{y:.1f}" y2="{y:.1f}"/>'
                     f'<text class="axis" x="{pad_left - 6}" y="{y + 4:.1f}" text-anchor="end">'
                     f'{round(top * fraction)}</text>')
    for i, (hour, human, auto) in enumerate(per_hour):
        x = pad_left + i * slot + 1
        label = timezone.localtime(hour).strftime("%H:00")
        y = 8 + plot_h
        for value, kind in ((auto, "auto"), (human, "human")):
            h = plot_h * value / top
            y -= h
            if value:
                parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(slot - 2, 1):.1f}" height="{h:.1f}" '
                             f'fill="{COLOURS[kind]}"><title>{label}: {value} {kind}</title></rect>')
        if i % max(1, len(per_hour) // 8) == 0:
            parts.append(f'<text class="axis" x="{x + slot / 2:.1f}" y="{height - 6}" '
                         f'text-anchor="middle">{label}</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))


def stacked_rows(rows: list[tuple[str, dict[str, int]]], keys=("approved", "rejected", "escalated"),
                 width: int = 720, row_h: int = 26) -> SafeString:
    """One horizontal bar per row, split by decision, scaled to the largest row."""
    if not rows:
        return mark_safe("")
    label_w = 200
    top = max(sum(v.get(k, 0) for k in keys) for _, v in rows) or 1
    height = row_h * len(rows) + 4
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="Decisions by row">']
    for i, (label, values) in enumerate(rows):
        y = i * row_h + 4
        parts.append(f'<text class="label" x="{label_w - 8}" y="{y + row_h * 0.6:.1f}" text-anchor="end">'
                     f'{escape(label[:28])}</text>')
        x = float(label_w)
        for key in keys:
            value = values.get(key, 0)
            w = (width - label_w - 60) * value / top
            if value:
                parts.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row_h - 8}" '
                             f'fill="{COLOURS[key]}"><title>{escape(label)}: {value} {key}</title></rect>')
            x += w
        parts.append(f'<text class="axis" x="{x + 6:.1f}" y="{y + row_h * 0.6:.1f}">'
                     f'{sum(values.get(k, 0) for k in keys)}</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))


def share_bar(automatic: int, human: int, width: int = 720, height: int = 28) -> SafeString:
    total = automatic + human
    if not total:
        return mark_safe("")
    auto_w = width * automatic / total
    return mark_safe(
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{automatic} automatic, {human} by moderators">'
        f'<rect x="0" y="0" width="{auto_w:.1f}" height="{height}" fill="{COLOURS["auto"]}">'
        f'<title>{automatic} automatic</title></rect>'
        f'<rect x="{auto_w:.1f}" y="0" width="{width - auto_w:.1f}" height="{height}" fill="{COLOURS["human"]}">'
        f'<title>{human} by moderators</title></rect></svg>'
    )
