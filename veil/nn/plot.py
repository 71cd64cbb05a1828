"""A loss curve as a PNG, without a plotting library (zlib and struct only).

Draws the per-epoch training loss (blue, left scale) and, when present, the accuracies
(orange: train, green: eval; right scale 0..100 %) with axes, grid lines and numeric
tick labels in a tiny built-in pixel font. Enough to watch a run; use matplotlib on
``History.epochs`` for anything fancier.
"""

from __future__ import annotations

import struct
import zlib

# 3x5 pixel glyphs: digits, '.', '%', '-'
_GLYPHS = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111",
    "3": "111001111001111", "4": "101101111001001", "5": "111100111001111",
    "6": "111100111101111", "7": "111001010010010", "8": "111101111101111",
    "9": "111101111001111", ".": "000000000000010", "%": "101001010100101",
    "-": "000000111000000",
}
BLUE, ORANGE, GREEN = (31, 119, 180), (255, 127, 14), (44, 160, 44)
GRID, AXIS, TEXT = (225, 225, 225), (60, 60, 60), (40, 40, 40)


class _Canvas:
    def __init__(self, w: int, h: int) -> None:
        self.w, self.h = w, h
        self.px = bytearray(b"\xff" * (w * h * 3))

    def dot(self, x: int, y: int, c, r: int = 0) -> None:
        for dx in range(-r, r + 1):
            for dy in range(-r, r + 1):
                xx, yy = x + dx, y + dy
                if 0 <= xx < self.w and 0 <= yy < self.h:
                    i = 3 * (yy * self.w + xx)
                    self.px[i:i + 3] = bytes(c)

    def line(self, x0, y0, x1, y1, c, r: int = 0) -> None:
        n = max(abs(x1 - x0), abs(y1 - y0), 1)
        for k in range(n + 1):
            self.dot(round(x0 + (x1 - x0) * k / n), round(y0 + (y1 - y0) * k / n), c, r)

    def text(self, x: int, y: int, s: str, c=TEXT, scale: int = 2) -> None:
        for ch in s:
            g = _GLYPHS.get(ch)
            if g is not None:
                for i, bit in enumerate(g):
                    if bit == "1":
                        for sx in range(scale):
                            for sy in range(scale):
                                self.dot(x + (i % 3) * scale + sx, y + (i // 3) * scale + sy, c)
            x += 4 * scale

    def png(self) -> bytes:
        raw = b"".join(b"\x00" + bytes(self.px[3 * self.w * y:3 * self.w * (y + 1)])
                       for y in range(self.h))

        def chunk(tag: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + tag + data + \
                struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", self.w, self.h,
                                                                    8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def _fmt(v: float) -> str:
    return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"


def save_loss_curve(history, path, width: int = 640, height: int = 400) -> None:
    """Write ``history`` (a `veil.nn.History`, or a list of per-epoch dicts with ``loss``
    and optionally ``train_acc`` / ``eval_acc``) as a PNG line chart at ``path``.

    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "loss.png")
    >>> save_loss_curve([{"loss": 0.7, "train_acc": 0.6}, {"loss": 0.3, "train_acc": 0.9}], p)
    >>> open(p, "rb").read(8) == b"\\x89PNG\\r\\n\\x1a\\n"
    True
    """
    rows = getattr(history, "epochs", history)
    loss = [r.get("loss") for r in rows]
    if not loss or any(v is None for v in loss):
        raise ValueError("no loss values to plot here (metrics are revealed to one party: "
                         "save the curve there)")
    c = _Canvas(width, height)
    left, right, top, bottom = 60, width - 60, 20, height - 40
    lo, hi = min(0.0, min(loss)), max(loss) * 1.05 or 1.0
    n = len(loss)

    def x_at(i):
        return left + (right - left) * (i / max(n - 1, 1))

    def y_loss(v):
        return bottom - (bottom - top) * (v - lo) / (hi - lo)

    def y_acc(a):
        return bottom - (bottom - top) * a

    for k in range(5):
        y = round(top + (bottom - top) * k / 4)
        c.line(left, y, right, y, GRID)
        c.text(4, y - 5, _fmt(hi - (hi - lo) * k / 4), BLUE)
        c.text(right + 6, y - 5, f"{100 - 25 * k}%", TEXT)
    c.line(left, top, left, bottom, AXIS)
    c.line(left, bottom, right, bottom, AXIS)
    c.line(right, top, right, bottom, AXIS)
    for i in range(n):
        if n <= 20 or i % max(1, n // 10) == 0 or i == n - 1:
            c.line(round(x_at(i)), bottom, round(x_at(i)), bottom + 4, AXIS)
            c.text(round(x_at(i)) - 3, bottom + 10, str(i + 1))
    for key, color in (("train_acc", ORANGE), ("eval_acc", GREEN)):
        acc = [r.get(key) for r in rows]
        if all(a is not None for a in acc):
            pts = [(x_at(i), y_acc(a)) for i, a in enumerate(acc)]
            for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
                c.line(round(x0), round(y0), round(x1), round(y1), color, 1)
    pts = [(x_at(i), y_loss(v)) for i, v in enumerate(loss)]
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        c.line(round(x0), round(y0), round(x1), round(y1), BLUE, 1)
    for x, y in pts:
        c.dot(round(x), round(y), BLUE, 2)
    with open(path, "wb") as f:
        f.write(c.png())
