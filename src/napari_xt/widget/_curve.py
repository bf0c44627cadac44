"""The Fine-tune tab's live training curve: a plain QWidget painting two polylines, cheap enough to repaint on every
training step without slowing the viewer (no plotting library in the dock)."""

from __future__ import annotations

from qtpy.QtCore import QPointF
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget


class CurveView(QWidget):
    """Training loss (per window, grey) and validation score (per epoch, orange, 0..1) as two polylines."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.loss: list[float] = []
        self.val: list[float] = []
        self.setMinimumHeight(90)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip("grey: training loss per window; orange: validation score per epoch (0-1)")

    def clear(self) -> None:
        self.loss, self.val = [], []
        self.update()

    def paintEvent(self, _event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        w, h = self.width(), self.height()
        painter.fillRect(0, 0, w, h, QColor(38, 41, 48))
        for values, color, top in ((self.loss, QColor(170, 170, 170), max(self.loss or [1.0])),
                                   (self.val, QColor(255, 160, 40), 1.0)):
            if len(values) < 2 or top <= 0:
                continue
            n = len(values) - 1
            pts = [QPointF(4 + (w - 8) * i / n, h - 4 - (h - 8) * min(v / top, 1.0)) for i, v in enumerate(values)]
            painter.setPen(QPen(color, 1.5))
            painter.drawPolyline(QPolygonF(pts))
        painter.end()
