"""CycleGAN: reference key layout, shape inference, safe loading, pad/crop, tiling, discovery,
the job service and the download function (against a local HTTP server)."""

from __future__ import annotations

import hashlib
import http.server
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken, JobCancelled, UserFacingError
from studio.core.requests import TransformRequest
from studio.library import cyclegan_models as lib
from studio.pipelines.cyclegan.model import (
    CycleGANGenerator,
    GeneratorSpec,
    blend_weights,
    build_generator,
    spec_from_state_dict,
    tile_starts,
)
from tests.fixtures.tiny_cyclegan import build_cyclegan_zoo, tiny_generator


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return build_cyclegan_zoo(tmp_path_factory.mktemp("cyclegan-zoo"))


def _photo(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = (rng.random((max(2, h // 12), max(2, w // 12), 3)) * 255).astype(np.uint8)
    return Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC)


def _reference_output(net, image: Image.Image) -> np.ndarray:
    """What the reference test script computes for --preprocess none (its padding included)."""
    x = torch.from_numpy(np.asarray(image, dtype=np.float32).transpose(2, 0, 1))[None] / 127.5 - 1
    h, w = x.shape[-2:]
    x = torch.nn.functional.pad(x, (0, (-w) % 4, 0, (-h) % 4), mode="reflect")
    with torch.no_grad():
        y = net(x)[..., :h, :w]
    return ((y[0].clamp(-1, 1) + 1) * 127.5).round().byte().numpy().transpose(1, 2, 0)


def test_key_layout_is_the_reference_one():
    keys = set(tiny_generator(9, 8).state_dict())
    assert {"model.1.weight", "model.1.bias", "model.4.weight", "model.7.weight",
            "model.10.conv_block.1.weight", "model.10.conv_block.5.weight",
            "model.18.conv_block.5.bias", "model.19.weight", "model.22.weight",
            "model.26.weight", "model.26.bias"} <= keys
    assert len(keys) == 2 * (1 + 2 + 2 * 9 + 2 + 1)  # weight + bias of each conv
    assert "model.23.weight" in set(tiny_generator(6, 4).state_dict())


@pytest.mark.parametrize("name,blocks,ngf", [("released9", 9, 8), ("G_A", 6, 4),
                                             ("legacy", 6, 12), ("old_norm", 6, 8),
                                             ("safetensors", 9, 4)])
def test_loads_unchanged_and_infers_shape(zoo, name, blocks, ngf):
    gen = CycleGANGenerator(zoo[name])
    assert (gen.spec.n_blocks, gen.spec.ngf, gen.spec.input_nc, gen.spec.output_nc) == \
        (blocks, ngf, 3, 3)
    seed = {"released9": 1, "G_A": 2, "legacy": 4, "old_norm": 5, "safetensors": 6}[name]
    reference = tiny_generator(blocks, ngf, seed=seed)
    image = _photo(37, 29)  # odd size: padded to 40×32 and cropped back
    out = np.asarray(gen.translate(image))
    assert out.shape == (29, 37, 3)
    assert np.array_equal(out, _reference_output(reference, image))


def test_old_checkpoint_running_stats_are_dropped(zoo):
    raw = torch.load(zoo["old_norm"], weights_only=True)
    assert any(k.endswith("running_mean") for k in raw)
    from studio.pipelines.cyclegan.model import load_generator_state

    clean = load_generator_state(zoo["old_norm"])
    assert not any(k.endswith(("running_mean", "running_var", "num_batches_tracked"))
                   for k in clean)


def test_dropout_and_grayscale_variants_are_inferred():
    spec = GeneratorSpec(1, 1, 4, 6, dropout=True)
    net = build_generator(spec, fixed_norm=False)
    assert "model.10.conv_block.6.weight" in net.state_dict()
    assert spec_from_state_dict(net.state_dict()) == spec


def test_not_a_generator_is_refused(zoo):
    with pytest.raises(UserFacingError, match="not a CycleGAN"):
        CycleGANGenerator(zoo["not_a_generator"])


def test_malicious_pickle_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    bad = tmp_path / "latest_net_G.pth"
    torch.save({"model.1.weight": torch.zeros(1), "x": Evil()}, bad)
    with pytest.raises(UserFacingError, match="refused for safety"):
        CycleGANGenerator(bad)
    evil_gen = tmp_path / "evil_net_G.pth"
    torch.save({**tiny_generator(6, 4).state_dict(), "x": Evil()}, evil_gen)
    assert lib.looks_like_generator(evil_gen)  # scanning only lists the pickle's opcodes…
    with pytest.raises(UserFacingError, match="refused for safety"):
        CycleGANGenerator(evil_gen)
    assert not marker.exists()  # …and nothing ran, neither when scanning nor when loading


def test_tiny_images_and_every_odd_size(zoo):
    gen = CycleGANGenerator(zoo["G_A"])
    for w, h in ((1, 1), (3, 7), (15, 16), (17, 5)):
        assert gen.translate(_photo(w, h)).size == (w, h)


def test_tiled_matches_untiled(zoo):
    gen = CycleGANGenerator(zoo["released9"])
    image = _photo(301, 230, seed=4)
    whole = np.asarray(gen.translate(image, tile=0)).astype(int)
    steps = []
    tiled = np.asarray(gen.translate(image, tile=192, overlap=64,
                                     progress=lambda d, t: steps.append((d, t)))).astype(int)
    # 232×304 padded, 192-pixel tiles: 2×2 tiles, + 1 for the statistics.
    assert steps[0] == (0, 5) and steps[-1] == (5, 5)
    assert [d for d, _ in steps] == sorted(d for d, _ in steps)
    # Exact whole-image statistics and exact tile borders: only float rounding differs, by at
    # most one level at a handful of pixels.
    diff = np.abs(whole - tiled)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.001, (diff.max(), (diff > 0).mean())


def test_large_image_tiled_matches_untiled_and_beats_the_estimate(zoo):
    """Above the old 1024-px guide size the statistics used to be estimated on a downscaled copy
    (mean difference 14.5/255 on random weights); exact statistics keep tiles within one level."""
    gen = CycleGANGenerator(zoo["G_A"])  # 6 blocks, ngf 4: a large image stays quick
    image = _photo(1100, 600, seed=7)
    whole = np.asarray(gen.translate(image, tile=0)).astype(int)
    exact = np.abs(np.asarray(gen.translate(image, tile=768)).astype(int) - whole)
    assert exact.max() <= 1 and (exact > 0).mean() < 0.001, (exact.max(), (exact > 0).mean())
    estimate = np.abs(np.asarray(gen.translate(image, tile=768, stats="estimate")).astype(int)
                      - whole)
    assert estimate.mean() > 10 * max(exact.mean(), 0.01), (estimate.mean(), exact.mean())


def test_exact_statistics_fall_back_to_the_estimate_beyond_the_memory_limit(zoo, monkeypatch):
    from studio.pipelines.cyclegan import model as cyclegan

    gen = CycleGANGenerator(zoo["G_A"])
    image = _photo(300, 200, seed=2)
    estimate = np.asarray(gen.translate(image, tile=160, stats="estimate"))
    assert gen.exact_fits(200, 300)
    monkeypatch.setattr(cyclegan, "EXACT_MEMORY_LIMIT", 1000)
    assert not gen.exact_fits(200, 300)
    assert np.array_equal(np.asarray(gen.translate(image, tile=160)), estimate)
    with pytest.raises(ValueError, match="stats"):
        gen.translate(image, tile=160, stats="guess")


def test_tiles_cancel_between_tiles(zoo):
    gen = CycleGANGenerator(zoo["G_A"])
    token = CancelToken()
    seen = []

    def progress(done, total):
        seen.append(done)
        if done == 2:
            token.cancel()

    with pytest.raises(JobCancelled):
        gen.translate(_photo(200, 200), tile=64, overlap=16, progress=progress, cancel=token)
    assert max(seen) == 2


def test_tile_geometry():
    assert tile_starts(400, 512, 64) == [0]
    starts = tile_starts(1000, 512, 64)
    assert starts[0] == 0 and starts[-1] == 1000 - 512 and all(s % 4 == 0 for s in starts)
    assert all(b - a <= 512 - 64 for a, b in zip(starts, starts[1:], strict=False))
    w = blend_weights(8, 8, 4, top=True, left=False, bottom=False, right=True)
    assert w[0, 0] < w[2, 0] < 1 and w[7, 0] == 1 and w[7, 7] < 1 and w.min() > 0


def test_discovery_by_key_layout(zoo):
    root = zoo["legacy"].parent  # holds cyclegan/… (the studio's own folder) and loose files
    settings = Settings(models_dir=str(root), extra_model_dirs=[str(root)])
    paths = settings.resolved_paths()
    models = {m.name: m for m in lib.find_cyclegan_models(settings, paths)}
    assert set(models) == {"horse2zebra", "mystyle", "legacy6_ngf12", "old_norm", "style"}
    assert set(models["mystyle"].directions) == {"AtoB", "BtoA"}
    assert models["mystyle"].path == zoo["G_A"].parent
    assert lib.resolve_cyclegan(str(zoo["G_B"])).directions["BtoA"] == zoo["G_B"]
    with pytest.raises(UserFacingError, match="AtoB only"):
        models["horse2zebra"].file_for("BtoA")


def test_a_pickle_is_read_once_while_it_is_unchanged(tmp_path, monkeypatch):
    """A library scan asks about each .pth twice (CycleGAN generator? ControlNet?) and every rescan
    asks again: its strings are listed once while the file is unchanged, and again once it is
    replaced."""
    from studio.library.controlnets import is_controlnet_file

    path = tmp_path / "latest_net_G.pth"
    torch.save(tiny_generator(6, 4, seed=7).state_dict(), path)
    reads: list[int] = []
    real = lib._pickle_strings
    monkeypatch.setattr(lib, "_pickle_strings",
                        lambda data, limit=5: reads.append(len(data)) or real(data, limit))
    for _ in range(3):
        assert lib.looks_like_generator(path)
        assert not is_controlnet_file(path)
    assert len(reads) == 1
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)  # replaced: a classifier now
    assert not lib.looks_like_generator(path) and lib.file_keys(path) >= {"fc.weight"}
    assert len(reads) == 2


def test_catalog_lists_the_released_models():
    catalog = {e.name: e for e in lib.load_catalog()}
    for name in ("horse2zebra", "zebra2horse", "monet2photo", "style_monet", "style_vangogh",
                 "style_cezanne", "style_ukiyoe", "summer2winter_yosemite",
                 "winter2summer_yosemite", "apple2orange", "orange2apple",
                 "facades_label2photo", "map2sat", "sat2map", "cityscapes_label2photo"):
        assert catalog[name].url.endswith(f"/cyclegan/pretrained_models/{name}.pth")
        assert catalog[name].description


def test_service_batch_saves_with_metadata_and_skips_bad_files(zoo, tmp_path):
    from studio.pipelines.cyclegan.service import TransformService

    good = tmp_path / "a.png"
    rgba = _photo(40, 30).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((40, 30)))
    rgba.save(good)
    bad = tmp_path / "b.jpg"
    bad.write_bytes(b"not a jpeg")
    _photo(20, 20).save(tmp_path / "c.webp")
    messages, partials = [], []

    class Sink:
        def __call__(self, step, total, preview=None):
            pass

        def partial(self, result):
            partials.append(result)

        def message(self, text):
            messages.append(text)

    settings = Settings(device="cpu")
    service = TransformService(lambda: settings, default_paths)
    request = TransformRequest(str(zoo["G_A"].parent),
                               [str(good), str(bad), str(tmp_path / "c.webp")], "BtoA")
    results = service.run(request, Sink(), CancelToken())
    assert [r.source.name for r in results] == ["a.png", "c.webp"] == \
        [r.source.name for r in partials]
    assert any(m.startswith("Skipped: b.jpg") for m in messages)
    first = Image.open(results[0].path)
    assert first.mode == "RGBA" and first.size == (40, 30)  # transparency put back
    assert "CycleGAN: mystyle" in first.text["parameters"]
    assert "Direction: BtoA" in first.text["parameters"]
    assert results[0].warnings and "transparency" in results[0].warnings[0]
    assert service.loads == 1


class _Files(http.server.SimpleHTTPRequestHandler):
    payload = b""

    def do_GET(self):  # noqa: N802 - http.server API
        data, start = self.payload, 0
        rng = self.headers.get("Range")
        if rng:
            start = int(rng.split("=")[1].rstrip("-"))
            self.send_response(206)
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])

    def log_message(self, *args):
        pass


def test_download_resumes_and_reports_sha256(tmp_path):
    """A local HTTP server on 127.0.0.1 stands in for the catalog's host (no internet here)."""
    from studio.library.download import download_file

    payload = bytes(range(256)) * 2000
    _Files.payload = payload
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/latest_net_G.pth"
        target = tmp_path / "m" / "latest_net_G.pth"
        token = CancelToken()

        def stop_early(done, total):
            if done >= 100_000:
                token.cancel()

        with pytest.raises(JobCancelled):
            download_file(url, target, progress=stop_early, cancel=token)
        part = target.with_name("latest_net_G.pth.part")
        assert part.exists() and not target.exists()
        seen = []
        result = download_file(url, target, progress=lambda d, t: seen.append((d, t)),
                               expected_sha256=hashlib.sha256(payload).hexdigest())
        assert result.resumed_from >= 100_000 and seen[-1] == (len(payload), len(payload))
        assert target.read_bytes() == payload and not part.exists()
        assert result.sha256 == hashlib.sha256(payload).hexdigest()
        with pytest.raises(UserFacingError, match="sha256"):
            download_file(url, tmp_path / "x.pth", expected_sha256="0" * 64)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
