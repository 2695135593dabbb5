"""Turning queue data into text for the pages: times, payload previews, the throughput chart.

Pure functions, no I/O. Every text made here is plain text that the templates escape; the chart
is SVG built only from numbers and fixed labels.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..codec import RAW, SERIALIZED

# Characters shown as visible escapes instead of being rendered: C0/C1 controls (but newline
# and tab) and the bidirectional overrides/isolates that could reorder the text around them.
_INERT = {c: f"\\u{c:04x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0),
                                        0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F),
                                        *range(0x2066, 0x206A))
          if c not in (0x0A, 0x09)}
_INERT_ONE_LINE = {**_INERT, 0x0A: "\\n", 0x09: "\\t"}


def inert(text: str, *, one_line: bool = False) -> str:
    """``text`` with control and bidi-override characters shown as ``\\uXXXX`` escapes."""
    return text.translate(_INERT_ONE_LINE if one_line else _INERT)


def cut(text: str, limit: int) -> tuple[str, bool]:
    """``text`` cut to ``limit`` characters, and whether it was cut."""
    return (text, False) if len(text) <= limit else (text[:limit], True)


def as_text(data: bytes) -> str:
    """Bytes as text: UTF-8 where valid, every invalid byte shown as ``\\xNN``."""
    return data.decode("utf-8", "backslashreplace")


@dataclass(frozen=True, slots=True)
class Preview:
    """A payload or result shown as text. ``kind``: json, bytes, raw (not decodable), none."""

    kind: str
    text: str
    size: int
    truncated: bool


PRETTY_MAX = 1024 * 1024  # larger JSON payloads are previewed from their raw text


def preview(stored: bytes | None, limit: int, *, pretty: bool = False,
            one_line: bool = False) -> Preview:
    """A capped, inert preview of a stored payload (tag byte + body, see :mod:`leaseq.codec`).

    At most ``limit`` characters of text. JSON is shown as stored (compact) or, with
    ``pretty`` and up to ``PRETTY_MAX`` bytes, re-indented; raw bytes as UTF-8 with invalid bytes
    escaped. Never raises on any input.
    """
    if stored is None:
        return Preview("none", "", 0, False)
    tag, body = stored[:1], stored[1:]
    kind = "bytes" if tag == RAW else "json" if tag == SERIALIZED else "raw"
    if kind == "raw":
        body = stored
    text: str | None = None
    if kind == "json" and pretty and len(body) <= PRETTY_MAX:
        try:
            text = json.dumps(json.loads(body), ensure_ascii=False, indent=2)
        except (ValueError, RecursionError):
            text = None  # not JSON (another serializer): shown as stored
    if text is None:
        # never decode more than 4 bytes per shown character (UTF-8's longest sequence)
        text = as_text(body[: limit * 4 + 4])
    shown, truncated = cut(inert(text, one_line=one_line), limit)
    return Preview(kind, shown, len(body), truncated or len(body) > limit * 4 + 4)


def value_preview(value: Any, limit: int) -> Preview:
    """A capped, inert preview of a decoded value (a kept result)."""
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        shown, truncated = cut(inert(as_text(data[: limit * 4 + 4])), limit)
        return Preview("bytes", shown, len(data), truncated or len(data) > limit * 4 + 4)
    try:
        text = json.dumps(value, ensure_ascii=False, indent=2)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    shown, truncated = cut(inert(text), limit)
    return Preview("json", shown, len(text), truncated)


def span(ms: float) -> str:
    """A duration in ms as a short human text: ``850 ms``, ``12.3 s``, ``4 min 5 s``, ``2 h``."""
    ms = abs(ms)
    if ms < 1000:
        return f"{ms:.0f} ms"
    s = ms / 1000.0
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    if s < 86400:
        return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"
    return f"{int(s // 86400)} d {int(s % 86400 // 3600)} h"


def relative(at_ms: float, now_ms: float) -> str:
    """``at_ms`` relative to ``now_ms`` (same clock): ``in 3.0 s`` or ``12.0 s ago``."""
    d = at_ms - now_ms
    return f"in {span(d)}" if d >= 0 else f"{span(d)} ago"


def utc(ms: float) -> str:
    """A server-clock time in ms as UTC text, to the millisecond."""
    whole = int(ms // 1000)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(whole)) + f".{int(ms % 1000):03d}Z"


def rate(value: float | None) -> str:
    """A per-second rate for a table cell (empty when unknown)."""
    if value is None:
        return "-"
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


@dataclass(frozen=True, slots=True)
class Series:
    """One line of the chart: a fixed label, a colour and (time ms, value) points."""

    label: str
    color: str
    points: Sequence[tuple[float, float]]


def chart(series: Sequence[Series], *, now_ms: float, span_ms: float, width: int = 640,
          height: int = 140) -> str:
    """An inline SVG line chart of ``series`` over the ``span_ms`` before ``now_ms``.

    Built from numbers and the series' fixed labels only (the labels are escaped anyway).
    """
    left, right, top, bottom = 44, 8, 8, 22
    w, h = width - left - right, height - top - bottom
    peak = max((v for s in series for _, v in s.points), default=0.0)
    top_value = _nice(peak)

    def x(t: float) -> float:
        return left + w * (1 - min(max((now_ms - t) / span_ms, 0.0), 1.0))

    def y(v: float) -> float:
        return top + h * (1 - (v / top_value if top_value else 0.0))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="throughput over the last {span(span_ms)}">',
        f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="#fafafa" '
        f'stroke="#ddd"/>',
        f'<line x1="{left}" y1="{top + h / 2:.1f}" x2="{left + w}" y2="{top + h / 2:.1f}" '
        f'stroke="#eee"/>',
        f'<text x="{left - 4}" y="{top + 9}" text-anchor="end" font-size="10">'
        f'{_short(top_value)}/s</text>',
        f'<text x="{left - 4}" y="{top + h}" text-anchor="end" font-size="10">0</text>',
        f'<text x="{left}" y="{height - 6}" font-size="10">-{span(span_ms)}</text>',
        f'<text x="{left + w}" y="{height - 6}" text-anchor="end" font-size="10">now</text>',
    ]
    for k, s in enumerate(series):
        pts = [(t, v) for t, v in s.points if now_ms - t <= span_ms]
        if len(pts) >= 2:
            path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in pts)
            parts.append(f'<polyline fill="none" stroke="{_color(s.color)}" '
                         f'stroke-width="1.5" points="{path}"/>')
        lx = left + 8 + k * 110
        parts.append(f'<rect x="{lx}" y="{top + 4}" width="10" height="3" '
                     f'fill="{_color(s.color)}"/>')
        parts.append(f'<text x="{lx + 14}" y="{top + 9}" font-size="10">{_escape(s.label)}'
                     f'</text>')
    parts.append("</svg>")
    return "".join(parts)


def _nice(peak: float) -> float:
    """The smallest of 1, 2, 5 x 10^k at or above ``peak`` (1 for an idle chart)."""
    if peak <= 0:
        return 1.0
    scale = 1.0
    while scale * 10 < peak:
        scale *= 10
    while scale > peak and scale > 1e-3:
        scale /= 10
    for m in (1, 2, 5, 10):
        if m * scale >= peak:
            return m * scale
    return 10 * scale


def _short(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:g}M"
    if v >= 1e3:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


def _color(c: str) -> str:
    return c if c.startswith("#") and c[1:].isalnum() and len(c) <= 9 else "#000"


def _escape(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))
