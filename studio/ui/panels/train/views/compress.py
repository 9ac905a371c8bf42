"""The views of the lessons that make the digits CNN smaller.

``quantize``: a table of every setting (bytes, time for the test set, accuracy, what was quantized
and what stayed float32 and why), bars of size, time and accuracy next to float32's, and the last
layer's weights in steps of their scale before and after rounding (the grid).

``prune``: the test accuracy against sparsity for both methods without fine-tuning, the fine-tuned
points, a sparsity slider, the filters with the removed weights and filters blank, and which
filters went.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSlider, QTextBrowser, QWidget

from studio.core.wording import count_of
from studio.ui.panels.train import plotting as pk
from studio.ui.panels.train.views.base import LessonView
from studio.ui.panels.train.views.cnn import (
    NEGATIVE,
    POSITIVE,
    image_plot,
    stacked,
    tile_images,
)
from studio.ui.panels.train.widgets import ElidedLabel, LegendStrip, caption, plot_grid
from studio.ui.theme import colors

SHORT = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16", "float8_weight": "fp8",
         "int8_weight": "int8", "int8_dynamic": "int8 dyn", "int4_weight": "int4"}
BARS = (("size_ratio", "size × float32"), ("time_ratio", "time × float32"),
        ("acc", "test accuracy"))
BAR_WIDTH = 0.26
BIN_STEP = 0.25  # the lesson's histogram bins, in grid steps (quantize.BIN)
ZOOM_STEPS = 24  # grid steps each side the rounding-grid plot opens on


def _kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB"


def _note(name: str) -> ElidedLabel:
    """The muted line over a view that says what is happening."""
    label = ElidedLabel("")
    label.setObjectName(name)
    label.setProperty("muted", True)
    return label


def _training_note(snapshot: dict[str, Any]) -> str:
    return (f"Training the digits CNN: step {snapshot['cnn_step']} of "
            f"{snapshot['train_steps']} · test accuracy {snapshot['float_acc']:.1%}")


class QuantizeView(LessonView):
    """The table, the bars and the rounding grid of the ``quantize`` lesson."""

    def __init__(self, lesson_key: str, parent: QWidget | None = None) -> None:
        super().__init__(lesson_key, parent)
        self.note = _note("quantizeNote")
        self.table = QTextBrowser()
        self.table.setObjectName("quantizeTable")
        self.table.setOpenLinks(False)
        self.table.setMinimumHeight(120)
        self.bars_plot = pk.themed_plot()
        self.bars_plot.setObjectName("quantizeBars")
        self.bars_plot.getPlotItem().getViewBox().setMouseEnabled(False, False)
        self.bars = [pg.BarGraphItem(x=np.zeros(0), height=np.zeros(0), width=BAR_WIDTH,
                                     brush=pg.mkBrush(c), pen=pg.mkPen(None))
                     for c in pk.SERIES_COLORS[:len(BARS)]]
        for item in self.bars:
            self.bars_plot.addItem(item)
        self.bars_legend = LegendStrip()
        self.bars_legend.set_entries([(name, c, "square") for (_k, name), c in
                                      zip(BARS, pk.SERIES_COLORS, strict=False)])
        self.hist_plot = pk.themed_plot()
        self.hist_plot.setObjectName("quantizeGrid")
        self.before = pg.PlotDataItem(pen=pg.mkPen(pk.SERIES_COLORS[0], width=1.5))
        self.after = pg.PlotDataItem(pen=pg.mkPen(pk.SERIES_COLORS[1], width=1.5),
                                     fillLevel=0, brush=pg.mkBrush(pk.SERIES_COLORS[1] + "80"))
        self.hist_plot.addItem(self.before)
        self.hist_plot.addItem(self.after)
        self._hist_setting = ""
        self.hist_caption = caption("Rounding grid")
        self.hist_legend = LegendStrip()
        self.hist_legend.set_entries([("before rounding", pk.SERIES_COLORS[0], "line"),
                                      ("stored (whole steps)", pk.SERIES_COLORS[1], "square")])

        layout = plot_grid(self)
        layout.addWidget(self.note, 0, 0, 1, 2)
        layout.addWidget(self.table, 1, 0, 1, 2)
        layout.addWidget(caption("Size · time · accuracy",
                                 tip="Each setting's bytes and time for the test set as a "
                                     "share of float32's, and its test accuracy"), 2, 0)
        layout.addWidget(self.hist_caption, 2, 1)
        layout.addWidget(self.bars_plot, 3, 0)
        layout.addWidget(self.hist_plot, 3, 1)
        layout.addWidget(self.bars_legend, 4, 0)
        layout.addWidget(self.hist_legend, 4, 1)
        layout.setRowStretch(1, 2)
        layout.setRowStretch(3, 3)
        layout.setColumnStretch(0, 1)
        layout.setColumnStretch(1, 1)
        pk.label_ticks(self.bars_plot, list(SHORT.values()))
        self.apply_theme()

    def apply_theme(self) -> None:
        for plot in (self.bars_plot, self.hist_plot):
            pk.restyle(plot)

    def show_snapshot(self, snapshot: dict[str, Any]) -> None:
        if snapshot["training"]:
            self.note.set_full_text(_training_note(snapshot) + " — then it is quantized")
        else:
            done = sum(r["measured"] for r in snapshot["table"])
            self.note.set_full_text(
                f"Trained {count_of(snapshot['cnn_step'], 'step')} · {done} of {len(snapshot['table'])} "
                f"settings measured on {snapshot['n_test']} test digits; times keep being "
                "measured (the median shows)")
        self._table(snapshot["table"])
        self._bars(snapshot["table"])
        self._histogram(snapshot["histogram"])

    def _table(self, table: list[dict[str, Any]]) -> None:
        rows = []
        for row in table:
            if row["measured"]:
                cells = [row["label"], _kib(row["bytes"]), f"{row['size_ratio']:.0%}",
                         f"{row['ms']:.1f} ms", f"{row['acc']:.1%}", row["note"]]
            else:
                cells = [row["label"], "…", "", "", "", "not measured yet"]
            rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
                        + "</tr>")
        head = "".join(f"<th align='left'>{h}</th>" for h in
                       ("Setting", "Size", "× float32", "Test set", "Accuracy", "What happened"))
        html_text = ("<table cellpadding='3' cellspacing='0' width='100%'><tr>" + head + "</tr>"
                     + "".join(rows) + "</table>")
        if html_text != getattr(self, "_html", None):
            self._html = html_text
            bar = self.table.verticalScrollBar()
            keep = bar.value()
            self.table.setHtml(html_text)
            bar.setValue(keep)

    def _bars(self, table: list[dict[str, Any]]) -> None:
        xs = np.arange(len(table), dtype=np.float64)
        measured = np.array([r["measured"] for r in table], bool)
        top = 1.0
        for k, ((key, _name), item) in enumerate(zip(BARS, self.bars, strict=True)):
            heights = np.array([r.get(key, 0.0) if r["measured"] else 0.0 for r in table])
            top = max(top, float(heights.max(initial=0.0)))
            item.setOpts(x=xs[measured] + (k - 1) * BAR_WIDTH, height=heights[measured],
                         width=BAR_WIDTH)
        self.bars_plot.setRange(xRange=(-0.6, len(table) - 0.4), yRange=(0, top * 1.05),
                                padding=0)

    def _histogram(self, hist: dict[str, Any] | None) -> None:
        if hist is None:
            self.before.setData([], [])
            self.after.setData([], [])
            self.hist_caption.set_full_text("Rounding grid")
            self.hist_caption.setToolTip("Shown once the chosen setting is measured (and when "
                                         "its last layer could be quantized)")
            return
        edges, before, after = hist["edges"], hist["before"], hist["after"]
        # each scaled to its own tallest bin: the stored values pile into a quarter of the bins
        self.before.setData(edges, before / max(float(before.max()), 1.0), stepMode="center")
        self.after.setData(edges, after / max(float(after.max()), 1.0), stepMode="center",
                           fillLevel=0)
        half = (len(edges) - 1) * BIN_STEP / 2
        shown = min(half, ZOOM_STEPS)  # int8's 255 steps would be a solid block: the middle
        self.hist_caption.set_full_text(f"Rounding grid · {hist['label']} · {hist['layer']}")
        self.hist_caption.setToolTip(
            f"The weights of {hist['layer']} divided by the scale of their block: before rounding "
            f"(line) and as {hist['label']} stores them (filled: only whole steps)"
            + (f". The middle ±{ZOOM_STEPS} steps of ±{int(half)}: drag or scroll to see the "  # plural-ok
               "rest" if shown < half else ""))
        if hist["setting"] != self._hist_setting:
            self._hist_setting = hist["setting"]
            self.hist_plot.setRange(xRange=(-shown, shown), yRange=(0, 1.05), padding=0)

    def reset(self) -> None:
        self._hist_setting = ""
        self._html = None

    def export_items(self) -> dict[str, QWidget]:
        return {"Size, time and accuracy": self.bars_plot, "Rounding grid": self.hist_plot}


class PruneView(LessonView):
    """The accuracy-against-sparsity curves, the sparsity slider and the pruned filters."""

    def __init__(self, lesson_key: str, parent: QWidget | None = None) -> None:
        super().__init__(lesson_key, parent)
        self.note = _note("pruneNote")
        self.curve_plot = pk.themed_plot()
        self.curve_plot.setObjectName("pruneCurves")
        self.curve_plot.setLabel("bottom", "sparsity")
        self.curve_plot.setLabel("left", "test accuracy")
        self.curve_plot.setRange(xRange=(0, 1), yRange=(0, 1), padding=0.02)
        self.curve_plot.getPlotItem().getViewBox().setMouseEnabled(False, False)
        self.curves = {}
        self.tuned = {}
        for k, method in enumerate(("magnitude", "structured")):
            color = pk.SERIES_COLORS[k]
            self.curves[method] = pg.PlotDataItem(pen=pg.mkPen(color, width=1.5), symbol="o",
                                                  symbolSize=5, symbolBrush=color,
                                                  symbolPen=None)
            self.tuned[method] = pg.ScatterPlotItem(size=11, symbol="star", brush=color,
                                                    pen=pg.mkPen(colors().text))
            self.curve_plot.addItem(self.curves[method])
            self.curve_plot.addItem(self.tuned[method])
        self.curve_legend = LegendStrip()
        self.filters_plot, self.filters_image = image_plot("pruneFilters")
        self.removed = _note("pruneRemoved")
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setObjectName("pruneSparsity")
        self.slider.setRange(0, 95)
        self.slider.setToolTip("Sparsity to prune at, then fine-tune (also in the settings)")
        self.slider_label = QLabel("80 %")
        self.slider_label.setProperty("muted", True)
        self.slider_label.setMinimumWidth(self.slider_label.fontMetrics().horizontalAdvance(
            "100 %") + 4)
        self.slider.valueChanged.connect(lambda v: self.slider_label.setText(f"{v} %"))
        self.slider.sliderReleased.connect(self._send_sparsity)
        self.slider.valueChanged.connect(
            lambda _v: None if self.slider.isSliderDown() else self._send_sparsity())

        layout = plot_grid(self)
        layout.addWidget(self.note, 0, 0, 1, 2)
        layout.addWidget(caption("Accuracy vs sparsity",
                                 tip="Lines: test accuracy right after pruning, no training. "
                                     "Stars: after fine-tuning at the slider's sparsity."), 1, 0)
        layout.addWidget(caption("Filters (blank = removed)",
                                 tip="Top: the first conv layer's filters. Below: the second's, "
                                     "each as the mean size of its kernels. Removed weights and "
                                     "filters are blank."), 1, 1)
        layout.addWidget(self.curve_plot, 2, 0)
        layout.addWidget(self.filters_plot, 2, 1)
        layout.addWidget(self.curve_legend, 3, 0)
        row = QHBoxLayout()
        row.setSpacing(6)
        name = QLabel("Sparsity")
        name.setProperty("muted", True)
        row.addWidget(name)
        row.addWidget(self.slider, 1)
        row.addWidget(self.slider_label)
        layout.addLayout(row, 3, 1)
        layout.addWidget(self.removed, 4, 0, 1, 2)
        layout.setRowStretch(2, 1)
        layout.setColumnStretch(0, 1)
        layout.setColumnStretch(1, 1)
        self.apply_theme()

    def _send_sparsity(self) -> None:
        self.setParamRequested.emit("sparsity", self.slider.value() / 100.0)

    def apply_theme(self) -> None:
        for plot in (self.curve_plot, self.filters_plot):
            pk.restyle(plot)
        self.filters_image.setLookupTable(pk.gradient_lut([NEGATIVE, colors().surface, POSITIVE]))
        for item in self.tuned.values():
            item.setPen(pg.mkPen(colors().text))

    def show_snapshot(self, snapshot: dict[str, Any]) -> None:
        names = snapshot["method_names"]
        self.curve_legend.set_entries(
            [(f"{names[m]}", pk.SERIES_COLORS[k], "line") for k, m in enumerate(names)]
            + [("fine-tuned", colors().text, "★")])
        for method, item in self.curves.items():
            pts = snapshot["curves"][method]
            item.setData(pts[:, 0], pts[:, 1])
            tuned = [p for p in snapshot["tuned"] if p["method"] == method]
            self.tuned[method].setData([p["sparsity"] for p in tuned], [p["acc"] for p in tuned])
        config = snapshot.get("config_sparsity")
        if config is not None and not self.slider.isSliderDown():
            self.slider.blockSignals(True)
            self.slider.setValue(int(round(config * 100)))
            self.slider_label.setText(f"{self.slider.value()} %")
            self.slider.blockSignals(False)
        self._filters(snapshot)
        if snapshot["training"]:
            self.note.set_full_text(_training_note(snapshot) + " — then it is pruned")
        elif not snapshot["pruned"]:
            self.note.set_full_text(
                f"Trained {count_of(snapshot['cnn_step'], 'step')} ({snapshot['float_acc']:.1%}) · "
                "pruning "
                "copies at 0–95 % sparsity, no fine-tuning")
        else:
            point = next((p for p in snapshot["tuned"] if p["method"] == snapshot["method"]
                          and abs(p["sparsity"] - snapshot["sparsity"]) < 1e-6), None)
            steps = point["steps"] if point else 0
            self.note.set_full_text(
                f"{names[snapshot['method']]} at {snapshot['sparsity']:.0%}: "
                f"{snapshot['reached']:.1%} of the "
                f"{'conv ' if snapshot['method'] == 'structured' else ''}weights are zero · "
                f"fine-tuned {count_of(steps, 'step')}: "
                f"{point['acc'] if point else 0:.1%} (right after pruning "
                f"{point['before'] if point else 0:.1%}; unpruned {snapshot['float_acc']:.1%})"
                + (f" · filters cut out: {point['cut_bytes'] / point['dense_bytes']:.0%} of the "
                   f"bytes, test set {point['cut_ms']:.1f} ms (unpruned {point['dense_ms']:.1f})"
                   if point and "cut_bytes" in point else ""))
        removed = snapshot["removed"]
        layers = snapshot["layer_sparsity"]
        parts = [f"{name}: {share:.0%} zero" for name, share in layers.items()]
        for name, filters in removed.items():
            if filters:
                parts.append(f"{name} filters removed: {', '.join(map(str, filters))}")
        if snapshot["blocked"]:
            parts.append(snapshot["blocked"])
        text = " · ".join(parts)
        self.removed.set_full_text(text)

    def _filters(self, snapshot: dict[str, Any]) -> None:
        f1, f2 = snapshot["filters1"], snapshot["filters2"]  # (w, 3, 3), (2w, 3, 3)

        def scaled(f: np.ndarray) -> np.ndarray:  # per filter, 0 at the middle of the scale
            flat = np.nan_to_num(np.abs(f.reshape(len(f), -1)))
            return 0.5 + 0.5 * f / flat.max(axis=1).clip(min=1e-8).reshape(-1, 1, 1)

        cols = 8  # conv1 in two rows (at the default 16 filters), conv2 in four
        self.filters_image.setImage(stacked(tile_images(scaled(f1), cols),
                                            tile_images(scaled(f2), cols)), autoLevels=False)

    def export_items(self) -> dict[str, QWidget]:
        return {"Accuracy vs sparsity": self.curve_plot, "Pruned filters": self.filters_plot}
