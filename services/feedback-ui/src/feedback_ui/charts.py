"""Charts drawn on the server as SVG: no JavaScript, no chart library, readable by screen readers."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from feedback_ui.stats import Interval

COLORS = {"champion": "#3b6ea8", "challenger": "#c8651b", "pairwise": "#6b6b6b"}


@dataclass(frozen=True)
class Bar:
    label: str
    detail: str
    value: float | None  # a share in [0, 1]; None: no data yet
    interval: Interval
    color: str


# --8<-- [start:bars]
def bar_chart(bars: list[Bar], title: str, width: int = 640, height: int = 280) -> str:
    """Vertical bars on a 0-100% axis, each with its 95% interval as a whisker."""
    left, right, top, bottom = 48, 16, 48, 64
    plot_w, plot_h = width - left - right, height - top - bottom
    slot = plot_w / max(1, len(bars))

    def y(share: float) -> float:
        return top + plot_h * (1 - share)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-labelledby="chart-title" class="chart">',
        f'<title id="chart-title">{escape(title)}</title>',
        f'<text x="{left}" y="20" class="chart-heading">{escape(title)}</text>',
    ]
    for tick in (0, 0.25, 0.5, 0.75, 1):
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end" class="tick">{tick:.0%}</text>')
    for i, bar in enumerate(bars):
        x = left + i * slot + slot * 0.2
        w = slot * 0.6
        mid = x + w / 2
        if bar.value is not None:
            parts.append(
                f'<rect x="{x:.1f}" y="{y(bar.value):.1f}" width="{w:.1f}" height="{plot_h * bar.value:.1f}" '
                f'fill="{bar.color}" data-value="{bar.value:.4f}"><title>{escape(bar.label)}: {bar.value:.1%} '
                f"(95% interval {bar.interval.low:.1%}-{bar.interval.high:.1%})</title></rect>"
            )
            low, high = y(bar.interval.low), y(bar.interval.high)
            parts.append(f'<line x1="{mid:.1f}" x2="{mid:.1f}" y1="{low:.1f}" y2="{high:.1f}" class="whisker"/>')
            for end in (low, high):
                parts.append(
                    f'<line x1="{mid - 8:.1f}" x2="{mid + 8:.1f}" y1="{end:.1f}" y2="{end:.1f}" class="whisker"/>'
                )
            parts.append(
                f'<text x="{mid:.1f}" y="{high - 6:.1f}" text-anchor="middle" class="value">{bar.value:.0%}</text>'
            )
        else:
            parts.append(f'<text x="{mid:.1f}" y="{y(0.5):.1f}" text-anchor="middle" class="empty">no data yet</text>')
        for offset, css, text in ((20, "label", bar.label), (38, "detail", bar.detail)):
            parts.append(
                f'<text x="{mid:.1f}" y="{height - bottom + offset}" text-anchor="middle" class="{css}">'
                f"{escape(text)}</text>"
            )
    parts.append("</svg>")
    return "\n".join(parts)


# --8<-- [end:bars]
