"""Small time charts as inline SVG, drawn on the server (no chart library, no script).

A chart is a polyline per series over the sampler's hour; the y axis starts at zero
and its top is the largest value shown (written beside the chart), so a flat line at
the bottom means "zero", not "no change".
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

#: Stroke colours per series, in order (backlog, DLQ); the CSS legend uses the same.
COLOURS = ("#2563eb", "#dc2626")


def sparkline(
    times: Sequence[float],
    series: Sequence[Sequence[int]],
    *,
    label: str,
    width: int = 180,
    height: int = 36,
) -> Markup:
    """An SVG chart of ``series`` (one list of values per line) over ``times``."""
    if len(times) < 2:
        return Markup('<span class="muted">collecting samples…</span>')
    start, span = times[0], (times[-1] - times[0]) or 1.0
    top = max((max(values) for values in series if values), default=0) or 1
    lines = []
    for colour, values in zip(COLOURS, series, strict=False):
        points = " ".join(
            f"{(t - start) / span * (width - 2) + 1:.1f},{height - 1 - v / top * (height - 2):.1f}"
            for t, v in zip(times, values, strict=False)
        )
        lines.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{points}"/>'
        )
    title = escape(f"{label}: max {top} over {int(span // 60)} min")
    # Numbers and escaped text only: nothing from a message reaches the markup unescaped.
    return Markup(  # noqa: S704
        f'<svg class="spark" role="img" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}"><title>{title}</title>'
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="none" stroke="#ddd"/>'
        + "".join(lines)
        + f'</svg><span class="muted small"> max {top}</span>'
    )
