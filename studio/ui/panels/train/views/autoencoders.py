"""The view of the autoencoder, denoising-autoencoder and VAE lessons.

Reconstructions (with a slider back through training history), the latent scatter coloured by
digit class (or, for faces, which have no classes, by brightness: the snapshot names the groups
and says what the colours mean), the decoded latent grid, an interpolation strip and, for the VAE,
the ELBO split and the KL of each latent dimension. Items are created once (the scatter's again
only when the data set's colour groups change); frames only call ``setData``/``setImage``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from studio.ui.panels.train import plotting as pk
from studio.ui.panels.train.views.base import LessonView
from studio.ui.panels.train.widgets import LegendStrip, StepHistory, caption, plot_grid
from studio.ui.theme import colors

HISTORY_EVERY = 20  # steps between kept reconstruction grids
HISTORY_MAX = 200  # kept grids (the oldest are dropped)
RECON_COLS = 5
BLOCK_GAP = 4  # pixels between blocks of original/reconstruction rows
GIF_IMAGE_PX = 48  # an image's width in an exported GIF (8×8 digits ×6, 25×25 faces ×2)
DIGIT_NAMES = tuple(str(d) for d in range(10))
#: Ordered groups (the faces' brightness fifths): dark to bright, readable on both themes.
RAMP_STOPS = ("#5b5fd0", "#2f9fd6", "#3fb58a", "#e0a030", "#f2cd3c")


class AutoencoderView(LessonView):
    """Pictures of an autoencoder learning; one class serves all three lessons."""

    def __init__(self, lesson_key: str, parent: QWidget | None = None) -> None:
        super().__init__(lesson_key, parent)
        self.variational = lesson_key == "vae"
        self._image_side = 8
        self._photo = False  # faces are grey photos; digits are ink (pk.ink_lut)
        self._latent_title: str | None = None

        self.recon_plot = pk.themed_plot(image=True)
        self.recon_image = pk.image_item()
        self.recon_plot.addItem(self.recon_image)
        # the reconstruction grids kept while training, and the slider back through them
        self.history = StepHistory(
            lambda image: self.recon_image.setImage(image, autoLevels=False),
            HISTORY_EVERY, HISTORY_MAX, self)
        self.history_slider, self.history_label = self.history.slider, self.history.label
        self.history_label.setMinimumWidth(120)

        self.latent_plot = pk.themed_plot()
        self.latent_plot.setAspectLocked(True)
        # The colour key sits under the scatter: drawn inside, it covered the points.
        self.legend = LegendStrip()
        self.legend.setObjectName("latentLegend")
        self.class_scatter: list[pg.ScatterPlotItem] = []
        self.group_names: tuple[str, ...] = ()
        self._set_groups(DIGIT_NAMES)
        self.grid_outline = pg.PlotCurveItem()
        self.latent_plot.addItem(self.grid_outline)
        self.latent_range = pk.StickyRange(self.latent_plot)

        self.grid_plot = pk.themed_plot(image=True)
        self.grid_image = pk.image_item()
        self.grid_plot.addItem(self.grid_image)

        self.interp_plot = pk.themed_plot(image=True)
        self.interp_plot.setMinimumHeight(60)
        self.interp_image = pk.image_item()
        self.interp_plot.addItem(self.interp_image)
        self.interp_from = self._digit_box(0, "interp_from")
        self.interp_to = self._digit_box(6, "interp_to")

        for item in (self.recon_image, self.grid_image, self.interp_image):
            item.setLevels((0.0, 1.0))

        denoising = lesson_key == "denoising-autoencoder"
        self.recon_caption = caption(
            "Clean / noisy / output" if denoising else "Input / output",
            tip="Each block of five test images: the originals, "
                + ("the noisy inputs the network gets, " if denoising else "")
                + "and the network's reconstructions, one row each")
        self.latent_caption = caption("Latent space",
                                      tip="Where the encoder puts each test image")
        self.grid_caption = caption(
            "Decoded grid",
            tip="The decoder's output at a grid of points in the latent space, taken at the "
                "quantiles of N(0, 1): what sampling the prior gives" if self.variational
            else "The decoder's output over a grid of latent points (the dashed square in the "
                 "latent plot)")
        layout = plot_grid(self)
        layout.addWidget(self.recon_caption, 0, 0)
        layout.addWidget(self.recon_plot, 1, 0)
        slider_row = QHBoxLayout()
        slider_row.addWidget(self.history_slider, 1)
        slider_row.addWidget(self.history_label)
        layout.addLayout(slider_row, 2, 0)
        layout.addWidget(self.latent_caption, 0, 1)
        latent_box = QVBoxLayout()
        latent_box.setSpacing(2)
        latent_box.addWidget(self.latent_plot, 1)
        latent_box.addWidget(self.legend)
        layout.addLayout(latent_box, 1, 1, 2, 1)
        layout.addWidget(self.grid_caption, 0, 2)
        layout.addWidget(self.grid_plot, 1, 2, 2, 1)

        interp_box = QVBoxLayout()
        interp_head = QHBoxLayout()
        interp_head.addWidget(caption("Interpolation",
                                      tip="Decoded points on the straight line between two "
                                          "codes in the latent space"), 1)
        for text, box in (("from", self.interp_from), ("to", self.interp_to)):
            lbl = QLabel(text)
            lbl.setProperty("muted", True)
            interp_head.addWidget(lbl)
            interp_head.addWidget(box)
        interp_box.addLayout(interp_head)
        interp_box.addWidget(self.interp_plot, 1)
        layout.addLayout(interp_box, 3, 0, 1, 2 if self.variational else 3)

        if self.variational:
            vae_box = QHBoxLayout()
            self.elbo_plot = pk.themed_plot("−ELBO (test)")
            self.elbo_bars = pk.bars(self.elbo_plot, 2, colors().running)
            pk.label_ticks(self.elbo_plot, ["recon", "β·KL"])
            self.kl_plot = pk.themed_plot("KL per z")
            self.kl_bars = pk.bars(self.kl_plot, 2, colors().queued)
            self.elbo_range = pk.StickyRange(self.elbo_plot, zero_y=True)
            self.kl_range = pk.StickyRange(self.kl_plot, zero_y=True)
            vae_box.addWidget(self.elbo_plot)
            vae_box.addWidget(self.kl_plot)
            layout.addLayout(vae_box, 3, 2)
        layout.setRowStretch(1, 3)
        layout.setRowStretch(3, 1)
        for col in range(3):
            layout.setColumnStretch(col, 1)
        self.apply_theme()

    def apply_theme(self) -> None:
        c = colors()
        plots = [self.recon_plot, self.latent_plot, self.grid_plot, self.interp_plot]
        if self.variational:
            plots += [self.elbo_plot, self.kl_plot]
            self.elbo_bars.setOpts(brushes=[pg.mkBrush(c.running), pg.mkBrush(c.queued)])
            self.kl_bars.setOpts(brush=pg.mkBrush(c.queued))
        for plot in plots:
            pk.restyle(plot)
        lut = pk.grey_lut() if self._photo else pk.ink_lut()
        for item in (self.recon_image, self.grid_image, self.interp_image):
            item.setLookupTable(lut)
        self.grid_outline.setPen(pg.mkPen(c.muted, width=1, style=Qt.PenStyle.DashLine))
        if self._latent_title:
            self.latent_plot.getPlotItem().setTitle(self._latent_title, color=c.muted,
                                                    size="8pt")

    def _digit_box(self, value: int, knob: str) -> QSpinBox:
        box = QSpinBox()
        box.setRange(0, 9)
        box.setValue(value)
        box.setToolTip("A digit class (digits), or one of the first ten test faces (faces)")
        box.valueChanged.connect(lambda v, k=knob: self.setParamRequested.emit(k, int(v)))
        return box

    # -- LessonView ----------------------------------------------------------------------------
    def show_snapshot(self, snapshot: dict[str, Any]) -> None:
        step = int(snapshot["step"])
        self._image_side = int(snapshot["originals"].shape[-1])
        photo = bool(snapshot.get("photo", False))
        if photo != self._photo:
            self._photo = photo
            lut = pk.grey_lut() if photo else pk.ink_lut()
            for item in (self.recon_image, self.grid_image, self.interp_image):
                item.setLookupTable(lut)
        recon = self._recon_tiles(snapshot)
        self.history.record(step, recon)

        latent, labels = snapshot["latent"], snapshot["labels"]
        names = tuple(snapshot.get("label_names", DIGIT_NAMES))
        if names != self.group_names:
            self._set_groups(names)
        for group, item in enumerate(self.class_scatter):
            item.setData(pos=latent[labels == group])
        colour_by = snapshot.get("colour_by", "digit class")
        title = "" if colour_by == "digit class" else f"by {colour_by}"
        if title != self._latent_title:
            self._latent_title = title
            self.latent_plot.getPlotItem().setTitle(title or None, color=colors().muted,
                                                    size="8pt")
            self.latent_plot.setToolTip(
                "" if not title else f"Each point is one of {snapshot['scatter_of']}, coloured "
                f"by {colour_by}: {', '.join(names)}.")
        x0, x1, y0, y1 = snapshot["grid_extent"]
        self.grid_outline.setData([x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0])
        self.latent_range.show(np.concatenate([latent[:, 0], [x0, x1]]),
                               np.concatenate([latent[:, 1], [y0, y1]]))
        dims = int(snapshot.get("latent_dim", 2))
        axes = "" if dims == 2 else f" · {snapshot['latent_axes']} of {dims}"
        self.latent_caption.set_full_text(f"Latent space{axes}")
        grid = snapshot["grid"]
        rows, cols = grid.shape[:2]
        self.grid_image.setImage(pk.tile(grid.reshape(rows * cols, *grid.shape[2:]), cols),
                                 autoLevels=False)
        interp = snapshot["interpolation"]
        self.interp_image.setImage(pk.tile(interp, len(interp)), autoLevels=False)
        for box, value in zip((self.interp_from, self.interp_to), snapshot["interp_ends"],
                              strict=True):
            if not box.hasFocus() and box.value() != value:
                box.blockSignals(True)
                box.setValue(value)
                box.blockSignals(False)
        if self.variational:
            split = snapshot["elbo_split"]
            heights = [split["reconstruction"], split["beta"] * split["KL"]]
            self.elbo_bars.setOpts(height=heights)
            self.elbo_range.show(np.array([-0.5, 1.5]), heights)
            kl = snapshot["kl_per_dim"]
            self.kl_bars.setOpts(x=np.arange(len(kl)), height=kl)
            self.kl_range.show(np.array([-0.5, len(kl) - 0.5]), kl)
            pk.label_ticks(self.kl_plot, [f"z{i + 1}" for i in range(len(kl))])

    def _set_groups(self, names: tuple[str, ...]) -> None:
        """One scatter item per colour group, named in the legend: the ten digit classes in
        class colours, or ordered groups (brightness) on a dark-to-bright ramp."""
        for item in self.class_scatter:
            self.latent_plot.removeItem(item)
        ordered = names != DIGIT_NAMES
        palette = ([pg.mkColor(tuple(rgb)) for rgb in pk.gradient_lut(RAMP_STOPS, len(names))]
                   if ordered else [pg.mkColor(col) for col in pk.CLASS_COLORS])
        self.class_scatter = []
        for name, color in zip(names, palette, strict=False):
            item = pg.ScatterPlotItem(size=7 if ordered else 6, pen=pg.mkPen(None),
                                      brush=pg.mkBrush(color), name=name)
            self.latent_plot.addItem(item)
            self.class_scatter.append(item)
        self.legend.set_entries([(name, pg.mkColor(color).name(), "dot")
                                 for name, color in zip(names, palette, strict=False)])
        self.group_names = tuple(names)
        self._latent_title = None

    def _recon_tiles(self, snapshot: dict[str, Any]) -> np.ndarray:
        """Blocks of five digits: originals, (noisy inputs,) reconstructions, one row each, with a
        wider gap between blocks (a tall picture fills the column beside the latent plots)."""
        rows = [snapshot["originals"]]
        if "inputs" in snapshot:
            rows.append(snapshot["inputs"])
        rows.append(snapshot["reconstructions"])
        blocks = []
        for i in range(0, len(rows[0]), RECON_COLS):
            block = pk.tile(np.concatenate([r[i:i + RECON_COLS] for r in rows]), RECON_COLS)
            if blocks:
                blocks.append(np.full((BLOCK_GAP, block.shape[1]), np.nan, dtype=np.float32))
            blocks.append(block)
        return np.concatenate(blocks)

    def reset(self) -> None:
        self.latent_range.reset()
        if self.variational:
            self.elbo_range.reset()
            self.kl_range.reset()
        self.history.reset()

    def export_items(self) -> dict[str, QWidget]:
        items: dict[str, QWidget] = {"Reconstructions": self.recon_plot,
                                     "Latent space": self.latent_plot,
                                     "Decoded grid": self.grid_plot,
                                     "Interpolation": self.interp_plot}
        if self.variational:
            items["KL per dimension"] = self.kl_plot
        return items

    def export_frames(self, scale: int | None = None) -> list:
        """The reconstruction grid at each kept step, as PIL images for an animated GIF (each
        image ~48 px wide unless ``scale`` says how many pixels per image pixel)."""
        from PIL import Image, ImageDraw

        if scale is None:
            scale = max(1, round(GIF_IMAGE_PX / self._image_side))
        lut = pk.grey_lut() if self._photo else pk.ink_lut()
        background = np.array(pg.mkColor(colors().surface).getRgb()[:3], dtype=np.uint8)
        frames = []
        for step, tiles in self.history.pictures:
            index = np.clip(np.nan_to_num(tiles, nan=0.0) * 255, 0, 255).astype(np.uint8)
            rgb = lut[index]
            rgb[np.isnan(tiles)] = background
            img = Image.fromarray(rgb).resize((rgb.shape[1] * scale, rgb.shape[0] * scale),
                                              Image.NEAREST)
            canvas = Image.new("RGB", (img.width, img.height + 22), tuple(background))
            canvas.paste(img, (0, 22))
            ImageDraw.Draw(canvas).text((6, 5), f"step {step}", fill=colors().text)
            frames.append(canvas)
        return frames
