"""The memory planner (issue 15): each component's need from its files' headers, compared with
(fake) free GPU memory and RAM, picks the lightest setting that fits and says so in one sentence;
the sentence reaches the job's status line."""

from __future__ import annotations

import numpy as np
import torch
from safetensors.torch import save_file

from studio.library.models import ModelEntry
from studio.pipelines.diffusion.planner import (
    GB,
    Component,
    components_of,
    plan,
    tensor_bytes,
)

FLUX_FP8 = [  # FLUX.1-dev with an fp8 transformer run in bf16, T5 and CLIP in bf16
    Component("transformer", "the transformer", int(11.9 * GB)),
    Component("text_encoder_2", "the T5 encoder", int(9.5 * GB)),
    Component("text_encoder", "the text encoder", int(0.25 * GB)),
    Component("vae", "the vae", int(0.17 * GB)),
]


def test_everything_fits_whole_on_the_gpu():
    p = plan("FLUX.1-dev", FLUX_FP8, "cuda", free_gpu=40 * GB, free_ram=64 * GB)
    assert p.mode == "full" and p.offload == "none"
    assert p.sentence == ("FLUX.1-dev needs ~24 GB; you have 40 GB free on the GPU: it runs "
                          "whole on the GPU.")


def test_the_t5_encoder_runs_on_the_cpu_when_the_rest_fits():
    p = plan("FLUX.1-dev fp8", FLUX_FP8, "cuda", free_gpu=16 * GB, free_ram=32 * GB)
    assert p.mode == "text_encoder_cpu" and p.cpu_component == "text_encoder_2"
    assert p.offload == "none"
    assert p.sentence.endswith("you have 16 GB free on the GPU: the T5 encoder runs on the CPU.")


def test_model_offload_then_sequential_then_a_sentence():
    p = plan("FLUX.1-dev", FLUX_FP8, "cuda", free_gpu=14 * GB, free_ram=32 * GB)
    # the rest (12.3 GB + margin) does not fit, one component at a time does
    assert p.mode == "model" and p.offload == "model" and "model offload" in p.sentence
    p = plan("FLUX.1-dev", FLUX_FP8, "cuda", free_gpu=8 * GB, free_ram=32 * GB)
    assert p.mode == "sequential" and "sequential offload" in p.sentence
    p = plan("FLUX.1-dev", FLUX_FP8, "cuda", free_gpu=8 * GB, free_ram=8 * GB)
    assert p.mode == "sequential" and "may be too little even layer by layer" in p.sentence


def test_on_the_cpu_the_ram_is_compared():
    p = plan("SD 1.5", [Component("unet", "the unet", 2 * GB)], "cpu", 0, free_ram=8 * GB)
    assert p.mode == "full" and "of RAM free: it runs whole in memory" in p.sentence
    p = plan("SD 1.5", [Component("unet", "the unet", 6 * GB)], "cpu", 0, free_ram=4 * GB)
    assert "may swap to disk" in p.sentence


def test_needs_are_read_from_headers_in_the_precision_run(tmp_path):
    path = tmp_path / "t.safetensors"
    save_file({"w": torch.zeros(100, 10, dtype=torch.float16),
               "q": torch.zeros(64, dtype=torch.uint8)}, str(path))
    assert tensor_bytes([path], 4) == 1000 * 4 + 64  # floats in fp32, quantized bytes as stored
    assert tensor_bytes([path], 2) == 1000 * 2 + 64


def test_components_of_a_diffusers_folder(tiny_flux_dir):
    entry = ModelEntry("tiny", tiny_flux_dir, "file", "diffusers", "flux")
    found = {c.key: c for c in components_of(entry, 4)}
    assert set(found) == {"transformer", "text_encoder", "text_encoder_2", "vae"}
    weights = sum(p.numel() for p in _flux_transformer(tiny_flux_dir).parameters())
    assert found["transformer"].bytes == weights * 4


def _flux_transformer(folder):
    from diffusers import FluxTransformer2DModel

    return FluxTransformer2DModel.from_pretrained(str(folder), subfolder="transformer")


def test_the_sentence_reaches_the_status_line(tiny_sd15_dir):
    from studio.core.config import Settings, default_paths
    from studio.core.jobs import CancelToken
    from studio.core.requests import Txt2ImgRequest
    from studio.pipelines.diffusion.txt2img import Txt2ImgService
    from tests.fixtures.sinks import RecordingSink

    settings = Settings(device="cpu", precision="fp32", preview_mode="off")
    sink = RecordingSink()
    req = Txt2ImgRequest(model=str(tiny_sd15_dir), prompt="a fox", steps=1, width=64,
                         height=64, seed=1, count=1)
    Txt2ImgService(lambda: settings, default_paths).run(req, sink, CancelToken())
    (said,) = [m for m in sink.messages if " needs ~" in m]
    assert said.startswith("tiny-sd15 needs ~0.5 GB; you have ") and "of RAM free" in said


def test_the_estimate_is_what_the_loaded_split_model_holds(tmp_path, tiny_flux_dir, monkeypatch):
    """Estimated from headers before loading = the bytes of the loaded pipeline's weights (fp32,
    and with an fp8 transformer kept in fp8 by layer-wise casting)."""
    from studio.core.config import default_paths
    from studio.library.models import entry_for_path
    from studio.pipelines.diffusion.split_loading import load_split_pipeline
    from studio.pipelines.model_cache import measure_bytes
    from tests.fixtures.tiny_models import write_tiny_config_folder
    from tests.fixtures.tiny_split import write_comfy_split

    write_tiny_config_folder(tiny_flux_dir, tmp_path / "configs" / "flux")
    monkeypatch.setenv("STUDIO_SINGLE_FILE_CONFIG_DIR", str(tmp_path / "configs"))
    for fp8 in (False, True):
        model = write_comfy_split(tiny_flux_dir, tmp_path / f"ComfyUI-{fp8}", "flux", fp8=fp8)
        entry = entry_for_path(model, "file")
        estimate = sum(c.bytes for c in components_of(entry, 4))
        measured = measure_bytes(load_split_pipeline(entry, torch.float32, default_paths()))
        # what the estimate leaves out: non-persistent buffers (CLIP's position ids); with fp8,
        # the norms layer-wise casting keeps in fp32
        assert 0.97 * measured <= estimate <= measured, (fp8, estimate, measured)


def test_a_text_encoder_left_on_the_cpu_still_draws_the_same_image(tiny_flux_dir):
    from diffusers import FluxPipeline

    from studio.pipelines.diffusion.planner import CPU_COMPONENT_ATTR, run_component_on_cpu

    def draw(pipe):
        return np.asarray(pipe("a fox", num_inference_steps=2, width=64, height=64,
                               generator=torch.Generator("cpu").manual_seed(3)).images[0])

    pipe = FluxPipeline.from_pretrained(str(tiny_flux_dir), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    before = draw(pipe)
    run_component_on_cpu(pipe, "text_encoder_2", "cpu")  # the hook's path, on a CPU-only machine
    assert getattr(pipe, CPU_COMPONENT_ATTR) == "text_encoder_2"
    assert hasattr(pipe.text_encoder_2, "_hf_hook")
    assert np.array_equal(draw(pipe), before)


def test_each_setting_s_gpu_need_is_what_the_plan_compares():
    """gpu_need (what bench/gpu.py prints next to the measured peak) is the planner's own
    arithmetic: the plan changes mode exactly where the free memory crosses it."""
    from studio.pipelines.diffusion.planner import gpu_need

    need = {m: gpu_need(FLUX_FP8, m) for m in ("full", "text_encoder_cpu", "model",
                                               "sequential")}
    assert need["full"] > need["text_encoder_cpu"] > need["model"] > need["sequential"]
    assert plan("F", FLUX_FP8, "cuda", need["full"], 64 * GB).mode == "full"
    assert plan("F", FLUX_FP8, "cuda", need["full"] - 1, 64 * GB).mode == "text_encoder_cpu"
    assert plan("F", FLUX_FP8, "cuda", need["text_encoder_cpu"] - 1, 64 * GB).mode == "model"
    assert plan("F", FLUX_FP8, "cuda", need["model"] - 1, 64 * GB).mode == "sequential"
