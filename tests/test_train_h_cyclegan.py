"""Image lesson 4 (``cyclegan``): Transform's ResNet generator and PatchGAN discriminators,
determinism (pictures change nothing), the live λs, resume, the shipped domains and your two
folders (one empty: a sentence), the view, and the export that Transform lists and runs: its
pixels equal the generator's own."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from studio.pipelines.train.base import InvalidParameter
from studio.pipelines.train.cyclegan import (
    GEN_NAMES,
    CycleGANTrainer,
    PatchDiscriminator,
    load_domains,
    make_generator,
)
from tests.fixtures.resume import assert_resumes_exactly
from tests.fixtures.torch_threads import one_torch_thread  # noqa: F401
from tests.test_train_d_layout import train  # noqa: F401 - the Train workspace in the window
from tests.test_train_e_cnn import write_images

FAST = {"batch_size": 2, "ngf": 4, "ndf": 4, "blocks": 1, "image_size": "16"}


def make(seed: int = 0, **overrides) -> CycleGANTrainer:
    return CycleGANTrainer(config={**FAST, **overrides}, seed=seed)


def run(trainer, n: int) -> list[dict]:
    return [trainer.step() for _ in range(n)]


def test_networks_are_transforms_generator_and_a_patchgan():
    from studio.pipelines.cyclegan.model import spec_from_state_dict

    g = torch.Generator().manual_seed(0)
    before = torch.get_rng_state()
    gen = make_generator(3, 4, 2, g)
    assert torch.equal(before, torch.get_rng_state())  # built without the global generator
    spec = spec_from_state_dict(gen.state_dict())  # Transform reads our keys as a generator
    assert (spec.input_nc, spec.ngf, spec.n_blocks) == (3, 4, 2)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert gen(x).shape == x.shape
    disc = PatchDiscriminator(3, 4, 2, g)
    assert disc(x).shape == (2, 1, 6, 6)  # one score per patch


def test_same_seed_same_metrics_pictures_change_nothing_and_lambdas_live():
    a, b, c = make(seed=3), make(seed=3), make(seed=4)
    ma, mb, mc = [], [], []
    for _ in range(3):
        ma.append(a.step())
        a.snapshot()
        mb.append(b.step())
        mc.append(c.step())
    assert ma == mb and ma != mc
    assert {"loss", "loss_g", "loss_d", "loss_cycle", "loss_idt", "lr"} <= set(ma[0])
    a.set_param("lambda_cycle", 0.0)
    a.set_param("lambda_identity", 0.0)
    m = a.step()
    assert m["loss"] == pytest.approx(m["loss_g"])  # only the adversarial part is left
    assert m["loss_cycle"] > 0  # still measured, so its curve goes on


def test_bad_settings_are_refused_with_a_sentence():
    with pytest.raises(InvalidParameter, match="room for 2 strided layers, not 3"):
        make(d_layers=3)  # at 16 px the patches would vanish
    for bad in ({"lambda_cycle": -1}, {"domains": "apples"}, {"blocks": 0}):
        with pytest.raises(InvalidParameter):
            make(**bad)
    with pytest.raises(InvalidParameter, match="steps as a whole"):
        make().step("D")


def test_resumed_equals_uninterrupted():
    assert_resumes_exactly(make, run)


def test_shipped_domains_and_your_two_folders(tmp_path):
    colours = load_domains({"domains": "colours", "image_size": "16"})
    assert colours.a.shape[1:] == (3, 16, 16) and len(colours.a) and len(colours.b)
    assert colours.a.mean(axis=(0, 2, 3))[0] > colours.b.mean(axis=(0, 2, 3))[0]  # red vs blue
    digits = load_domains({"domains": "digits", "image_size": "16"})
    assert digits.channels == 1 and digits.b.mean() > digits.a.mean()  # inverted: paper is dark
    write_images(tmp_path / "horses", 3, colour=(150, 90, 40))
    (tmp_path / "zebras").mkdir()
    folders = {"domains": "folders", "data_folder": str(tmp_path / "horses")}
    with pytest.raises(InvalidParameter, match="domain B"):
        make(**folders)
    with pytest.raises(InvalidParameter, match="^Domain B: The data folder .* is empty"):
        make(**folders, data_folder_b=str(tmp_path / "zebras"))
    write_images(tmp_path / "zebras", 3, colour=(240, 240, 240))
    trainer = make(**folders, data_folder_b=str(tmp_path / "zebras"))
    run(trainer, 1)
    snap = trainer.snapshot()
    assert snap["a_to_b"].shape == snap["b_to_a"].shape == (3, 3, 16, 16, 3)  # 3 of each
    assert "A (folder A): 3 images" in snap["data_note"]


def test_export_is_listed_by_transform_and_gives_the_generators_pixels(tmp_path):
    from studio.core.config import Settings, default_paths
    from studio.core.jobs import CancelToken
    from studio.core.requests import TransformRequest
    from studio.library.catalog import list_models
    from studio.pipelines.cyclegan.service import TransformService
    from studio.pipelines.train.export import export_trainer
    from studio.pipelines.train.runs import Run
    from tests.fixtures.sinks import RecordingSink

    trainer = make(seed=2)
    run(trainer, 2)
    paths = default_paths()
    done = export_trainer(trainer, paths.models_dir, "shapes2night")
    assert [f.name for f in done.files] == list(GEN_NAMES)
    assert "Transform" in done.message
    for f in done.files:  # plain state dicts, as the reference writes them
        state = torch.load(f, weights_only=True)
        assert "model.1.weight" in state and all(torch.is_tensor(v) for v in state.values())
    with pytest.raises(Exception, match="exists already"):
        export_trainer(trainer, paths.models_dir, "shapes2night")
    settings = Settings(device="cpu")
    listed = [e for e in list_models(settings, paths) if e.name == "shapes2night"]
    assert [(e.kind, e.detail) for e in listed] == [("transform", "translates AtoB and BtoA")]

    picture = tmp_path / "red.png"
    red = (np.stack([np.full((20, 24), 200), np.full((20, 24), 40), np.full((20, 24), 30)], -1)
           + np.arange(24)[None, :, None] * 2).astype(np.uint8)
    Image.fromarray(red).save(picture)
    service = TransformService(lambda: settings, default_paths)
    for direction, net in (("AtoB", trainer.G_A), ("BtoA", trainer.G_B)):
        request = TransformRequest(str(done.path), [str(picture)], direction)
        (result,) = service.run(request, RecordingSink(), CancelToken())
        with torch.no_grad():  # the generator itself, on the same pixels (20×24 is a multiple of 4)
            x = torch.from_numpy(red).permute(2, 0, 1)[None].float() / 127.5 - 1
            y = ((net.eval()(x)[0].clamp(-1, 1) + 1) * 127.5).round().byte()
        assert np.array_equal(np.asarray(Image.open(result.path).convert("RGB")),
                              y.permute(1, 2, 0).numpy())

    # and from a saved run, as the Runs list does
    saved = Run.create(tmp_path / "runs", "cyclegan", 2, trainer.config)
    saved.save_checkpoint(trainer)
    from studio.pipelines.train.export import export_run

    again = export_run(saved.path, paths.models_dir, "from-run")
    assert torch.equal(torch.load(again.files[0], weights_only=True)["model.1.weight"],
                       trainer.G_A.state_dict()["model.1.weight"])


def test_cli_two_folders_and_export(tmp_path, capsys):
    from studio.cli import main  # in this process: the dcgan tests run the command as a user does

    write_images(tmp_path / "a", 3, colour=(150, 90, 40))
    write_images(tmp_path / "b", 3, colour=(240, 240, 240))
    code = main(["train", "cyclegan", "--data", str(tmp_path / "a"), "--data-b",
                 str(tmp_path / "b"), "--steps", "1", "--out", str(tmp_path / "run"), "--export",
                 "mine", *[f"--set={k}={v}" for k, v in FAST.items()]])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "Exported mine: Transform" in err
    assert main(["train", "cyclegan", "--data", str(tmp_path / "a"), "--steps", "1"]) == 2
    assert "domain B" in capsys.readouterr().err


@pytest.mark.slow
def test_two_cpu_processes_match_one(tmp_path):
    """``accelerate launch`` with two CPU processes (gloo): both generators and both
    discriminators run under DistributedDataParallel, each process on half of every batch, and
    the loss curve matches one process with the same global batch (float rounding of the split
    means); the export is the unwrapped generators' junyanz keys."""
    import json

    from tests.test_train_e_cnn import studio, studio_in_two_processes

    args = ("cyclegan", "--steps", "3", "--json", *[f"--set={k}={v}" for k, v in FAST.items()])
    one = studio(*args, "--out", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr
    two = studio_in_two_processes(*args, "--out", str(tmp_path / "two"))
    assert two.returncode == 0, two.stderr[-2000:]
    assert (tmp_path / "two" / "accelerate" / "model_1.safetensors").is_file()

    def curve(run):
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        return [[r[k] for k in ("loss_g", "loss_d", "loss_cycle", "loss_idt")] for r in rows]

    assert np.allclose(curve(tmp_path / "two"), curve(tmp_path / "one"), rtol=1e-4, atol=1e-6)
    trainer = CycleGANTrainer(config=FAST, seed=0)
    trainer.load_accelerate_state(tmp_path / "two" / "accelerate")
    assert trainer.step_count == 3
    written = trainer.export_generators(tmp_path / "export")
    keys = set(torch.load(written[0], weights_only=True))
    assert keys == set(make_generator(3, 4, 1, torch.Generator()).state_dict())


def test_view_draws_round_trips(qtbot, qapp):
    from studio.ui.panels.train.views import view_class

    trainer = make()
    view = view_class("cyclegan")("cyclegan")
    qtbot.addWidget(view)
    view.resize(1100, 560)
    view.show()
    view.show_snapshot(trainer.snapshot())
    assert view.readout._full.startswith("The losses appear")
    run(trainer, 1)
    view.show_snapshot(trainer.snapshot())
    assert view.aba_image.image.shape == (4 * 17 - 1, 3 * 17 - 1, 3)  # 4 rows of A → B → A
    assert view.readout._full.startswith("loss G ")
    assert len(view.weight_curves) == 5
    assert set(view.export_items()) >= {"A to B to A", "B to A to B"}


def test_the_window_exports_a_run_that_transform_then_lists(train, main_window, qtbot):  # noqa: F811
    from studio.pipelines.train.runs import Run
    from tests.test_train_d_layout import SIZES, layout_problems, open_and_step, settle

    panel = train
    open_and_step(qtbot, panel, "cyclegan", steps=1)
    assert panel.runs.model_button.text() == "Export model to Transform…"
    run = panel._run_path
    panel.session.save()
    qtbot.waitUntil(lambda: Run(run).has_checkpoint, timeout=20000)
    message = panel.export_model(run, "from the window")
    assert message.startswith("Exported from the window: Transform")
    assert panel.runs.note.text() == message
    transform = main_window.show_workspace("transform")
    qtbot.waitUntil(lambda: "from the window" in [m.name for m in transform.cyclegan.models()],
                    timeout=20000)
    assert panel.export_model(run, "from the window").startswith("A model called")  # kept
    main_window.show_workspace("train")
    panel.tabs.setCurrentWidget(panel.runs)
    main_window.resize(*SIZES["laptop"])
    settle(qtbot, main_window)
    assert panel.runs.model_button.isVisible() and panel.runs.note.isVisible()
    assert layout_problems(panel.right) == []
