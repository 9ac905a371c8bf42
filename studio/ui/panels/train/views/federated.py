"""The ``federated`` lesson's view: which client holds which classes (a grid of image counts),
each client's accuracy beside the global model's, each client's drift, and what travelled
(weights, counted in bytes) against what never left a client (its images).

The global and mean client accuracy curves are the loss plot's series.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF
from PySide6.QtWidgets import QTextBrowser, QWidget

from studio.core.wording import count_of
from studio.ui.panels.train import plotting as pk
from studio.ui.panels.train.views.base import LessonView
from studio.ui.panels.train.views.cnn import image_plot
from studio.ui.panels.train.widgets import ElidedLabel, LegendStrip, caption, plot_grid

#: per-client accuracy bars: (key in the snapshot's ``last``, legend name, colour)
ACC_BARS = (("own_acc", "Client's model, its classes", pk.SERIES_COLORS[1]),
            ("acc", "Client's model, all classes", pk.SERIES_COLORS[3]),
            ("global_own_acc", "Global model, client's classes", pk.SERIES_COLORS[0]))
BAR_WIDTH = 0.26


def _size(n_bytes: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n_bytes < 1000 or unit == "GB":
            return f"{n_bytes:,.0f} {unit}" if unit == "bytes" else f"{n_bytes:,.1f} {unit}"
        n_bytes /= 1000
    return ""


def shared_panel_html(snapshot: dict[str, Any]) -> str:
    """What travelled (the weights, counted) and what stayed on each client (its images)."""
    names = snapshot["class_names"]
    n_clients = len(snapshot["images_kept"])
    weights = int(snapshot["n_weights"])
    rows = "".join(
        f"<tr><td>Client {k + 1}</td><td>{count_of(n, 'image')} of "
        f"{html.escape(', '.join(str(names[c]) for c in classes))}</td></tr>"
        for k, (n, classes) in enumerate(zip(snapshot["images_kept"],
                                             snapshot["client_classes"], strict=True)))
    kept_bytes = sum(snapshot["images_kept"]) * int(snapshot["image_bytes"])
    return (
        "<p><b>Shared (sent over the network):</b> the model's weights only — "
        f"{weights:,} numbers, down to each of {n_clients} clients and back every round: "
        f"{_size(snapshot['bytes_per_round'])} a round, {_size(snapshot['bytes_total'])} in "
        f"{snapshot['step']} rounds so far.</p>"
        "<p><b>Never leaves a client:</b> its images and their labels "
        f"({count_of(sum(snapshot['images_kept']), 'image')}, {kept_bytes:,} pixels in all). "
        "The server "
        "sees only averaged weights.</p>"
        f"<table cellpadding='2'>{rows}</table>")


class FederatedView(LessonView):
    def __init__(self, lesson_key: str, parent: QWidget | None = None) -> None:
        super().__init__(lesson_key, parent)
        self._shape: tuple[int, int] | None = None
        self._shared_html = ""
        self.status = ElidedLabel("")
        self.status.setObjectName("federatedStatus")
        self.holdings_plot, self.holdings_image = image_plot("federatedHoldings")
        item = self.holdings_plot.getPlotItem()
        item.showAxis("left")
        item.showAxis("bottom")
        self.acc_plot = pk.themed_plot()
        self.acc_plot.setObjectName("federatedAccuracy")
        self.acc_plot.getPlotItem().getViewBox().setMouseEnabled(False, False)
        self.acc_bars = {}
        for i, (key, _name, color) in enumerate(ACC_BARS):
            bar = pg.BarGraphItem(x=np.zeros(0), height=np.zeros(0), width=BAR_WIDTH,
                                  brush=pg.mkBrush(color), pen=pg.mkPen(None))
            bar._studio_offset = (i - 1) * BAR_WIDTH
            self.acc_plot.addItem(bar)
            self.acc_bars[key] = bar
        self.acc_legend = LegendStrip()
        self.acc_legend.set_entries([(name, color, "square") for _k, name, color in ACC_BARS])
        self.drift_plot = pk.themed_plot()
        self.drift_plot.setObjectName("federatedDrift")
        self.drift_plot.getPlotItem().getViewBox().setMouseEnabled(False, False)
        self.drift_bars = pk.bars(self.drift_plot, 0, pk.SERIES_COLORS[4])
        self.drift_range = pk.StickyRange(self.drift_plot, zero_y=True)
        self.shared = QTextBrowser()
        self.shared.setObjectName("federatedShared")
        self.shared.setOpenLinks(False)

        layout = plot_grid(self)
        layout.addWidget(self.status, 0, 0, 1, 2)
        layout.addWidget(caption("Who holds what",
                                 tip="Rows: clients; columns: classes; brighter = more images. "
                                     "Each client sees only its own row."), 1, 0)
        layout.addWidget(self.holdings_plot, 2, 0)
        layout.addWidget(caption("Accuracy per client",
                                 tip="On the test set, after the last round: each client's own "
                                     "model on its classes and on all classes, and the global "
                                     "(averaged) model on the client's classes"), 1, 1)
        layout.addWidget(self.acc_plot, 2, 1)
        layout.addWidget(self.acc_legend, 3, 1)
        layout.addWidget(caption("Client drift",
                                 tip="How far each client's weights moved (L2 distance) from "
                                     "the global weights it received, in the last round"), 4, 0)
        layout.addWidget(self.drift_plot, 5, 0)
        layout.addWidget(caption("Shared vs never leaves"), 4, 1)
        layout.addWidget(self.shared, 5, 1)
        layout.setRowStretch(2, 1)
        layout.setRowStretch(5, 1)
        layout.setColumnStretch(0, 1)
        layout.setColumnStretch(1, 1)
        self.apply_theme()

    def apply_theme(self) -> None:
        for plot in (self.holdings_plot, self.acc_plot, self.drift_plot):
            pk.restyle(plot)
        self.holdings_image.setLookupTable(pk.heat_lut())

    def show_snapshot(self, snapshot: dict[str, Any]) -> None:
        last = snapshot["last"]
        holdings = snapshot["holdings"].astype(np.float64)
        n_clients, n_classes = holdings.shape
        if self._shape != (n_clients, n_classes):
            self._shape = (n_clients, n_classes)
            names = [str(n) for n in snapshot["class_names"]]
            short = names if all(len(n) <= 3 for n in names) else [str(i) for i in
                                                                   range(n_classes)]
            pk.label_ticks(self.holdings_plot, short, "bottom")
            clients = [str(k + 1) for k in range(n_clients)]
            pk.label_ticks(self.holdings_plot, clients, "left")
            for plot in (self.acc_plot, self.drift_plot):
                pk.label_ticks(plot, clients)
                plot.setXRange(-0.5, n_clients - 0.5, padding=0)
            self.acc_plot.setYRange(0.0, 1.0, padding=0.02)
            self.drift_range.reset()
        self.holdings_image.setImage(holdings / max(1.0, holdings.max()), autoLevels=False,
                                     levels=(0.0, 1.0))
        # pixel (client k, class c) centred on (c, k), where the ticks name them
        self.holdings_image.setRect(QRectF(-0.5, -0.5, n_classes, n_clients))
        x = np.arange(n_clients, dtype=np.float64)
        for key, bar in self.acc_bars.items():
            bar.setOpts(x=x + bar._studio_offset, height=np.asarray(last[key]))
        drift = np.asarray(last["drift"], dtype=np.float64)
        self.drift_bars.setOpts(x=x, height=drift)
        self.drift_range.show(None, np.array([0.0, float(drift.max()) if len(drift) else 1.0]))
        prox = f" (μ = {snapshot['mu']:g})" if snapshot["strategy"] == "FedProx" else ""
        self.status.set_full_text(
            f"Round {snapshot['step']} · {snapshot['strategy']}{prox}, {snapshot['local_steps']} "
            f"local steps · global model {snapshot['global_acc']:.1%} on the test set · "
            f"{snapshot['data_note']}")
        text = shared_panel_html(snapshot)
        if text != self._shared_html:  # (setting it again would scroll the list back up)
            self._shared_html = text
            self.shared.setHtml(text)

    def reset(self) -> None:
        self._shape = None
        self._shared_html = ""

    def export_items(self) -> dict[str, QWidget]:
        return {"Who holds what": self.holdings_plot, "Accuracy per client": self.acc_plot,
                "Client drift": self.drift_plot}
