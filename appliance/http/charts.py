"""Inline SVG line charts for the status page: no script, no asset, drawn on the server.

``line_chart(series, start, end)`` draws each series (a name and its ``(time, value)`` samples) as a
polyline over the time range, with a gap where a sample is missing for longer than ``gap`` seconds
(the daemon was not running, the modem had no signal reading), hour ticks in UTC, a y scale from the
values, and a legend. The SVG scales to its container (``viewBox``, width 100%), so it reads on a phone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from html import escape

WIDTH, HEIGHT = 640, 200
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 24, 22
#: Colours of the series in order (readable on white and for common colour blindness: Okabe-Ito).
COLOURS = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000")
GAP = 180.0


def _ticks(low: float, high: float, count: int = 4) -> list[float]:
    """About ``count`` round values from ``low`` to ``high``."""
    span = high - low
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    values = []
    value = first
    while value <= high + step * 1e-9:
        values.append(round(value, 10))
        value += step
    return values


def _number(value: float) -> str:
    return f"{value:g}"


def line_chart(series: Mapping[str, Sequence[tuple[float, float | None]]], start: float, end: float, *,
               unit: str = "", title: str = "", gap: float = GAP, floor: float | None = None) -> str:
    """The SVG of ``series`` from ``start`` to ``end`` (seconds since the epoch); see the module docstring."""
    values = [v for samples in series.values() for _, v in samples if v is not None]
    if values:
        low, high = min(values), max(values)
    else:
        low, high = 0.0, 1.0
    if floor is not None:
        low = min(low, floor)
    if high - low < 1.0:
        high = low + 1.0
    pad = (high - low) * 0.05
    low, high = low - (pad if floor is None or low > floor else 0.0), high + pad
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    span = max(end - start, 1.0)

    def x(t: float) -> float:
        return LEFT + (t - start) / span * plot_w

    def y(v: float) -> float:
        return TOP + (high - v) / (high - low) * plot_h

    out = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
           'xmlns="http://www.w3.org/2000/svg">']
    if title:
        out.append(f"<title>{escape(title)}</title>")
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#ccc"/>')
    for tick in _ticks(low, high):
        ty = y(tick)
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="#e4e4e4"/>')
        out.append(f'<text x="{LEFT - 4}" y="{ty + 4:.1f}" text-anchor="end" font-size="11">'
                   f"{escape(_number(tick))}</text>")
    hours = max(1, round(span / 3600 / 6))  # about six labels
    hour = math.ceil(start / 3600) * 3600
    while hour <= end:
        label = datetime.fromtimestamp(hour, UTC)
        if label.hour % hours == 0:
            tx = x(hour)
            out.append(f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{TOP}" y2="{HEIGHT - BOTTOM}" stroke="#eee"/>')
            out.append(f'<text x="{tx:.1f}" y="{HEIGHT - 6}" text-anchor="middle" font-size="11">'
                       f"{label:%H}:00</text>")
        hour += 3600
    if unit:
        out.append(f'<text x="4" y="{TOP - 8}" font-size="11">{escape(unit)}</text>')
    legend_x = max(LEFT + 6, 12 + 7 * len(unit))  # after the unit's label
    for index, (name, samples) in enumerate(series.items()):
        colour = COLOURS[index % len(COLOURS)]
        for run in _runs(samples, gap):
            points = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in run)
            if len(run) == 1:
                (t, v), = run
                out.append(f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="2.5" fill="{colour}"/>')
            else:
                out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.8" points="{points}"/>')
        out.append(f'<rect x="{legend_x}" y="{TOP - 17}" width="10" height="10" fill="{colour}"/>')
        out.append(f'<text x="{legend_x + 14}" y="{TOP - 8}" font-size="11">{escape(name)}</text>')
        legend_x += 24 + 7 * len(name)
    if not values:
        out.append(f'<text x="{LEFT + plot_w / 2:.0f}" y="{TOP + plot_h / 2:.0f}" text-anchor="middle" '
                   'font-size="13" fill="#777">no samples yet</text>')
    out.append("</svg>")
    return "".join(out)


def _runs(samples: Sequence[tuple[float, float | None]], gap: float) -> list[list[tuple[float, float]]]:
    """The samples split where a value is missing or the next sample is more than ``gap`` seconds on."""
    runs: list[list[tuple[float, float]]] = []
    current: list[tuple[float, float]] = []
    for t, v in sorted(samples):
        if v is None or (current and t - current[-1][0] > gap):
            if current:
                runs.append(current)
            current = []
        if v is not None:
            current.append((t, v))
    if current:
        runs.append(current)
    return runs
