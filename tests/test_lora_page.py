"""The Train → LoRA page (#18): the ``lora-sd`` lesson drives the LoRA trainer a step at a time
(samples every N steps at a fixed seed, the kohya file written at the goal or on "Keep LoRA
now", an exact resume from a run's checkpoint, an export from the Runs list), and the window's
page shows a folder's images with their captions, edits a caption into its .txt, trains a tiny
SD 1.5 from the library, shows the row of samples and puts the LoRA into the library."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open

from studio.pipelines.train.base import InvalidParameter, TrainingFinished

QUICK = {"steps": 4, "sample_every": 2, "sample_steps": 2, "lr": 1e-3}


def _folder(root: Path) -> Path:
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, size in enumerate([(64, 64), (96, 64), (64, 96)]):
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(
            root / f"img{i}.png")
    (root / "img0.txt").write_text("red square, pattern", encoding="utf-8")
    (root / "img1.txt").write_text("blue circle", encoding="utf-8")
    return root  # img2 has no caption


def _steps(trainer, n):
    return [trainer.step() for _ in range(n)]


def test_lesson_samples_writes_the_lora_at_its_goal_exports_and_resumes_exactly(tmp_path):
    import torch
    from safetensors.torch import load_file

    from studio.core.config import default_paths
    from studio.pipelines.train.export import export_run
    from studio.pipelines.train.lora_sd_lesson import LoraSDLesson
    from studio.pipelines.train.runs import Run
    from tests.fixtures.resume import assert_resumes_exactly

    lesson = LoraSDLesson(QUICK, seed=0)
    _steps(lesson, 4)
    snap = lesson.snapshot()
    assert [step for step, _ in snap["samples"]] == [2, 4]
    assert snap["prompts"] == ["a red circle", "a red square"]  # the first two captions
    assert all(Path(p).is_file() for _, paths in snap["samples"] for p in paths)
    models = default_paths().models_dir
    lora = models / "loras" / "red-shapes.safetensors"
    assert snap["saved"] == str(lora) and lora.with_suffix(".preview.png").is_file()
    with safe_open(str(lora), "pt") as f:
        assert all(k.startswith("lora_unet_") for k in f.keys())
        assert f.metadata()["ss_steps"] == "4" and f.metadata()["ss_network_dim"] == "8"
    with pytest.raises(TrainingFinished, match="red-shapes.safetensors is in Models"):
        lesson.step()

    # the Runs list's export, from the checkpoint alone: the same tensors, its own name
    run = Run.create(tmp_path / "runs", "lora-sd", 0, lesson.config)
    run.save_checkpoint(lesson)
    done = export_run(run.path, models, "from-run")
    exported = done.path / "from-run.safetensors"
    assert "Generate lists it among the LoRAs" in done.message
    assert (done.path / "from-run.preview.png").is_file()
    first, second = load_file(str(lora)), load_file(str(exported))
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k])
                                                 for k in first)
    with safe_open(str(exported), "pt") as f:
        assert f.metadata()["ss_output_name"] == "from-run"
    lesson.set_param("steps", 5)  # a higher goal: it trains on
    assert lesson.step()["step"] == 5

    paused, _ = assert_resumes_exactly(
        lambda seed: LoraSDLesson({**QUICK, "sample_every": 0, "name": "kept"}, seed=seed),
        _steps, steps=2)
    paused.set_param("steps", 2)  # "Keep LoRA now": the goal becomes this step
    kept = models / "loras" / "kept.safetensors"
    assert paused.saved == str(kept) and kept.is_file()
    with pytest.raises(TrainingFinished):
        paused.step()


def test_bad_folder_name_and_missing_captioner_are_sentences(tmp_path):
    from studio.pipelines.train.captions import DOWNLOAD_LINE, FLORENCE_LINE, needs_text
    from studio.pipelines.train.lora_sd_lesson import LoraSDLesson

    with pytest.raises(InvalidParameter, match="Choose your folder of images first"):
        LoraSDLesson.validate_config({"dataset": "folder"})
    with pytest.raises(InvalidParameter, match="does not exist"):
        LoraSDLesson.validate_config({"dataset": "folder", "data_folder": str(tmp_path / "x")})
    with pytest.raises(InvalidParameter, match="cannot be a LoRA file name"):
        LoraSDLesson.validate_config({"name": "a/b"})
    unavailable = LoraSDLesson.unavailable_choices()
    assert unavailable["captions"] == {"blip": needs_text()}
    if "optimizer" in unavailable:  # without bitsandbytes 0.50+: greyed out, with the reason
        assert "bitsandbytes" in unavailable["optimizer"]["adamw8bit"]
    assert DOWNLOAD_LINE in needs_text() and FLORENCE_LINE in needs_text()  # native Florence2
    with pytest.raises(InvalidParameter, match="hf download Salesforce/blip"):
        LoraSDLesson.validate_config({"captions": "blip"})


def _tiny_blip(folder: Path) -> Path:
    """A BLIP captioner with the real classes, tiny and random, whose text head is pushed to
    one word ("w2000"), saved as a Hub repo is."""
    import torch
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    special = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]"}
    tokenizer = BertTokenizer(vocab={special.get(i, f"w{i}"): i for i in range(30522)})
    tokenizer.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(BlipConfig(
        text_config=dict(vocab_size=30524, max_position_embeddings=64, encoder_hidden_size=32,
                         **small),
        vision_config=dict(image_size=32, patch_size=16, **small), projection_dim=32))
    with torch.no_grad():
        model.text_decoder.cls.predictions.decoder.bias[2000] = 50.0
    BlipProcessor(BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer).save_pretrained(
        folder)
    model.save_pretrained(folder)
    return folder


def _tiny_florence(folder: Path) -> Path:
    """A Florence-2 captioner in transformers' own format (no remote code), tiny and random,
    whose decoder always says one word ("w7"), saved as a Hub repo is."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        BartConfig,
        BartTokenizerFast,
        CLIPImageProcessor,
        Florence2Config,
        Florence2ForConditionalGeneration,
        Florence2Processor,
        Florence2VisionConfig,
    )

    words = ["<s>", "<pad>", "</s>", "<unk>"] + [f"w{i}" for i in range(60)]
    core = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)},
                                      unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = BartTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>",
                                  pad_token="<pad>", unk_token="<unk>",
                                  extra_special_tokens={"image_token": "<image>"})
    vision = Florence2VisionConfig(
        depths=(1, 1), patch_size=(7, 3), patch_stride=(4, 2), patch_padding=(3, 1),
        patch_prenorm=(False, True), embed_dim=(16, 32), num_heads=(2, 4), num_groups=(2, 4),
        window_size=2, projection_dim=32, drop_path_rate=0.0)
    text = BartConfig(vocab_size=len(tokenizer), d_model=32, encoder_layers=1, decoder_layers=1,
                      encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                      decoder_ffn_dim=64, max_position_embeddings=128, pad_token_id=1,
                      bos_token_id=0, eos_token_id=2, decoder_start_token_id=2)
    torch.manual_seed(0)
    model = Florence2ForConditionalGeneration(Florence2Config(
        text_config=text, vision_config=vision, image_token_id=tokenizer.image_token_id))
    with torch.no_grad():  # the decoder's last norm outputs the embedding of w7, scaled up
        norm = model.model.language_model.decoder.layers[0].final_layer_norm
        norm.weight.zero_()
        norm.bias.copy_(10 * model.lm_head.weight[tokenizer.convert_tokens_to_ids("w7")])
    images = CLIPImageProcessor(size={"height": 32, "width": 32}, do_center_crop=False)
    images.image_seq_length = 17  # 4×4 patches and the pooled one
    Florence2Processor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    model.save_pretrained(folder)
    return folder


def test_florence2_in_the_hf_cache_is_preferred_and_captions(tmp_path, monkeypatch):
    from studio.pipelines.train.captions import caption_missing, captioner_name, find_captioner
    from tests.fixtures.hub_cache import add_to_hub_cache

    hf_home = tmp_path / "hf"
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_home / "hub"))
    add_to_hub_cache(hf_home, "Salesforce/blip-image-captioning-base",
                     _tiny_blip(tmp_path / "blip"))
    snap = add_to_hub_cache(hf_home, "florence-community/Florence-2-base",
                            _tiny_florence(tmp_path / "florence"))
    assert find_captioner() == snap and captioner_name(snap) == "Florence-2"
    folder = _folder(tmp_path / "images")
    assert caption_missing(sorted(folder.glob("*.png"))) == [folder / "img2.txt"]
    assert (folder / "img2.txt").read_text(encoding="utf-8").startswith("w7w7")  # no spaces: a
    # word-level toy tokenizer


def test_blip_in_the_hf_cache_captions_only_the_images_without_a_caption(tmp_path, monkeypatch):
    from studio.pipelines.train.captions import caption_missing, find_captioner
    from studio.pipelines.train.lora_sd_lesson import LoraSDLesson
    from tests.fixtures.hub_cache import add_to_hub_cache

    hf_home = tmp_path / "hf"
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_home / "hub"))
    assert find_captioner() is None
    snap = add_to_hub_cache(hf_home, "Salesforce/blip-image-captioning-base",
                            _tiny_blip(tmp_path / "blip"))
    assert find_captioner() == snap and "captions" not in LoraSDLesson.unavailable_choices()
    assert LoraSDLesson.validate_config({"captions": "blip"})["captions"] == "blip"
    folder = _folder(tmp_path / "images")
    assert caption_missing(sorted(folder.glob("*.png"))) == [folder / "img2.txt"]
    assert (folder / "img2.txt").read_text(encoding="utf-8").startswith("w2000 w2000")
    assert (folder / "img0.txt").read_text(encoding="utf-8") == "red square, pattern"


def test_the_page_shows_and_edits_captions_trains_samples_and_fills_the_library(
        main_window, qtbot, monkeypatch, tmp_path, tiny_sd15_dir):
    from studio.core.config import Settings, default_paths
    from studio.ui.panels.generate.panel import default_lora_scanner
    from studio.ui.panels.train.panel import TrainPanel

    monkeypatch.setattr(TrainPanel, "session_in_process", False)  # a thread: no torch start-up
    folder = _folder(tmp_path / "my style")
    library_model = default_paths().models_dir / "tiny-sd15"
    shutil.copytree(tiny_sd15_dir, library_model)
    main_window.resize(1366, 768)
    main_window.show()
    panel = main_window.show_workspace("train")
    qtbot.waitUntil(lambda: panel.frames_drawn >= 1, timeout=60000)
    panel.open_lesson("lora-sd")
    qtbot.waitUntil(lambda: panel.lesson == "lora-sd" and panel.last_frame is not None
                    and panel.session.state == "paused", timeout=60000)
    view = panel.view
    assert "hf download florence-community/Florence-2-base" in view.auto_note.text() \
        or not view.auto_note.text()  # the captioner check runs off the GUI thread
    qtbot.waitUntil(lambda: "hf download" in view.auto_note.text(), timeout=10000)
    assert "hf download Salesforce/blip-image-captioning-base" in view.auto_note.toolTip()
    assert not view.auto_button.isVisible()

    panel.reset(overrides={"resolution": "128", "name": "mine", "trigger": "zxq", **QUICK,
                           "steps": 2})
    qtbot.waitUntil(lambda: panel.last_frame.config["steps"] == 2, timeout=60000)
    # the base model from the library's picker on the page
    qtbot.waitUntil(lambda: view.model_box.findText("tiny-sd15") > 0, timeout=30000)
    view.model_box.activated.emit(view.model_box.findText("tiny-sd15"))
    qtbot.waitUntil(lambda: panel.last_frame.config["model"] == str(library_model),
                    timeout=60000)
    assert view.model_box.currentText() == "tiny-sd15"
    view.choose_folder(str(folder))  # the page's "Image folder…"
    qtbot.waitUntil(lambda: panel.last_frame.config["data_folder"] == str(folder)
                    and view.images.count() == 3, timeout=60000)
    texts = [view.images.item(i).text() for i in range(3)]
    assert texts == ["img0.png — red square, pattern", "img1.png — blue circle",
                     "img2.png — (no caption)"]
    assert "1 of 3 image(s) have no .txt caption" in view.info.full_text()
    # the memory estimate before the first step (a CPU: it says so)
    assert view.estimate.full_text().startswith("SD 1.x LoRA at 128 px, rank 8: ~")
    assert "On the CPU this is slow" in view.estimate.full_text()
    view.images.setCurrentRow(2)
    view.caption_edit.setText("green triangle")
    view.save_button.click()
    assert (folder / "img2.txt").read_text(encoding="utf-8") == "green triangle\n"
    assert view.images.item(2).text() == "img2.png — green triangle"

    written = []
    panel.ctx.libraryChanged.connect(lambda: written.append(True))
    panel.controls.play_button.click()
    qtbot.waitUntil(lambda: panel.session.state == "finished", timeout=60000)
    qtbot.waitUntil(lambda: bool(written) and view.sample_labels
                    and not view.sample_labels[0].pixmap().isNull(), timeout=10000)
    assert view.row_label.text() == "step 2 (1/1)" and "mine.safetensors" in \
        view.saved_label.full_text()
    assert "Step 2 / 2" in view.stats.full_text() and "steps/s" in view.stats.full_text()
    paths = default_paths()
    loras = default_lora_scanner(Settings(device="cpu"), paths)  # Generate's LoRA list
    assert [Path(e.path) for e in loras] == [paths.models_dir / "loras" / "mine.safetensors"]
    assert (paths.models_dir / "loras" / "mine.preview.png").is_file()


def test_an_sdxl_base_trains_in_the_lesson_and_its_run_exports_kohya_sdxl(tmp_path,
                                                                         tiny_sdxl_dir):
    import torch
    from safetensors.torch import load_file

    from studio.core.config import default_paths
    from studio.pipelines.train.export import export_run
    from studio.pipelines.train.lora_sd_lesson import LoraSDLesson
    from studio.pipelines.train.runs import Run

    lesson = LoraSDLesson({"steps": 2, "sample_every": 0, "resolution": "128", "lr": 1e-3,
                           "model": str(tiny_sdxl_dir), "name": "xl", "rank": 2,
                           "train_text_encoder": True}, seed=0)
    lesson.set_param("text_encoder_lr", 2e-4)  # live: the encoders' groups only
    assert [g["lr"] for g in lesson.core.optimizer.param_groups] == [1e-3, 2e-4, 2e-4]
    _steps(lesson, 2)
    assert lesson.core.family == "sdxl" and lesson.snapshot()["resolution"] == 128
    saved = Path(lesson.saved)
    run = Run.create(tmp_path / "runs", "lora-sd", 0, lesson.config)
    run.save_checkpoint(lesson)
    done = export_run(run.path, default_paths().models_dir, "xl-run")
    exported = done.path / "xl-run.safetensors"
    first, second = load_file(str(saved)), load_file(str(exported))
    assert any(k.startswith("lora_unet_input_blocks_") for k in first)
    assert any(k.startswith("lora_te2_") for k in first)
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k])
                                                 for k in first)


def test_a_flux_base_trains_in_the_lesson_greys_what_does_not_apply_and_exports_diffusers(
        tmp_path, tiny_flux_dir):
    import torch
    from safetensors.torch import load_file

    from studio.core.config import default_paths
    from studio.pipelines.train.export import export_run
    from studio.pipelines.train.lora_sd_lesson import LoraSDLesson
    from studio.pipelines.train.runs import Run

    lesson = LoraSDLesson({"steps": 2, "sample_every": 2, "sample_steps": 2, "resolution": "128",
                           "lr": 1e-3, "model": str(tiny_flux_dir), "name": "fx", "rank": 2},
                          seed=0)
    snap = lesson.snapshot()
    assert lesson.core.family == "flux" and snap["resolution"] == 128
    assert set(snap["inapplicable"]) == {"train_text_encoder", "text_encoder_lr", "sdpa"}
    assert "T5" in snap["inapplicable"]["train_text_encoder"]
    assert snap["estimate"].startswith("FLUX.1 LoRA at 128 px, rank 2: ~")
    _steps(lesson, 2)
    assert [step for step, _ in lesson.snapshot()["samples"]] == [2]
    saved = Path(lesson.saved)
    run = Run.create(tmp_path / "runs", "lora-sd", 0, lesson.config)
    run.save_checkpoint(lesson)
    done = export_run(run.path, default_paths().models_dir, "fx-run")
    first, second = load_file(str(saved)), load_file(str(done.path / "fx-run.safetensors"))
    assert all(k.startswith("transformer.") for k in first)
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k])
                                                 for k in first)
    sd = LoraSDLesson({"steps": 1, "sample_every": 0}, seed=0)  # the tiny SD 1.x: all apply
    assert sd.snapshot()["inapplicable"] == {}


def test_the_form_greys_knobs_that_do_not_apply_and_brings_them_back(qtbot):
    from studio.pipelines.train.lora_flow import NOT_APPLICABLE
    from studio.pipelines.train.lora_sd_lesson import LoraSDLesson
    from studio.ui.panels.train.params_form import ParamsForm

    form = ParamsForm(LoraSDLesson.params, LoraSDLesson.validate_config())
    qtbot.addWidget(form)
    form.set_inapplicable(NOT_APPLICABLE)
    box = form.editors["train_text_encoder"]
    assert not box.isEnabled() and "T5" in box.toolTip()
    assert not form.editors["sdpa"].isEnabled() and form.editors["rank"].isEnabled()
    assert not form.labels["text_encoder_lr"].isEnabled()
    form.set_inapplicable({})
    assert box.isEnabled() and box.toolTip().startswith("LoRA layers in the text encoder")


def test_the_page_offers_a_flux_base_and_greys_the_text_encoder_knobs(
        main_window, qtbot, monkeypatch, tiny_flux_dir):
    from studio.core.config import default_paths
    from studio.ui.panels.train.panel import TrainPanel

    monkeypatch.setattr(TrainPanel, "session_in_process", False)
    library_model = default_paths().models_dir / "tiny-flux"
    shutil.copytree(tiny_flux_dir, library_model)
    main_window.show()
    panel = main_window.show_workspace("train")
    qtbot.waitUntil(lambda: panel.frames_drawn >= 1, timeout=60000)
    panel.open_lesson("lora-sd")
    qtbot.waitUntil(lambda: panel.lesson == "lora-sd" and panel.last_frame is not None,
                    timeout=60000)
    view = panel.view
    assert panel.form.editors["train_text_encoder"].isEnabled()  # the tiny SD 1.x
    panel.reset(overrides={"resolution": "128", "sample_every": 0})  # quick to cache
    qtbot.waitUntil(lambda: panel.last_frame.config["resolution"] == "128", timeout=60000)
    qtbot.waitUntil(lambda: view.model_box.findText("tiny-flux") > 0, timeout=30000)
    view.model_box.activated.emit(view.model_box.findText("tiny-flux"))
    qtbot.waitUntil(lambda: panel.last_frame.config["model"] == str(library_model)
                    and panel.last_frame.snapshot.get("family") == "flux", timeout=60000)
    qtbot.waitUntil(lambda: not panel.form.editors["train_text_encoder"].isEnabled(),
                    timeout=10000)
    assert "T5" in panel.form.editors["train_text_encoder"].toolTip()
    assert view.estimate.full_text().startswith("FLUX.1 LoRA at 128 px")


def test_out_of_memory_mid_run_says_what_was_kept_and_what_would_fit(tmp_path):
    """#18: out of memory mid-run stops with a sentence naming the LoRA kept so far and the
    savings that cut the run's estimate (kohya's order), not the lessons' generic advice."""
    from studio.pipelines.train.lora_sd_lesson import LoraSDLesson

    lesson = LoraSDLesson({**QUICK, "sample_every": 0, "save_every": 1, "steps": 50,
                           "name": "oom"}, seed=0)
    _steps(lesson, 1)
    said = lesson.out_of_memory()
    assert said.startswith("The LoRA run ran out of memory at step 1; oom.safetensors (saved "
                           "before) is kept.")
    assert "To fit: turn on gradient checkpointing" in said and said.endswith("Reset and Play.")
