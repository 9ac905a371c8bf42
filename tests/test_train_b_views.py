"""Views of lessons 3–5, fed real snapshots from briefly trained lessons (pytest-qt, offscreen).

Screenshots of each view go to ``screenshots/`` at the repository root (git-ignored), in the dark
and the light theme, so a person can look at what a student sees.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from studio.pipelines.train.registry import lesson_class
from tests.fixtures.torch_threads import one_torch_thread  # noqa: F401

SHOTS = Path(__file__).resolve().parents[1] / "screenshots"


_TRAINED: dict = {}


def trained(key: str, steps: int, **config):
    """A lesson trained ``steps`` steps, shared by the tests of this module (training is the slow
    part; the views never change the trainer)."""
    cache_key = (key, steps, tuple(sorted(config.items())))
    if cache_key not in _TRAINED:
        trainer = lesson_class(key)(config=config, seed=0)
        for _ in range(steps):
            trainer.step()
        _TRAINED[cache_key] = trainer
    return _TRAINED[cache_key]


@pytest.fixture(params=["dark", "light"])
def theme(request, qapp):
    from studio.ui.theme import apply_theme

    apply_theme(qapp, request.param)
    yield request.param
    apply_theme(qapp, "dark")


def make_view(qtbot, key: str):
    from studio.ui.panels.train.views import view_class

    view = view_class(key)(key)
    qtbot.addWidget(view)
    view.resize(1280, 760)
    view.show()
    qtbot.waitExposed(view)
    return view


def shoot(view, name: str) -> None:
    from PySide6.QtWidgets import QApplication

    QApplication.processEvents()
    SHOTS.mkdir(exist_ok=True)
    assert view.grab().save(str(SHOTS / f"{name}.png"))


@pytest.mark.parametrize("key", ["autoencoder", "denoising-autoencoder", "vae"])
def test_autoencoder_view_shows_the_snapshot(qtbot, theme, key):
    trainer = trained(key, 1500)
    view = make_view(qtbot, key)
    early = lesson_class(key)(config={}, seed=0)
    view.show_snapshot(early.snapshot())  # step 0: the untrained net, first history entry
    snap = trainer.snapshot()
    view.show_snapshot(snap)
    for digit, item in enumerate(view.class_scatter):
        xs, ys = item.getData()
        expected = snap["latent"][snap["labels"] == digit]
        np.testing.assert_allclose(np.stack([xs, ys], axis=1), expected)
    image = view.recon_image.image
    rows = 3 if key == "denoising-autoencoder" else 2
    # 20 digits in 4 blocks of five, gaps of 1 pixel between digits and 4 between blocks
    assert image.shape == (4 * (rows * 9 - 1) + 3 * 4, 5 * 9 - 1)
    np.testing.assert_allclose(image[:8, :8], snap["originals"][0])
    np.testing.assert_allclose(image[(rows - 1) * 9:(rows - 1) * 9 + 8, :8],
                               snap["reconstructions"][0])
    assert view.grid_image.image.shape == (12 * 9 - 1, 12 * 9 - 1)
    np.testing.assert_allclose(view.grid_image.image[:8, 9:17], snap["grid"][0, 1])
    assert view.interp_image.image.shape == (8, 10 * 9 - 1)
    if key == "vae":
        heights = view.kl_bars.opts["height"]
        np.testing.assert_allclose(heights, snap["kl_per_dim"])
    # History: the slider goes back to step 0 and forward to the newest again.
    assert view.history_slider.maximum() == 1
    view.history_slider.setValue(0)
    assert "step 0" in view.history_label.text() and "history" in view.history_label.text()
    assert not np.allclose(view.recon_image.image, image, equal_nan=True)
    view.show_snapshot(snap)  # a new frame does not yank the user off the history position
    assert view.history_slider.value() == 0
    view.history_slider.setValue(1)
    np.testing.assert_allclose(view.recon_image.image, image)
    frames = view.export_frames()
    assert len(frames) == 2 and frames[0].size == frames[1].size and frames[0].width > 200
    assert set(view.export_items()) >= {"Reconstructions", "Latent space", "Decoded grid"}
    shoot(view, f"train-{key}-{theme}")
    view.reset()
    assert view.export_frames() == []


def test_interpolation_digits_request_a_live_change(qtbot):
    view = make_view(qtbot, "autoencoder")
    with qtbot.waitSignal(view.setParamRequested) as blocker:
        view.interp_to.setValue(3)
    assert blocker.args == ["interp_to", 3]



@pytest.mark.parametrize("key", ["autoencoder", "vae"])
def test_autoencoder_view_shows_faces_coloured_by_brightness(qtbot, theme, key):
    from studio.pipelines.train.image_sets import BRIGHTNESS_BINS, faces_available

    if not faces_available():
        pytest.skip("scikit-image is not installed (pip install -e .[faces])")
    trainer = trained(key, 800, dataset="faces", latent_dim=2)
    view = make_view(qtbot, key)
    view.show_snapshot(lesson_class(key)(config={}, seed=0).snapshot())  # digits first
    assert [item.name() for item in view.class_scatter] == [str(d) for d in range(10)]
    view.reset()  # a new run (the data set changed)
    snap = trainer.snapshot()
    view.show_snapshot(snap)
    # Five brightness groups, named in the legend, dark to bright; every face drawn once.
    assert [item.name() for item in view.class_scatter] == list(BRIGHTNESS_BINS)
    assert sum(len(item.getData()[0]) for item in view.class_scatter) == 100
    for group, item in enumerate(view.class_scatter):
        xs, ys = item.getData()
        np.testing.assert_allclose(np.stack([xs, ys], axis=1),
                                   snap["latent"][snap["labels"] == group])
    lightness = [item.opts["brush"].color().lightness() for item in view.class_scatter]
    assert lightness[0] < lightness[-1]
    assert "brightness" in view.latent_plot.getPlotItem().titleLabel.text
    assert "no classes" in view.latent_plot.getPlotItem().titleLabel.text
    assert view.latent_plot.getPlotItem().titleLabel.isVisible()
    # 25×25 faces: 4 blocks of (original, reconstruction) rows, five faces wide.
    assert view.recon_image.image.shape == (4 * (2 * 26 - 1) + 3 * 4, 5 * 26 - 1)
    np.testing.assert_allclose(view.recon_image.image[:25, :25], snap["originals"][0])
    assert view.grid_image.image.shape == (12 * 26 - 1, 12 * 26 - 1)
    assert view.interp_image.image.shape == (25, 10 * 26 - 1)
    frames = view.export_frames()
    assert frames and frames[0].width == (5 * 26 - 1) * 2  # ~48 px per face, as for digits
    shoot(view, f"train-{key}-faces-{theme}")
    # Back to digits: class colours and names again, no title.
    view.reset()
    view.show_snapshot(trained(key, 1500).snapshot())
    assert [item.name() for item in view.class_scatter] == [str(d) for d in range(10)]
    assert not view.latent_plot.getPlotItem().titleLabel.isVisible()

@pytest.mark.parametrize("key", ["gan-2d", "wgan-gp-2d"])
def test_gan_view_shows_points_heatmap_arrows_and_modes(qtbot, theme, key):
    trainer = trained(key, 600 if key == "gan-2d" else 300)
    view = make_view(qtbot, key)
    snap = trainer.snapshot()
    view.show_snapshot(snap)
    xs, ys = view.fake.getData()
    np.testing.assert_allclose(np.stack([xs, ys], axis=1), snap["fake"])
    assert len(view.real.getData()[0]) == len(snap["real"])
    np.testing.assert_allclose(view.heat.image, snap["heatmap"])
    ax, ay = view.arrows.getData()
    assert len(ax) == 2 * len(snap["arrows_from"])
    np.testing.assert_allclose(ax[0::2], snap["arrows_from"][:, 0])
    # Arrows point along the gradient.
    direction = np.stack([ax[1::2] - ax[0::2], ay[1::2] - ay[0::2]], axis=1)
    assert (np.sum(direction * snap["arrows_grad"], axis=1) >= 0).all()
    assert view.modes_label.text() == f"{snap['modes_covered']} / 8 modes"
    assert view.readouts["d_fake"].text() == f"{snap['d_fake']:.3f}"
    if key == "wgan-gp-2d":
        assert view.readouts["wasserstein"].text() == f"{snap['wasserstein']:.3f}"
    with qtbot.waitSignal(view.stepPartRequested) as blocker:
        view.step_d.click()
    assert blocker.args == ["D"]
    with qtbot.waitSignal(view.stepPartRequested) as blocker:
        view.step_g.click()
    assert blocker.args == ["G"]
    shoot(view, f"train-{key}-{theme}")


def _drag(qtbot, view, points):
    """Press, move and release the left button along ``points`` (data units) on the plot."""
    from PySide6.QtCore import QEvent, QPointF, Qt
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    vb = view.plot.getPlotItem().getViewBox()
    viewport = view.plot.viewport()
    for i, (x, y) in enumerate(points):
        scene = vb.mapViewToScene(QPointF(x, y))
        local = QPointF(view.plot.mapFromScene(scene))
        kind = QEvent.Type.MouseButtonPress if i == 0 else QEvent.Type.MouseMove
        event = QMouseEvent(kind, local, viewport.mapToGlobal(local), Qt.MouseButton.LeftButton,
                            Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(viewport, event)
    end = QMouseEvent(QEvent.Type.MouseButtonRelease, local, viewport.mapToGlobal(local),
                      Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton,
                      Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(viewport, end)


def test_drawing_data_with_the_mouse_requests_a_reset(qtbot):
    view = make_view(qtbot, "gan-2d")
    view.show_snapshot(trained("gan-2d", 600).snapshot())
    angles = np.linspace(0, 2 * np.pi, 60)
    circle = [(1.2 * np.cos(a), 1.2 * np.sin(a)) for a in angles]
    _drag(qtbot, view, circle[:10])  # not in draw mode: nothing is drawn
    assert view.drawn == []
    view.draw_button.click()
    assert view.draw_button.isChecked()
    _drag(qtbot, view, circle[:12])
    assert 8 <= len(view.drawn) <= 12 and not view.use_button.isEnabled()
    assert "more needed" in view.draw_hint.text()
    _drag(qtbot, view, circle[12:])
    assert len(view.drawn) >= 20 and view.use_button.isEnabled()
    radius = np.hypot(*np.array(view.drawn).T)
    np.testing.assert_allclose(radius, 1.2, atol=0.05)  # the points are where the mouse went
    shoot(view, "train-gan-2d-drawing")
    with qtbot.waitSignal(view.resetRequested) as blocker:
        view.use_button.click()
    request = blocker.args[0]
    assert request["dataset"] == "drawn" and request["points"] == view.drawn
    assert not view.draw_button.isChecked()
    # The lesson accepts exactly what the view sends.
    trainer = lesson_class("gan-2d")(config=request, seed=0)
    assert trainer.step()["step"] == 1
    view.clear_drawing()
    assert view.drawn == [] and not view.use_button.isEnabled()


def test_ddpm_view_scrubs_forward_and_reverse(qtbot, theme):
    trainer = trained("ddpm-2d", 1500)
    view = make_view(qtbot, "ddpm-2d")
    snap = trainer.snapshot()
    view.show_snapshot(snap)
    T = snap["timesteps"]
    assert view.scrubber.maximum() == T and view.scrubber.value() == T
    xs, ys = view.reverse_points.getData()
    np.testing.assert_allclose(np.stack([xs, ys], axis=1), snap["reverse"][T])
    view.scrubber.setValue(10)
    xs, ys = view.forward_points.getData()
    np.testing.assert_allclose(np.stack([xs, ys], axis=1), snap["forward"][10])
    xs, ys = view.reverse_points.getData()
    np.testing.assert_allclose(np.stack([xs, ys], axis=1), snap["reverse"][10])
    assert view.level_label.text().startswith(f"t = 10 / {T}")
    xs, ys = view.samples_points.getData()
    np.testing.assert_allclose(np.stack([xs, ys], axis=1), snap["samples"])
    np.testing.assert_allclose(view.mse_bars.opts["width"], snap["bucket_mse"])  # horizontal
    view.show_snapshot(snap)  # a new frame keeps the user's scrubber position
    assert view.scrubber.value() == 10
    view.scrubber.setValue(T // 3)
    shoot(view, f"train-ddpm-2d-{theme}")


def test_gan_heatmap_covers_the_data_square(qtbot):
    """The heatmap is drawn over [-2.5, 2.5]² in data units, bright where D says 'real'."""
    from PySide6.QtCore import QPointF

    view = make_view(qtbot, "gan-2d")
    snap = dict(trained("gan-2d", 600).snapshot())
    snap["heatmap"] = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (64, 1))  # 0 left, 1 right
    view.show_snapshot(snap)
    rect = view.heat.mapRectToView(view.heat.boundingRect())
    assert (rect.left(), rect.top(), rect.width(), rect.height()) == pytest.approx(
        (-2.5, -2.5, 5.0, 5.0))
    image = view.plot.grab().toImage()
    vb = view.plot.getPlotItem().getViewBox()

    def brightness(x: float) -> int:
        p = view.plot.mapFromScene(vb.mapViewToScene(QPointF(x, 2.3)))
        return image.pixelColor(p.x(), p.y()).lightness()

    assert brightness(-2.3) + 40 < brightness(2.3)


def test_sticky_range_moves_the_axes_only_when_the_data_leave_or_shrink_a_lot(qtbot):
    """Autoranging every frame made the axes regenerate their text every frame (most of a lesson
    view's paint time); the range follows the data with hysteresis instead."""
    from studio.ui.panels.train.plotting import StickyRange, sticky_span

    first = sticky_span(None, 0.0, 10.0)
    assert first == pytest.approx((-0.8, 10.8))
    assert sticky_span(first, 1.0, 9.0) is None  # inside: keep the range (no axis change)
    assert sticky_span(first, 0.0, 12.0) == pytest.approx((-0.96, 12.96))  # out: grow at once
    assert sticky_span(first, 4.0, 6.0) == pytest.approx((3.84, 6.16))  # < half: shrink
    assert sticky_span(first, float("nan"), 1.0) is None
    view = make_view(qtbot, "vae")
    trainer = trained("vae", 300)
    view.show_snapshot(trainer.snapshot())
    (x0, x1), (y0, y1) = view.latent_plot.getPlotItem().getViewBox().viewRange()
    latent = trainer.snapshot()["latent"]
    assert x0 <= latent[:, 0].min() and latent[:, 0].max() <= x1
    assert y0 <= latent[:, 1].min() and latent[:, 1].max() <= y1
    kl_top = view.kl_plot.getPlotItem().getViewBox().viewRange()[1]
    assert kl_top[0] == 0.0 and kl_top[1] >= trainer.snapshot()["kl_per_dim"].max()
    bars = StickyRange(view.kl_plot, zero_y=True)
    bars.show(None, np.array([0.0, 2.0]))
    assert bars.y[0] == 0.0 and bars.y[1] == pytest.approx(2.16)


def test_moved_points_are_drawn_where_they_moved(qtbot):
    """Views move a scatter's points in place (pk.move_points) instead of rebuilding them: the
    points are drawn at their new places and the item's bounds follow."""
    import pyqtgraph as pg
    from PySide6.QtWidgets import QApplication

    from studio.ui.panels.train import plotting as pk

    plot = pk.themed_plot()
    qtbot.addWidget(plot)
    plot.resize(300, 300)
    plot.setRange(xRange=(0, 10), yRange=(0, 10), padding=0)
    points = pg.ScatterPlotItem(size=12, pen=pg.mkPen(None), brush=pg.mkBrush("#ff0000"))
    plot.addItem(points)
    plot.show()
    qtbot.waitExposed(plot)

    def red_at(x: float, y: float) -> bool:
        QApplication.processEvents()
        image = plot.grab().toImage()
        scene = plot.getPlotItem().getViewBox().mapViewToScene(pg.Point(x, y))
        p = plot.mapFromScene(scene)
        color = image.pixelColor(p.x(), p.y())
        return color.red() > 200 and color.green() < 80

    pk.move_points(points, np.array([[2.0, 2.0], [3.0, 8.0]]))  # first: setData
    assert red_at(2, 2) and not red_at(7, 7)
    pk.move_points(points, np.array([[7.0, 7.0], [3.0, 8.0]]))  # same count: moved in place
    assert red_at(7, 7) and not red_at(2, 2)
    xs, ys = points.getData()
    assert xs.tolist() == [7.0, 3.0] and ys.tolist() == [7.0, 8.0]
    assert points.dataBounds(0) == (3.0, 7.0)
    pk.move_points(points, np.array([[5.0, 5.0]]))  # another count: rebuilt
    assert red_at(5, 5) and not red_at(7, 7) and len(points.getData()[0]) == 1
