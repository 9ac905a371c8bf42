"""NF4 / int8 weights through bitsandbytes (issue 15, "Fit in the memory a user has").

What runs where is checked, not assumed: bitsandbytes' CPU backend quantizes and runs NF4 and
int8 layers; transformers loads a text encoder with them on a CPU, and Studio's load of a tiny
FLUX folder with its T5 in NF4 (or int8) draws bit for bit what FLUX with transformers' own
BitsAndBytesConfig T5 draws. diffusers quantizes a transformer only on CUDA, so on a CPU the
result says the transformer stayed in full precision, and a folder saved with an NF4 transformer
is refused with that sentence; one saved with an NF4 T5 loads and draws what diffusers draws.
Without bitsandbytes every path says so with the install line. The planner's quantized steps
are checked with fake memory numbers, its NF4 estimate against a loaded encoder.
"""

from __future__ import annotations

import importlib.util
import json
import shutil

import numpy as np
import pytest
import torch

from studio.core.config import MemoryOptions, Settings, default_paths
from studio.core.jobs import CancelToken, UserFacingError
from studio.core.requests import Txt2ImgRequest
from studio.pipelines.diffusion import quantize
from studio.pipelines.diffusion.planner import GB, Component, plan
from studio.pipelines.diffusion.txt2img import Txt2ImgService
from tests.fixtures.sinks import RecordingSink

needs_bnb = pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None,
                               reason="bitsandbytes is not installed (pip install bitsandbytes)")


@pytest.fixture(scope="module")
def wide_flux(tmp_path_factory):
    from tests.fixtures.tiny_quantized import build_tiny_flux_wide_t5

    return build_tiny_flux_wide_t5(tmp_path_factory.mktemp("nf4") / "tiny-flux-wide")


def settings_with(folder, **options):
    settings = Settings(device="cpu", precision="fp32", preview_mode="off")
    return settings.with_memory_options(folder, MemoryOptions(**options))


def run(folder, settings, seed=5):
    req = Txt2ImgRequest(model=str(folder), prompt="a lighthouse at dusk", steps=2, cfg=3.5,
                         width=64, height=64, seed=seed, count=1)
    (result,) = Txt2ImgService(lambda: settings, default_paths).run(req, RecordingSink(),
                                                                    CancelToken())
    return result


def plain_flux(folder, seed=5, **components):
    from diffusers import FluxPipeline

    pipe = FluxPipeline.from_pretrained(str(folder), local_files_only=True, **components)
    pipe.set_progress_bar_config(disable=True)
    return pipe("a lighthouse at dusk", num_inference_steps=2, guidance_scale=3.5, width=64,
                height=64, generator=torch.Generator("cpu").manual_seed(seed)).images[0]


def transformers_t5(folder, mode):
    from transformers import T5EncoderModel

    return T5EncoderModel.from_pretrained(
        str(folder), subfolder="text_encoder_2",
        quantization_config=quantize.quantization_config(mode, "transformers", torch.float32))


@needs_bnb
def test_bitsandbytes_cpu_backend_runs_nf4_and_int8_layers():
    assert quantize.cpu_backend_problem() == ""
    assert quantize.problem("cpu", "text_encoder") == ""
    assert "only on an NVIDIA GPU (CUDA)" in quantize.problem("cpu", "denoiser")
    assert quantize.problem("cuda", "denoiser") == ""


@needs_bnb
@pytest.mark.parametrize("mode", ["nf4", "int8"])
def test_t5_quantized_on_the_cpu_is_bit_equal_to_transformers_own(wide_flux, mode):
    import bitsandbytes as bnb

    result = run(wide_flux, settings_with(wide_flux, quantize=mode))
    expected = plain_flux(wide_flux, text_encoder_2=transformers_t5(wide_flux, mode))
    assert np.array_equal(np.asarray(result.image), np.asarray(expected))
    assert not np.array_equal(np.asarray(result.image), np.asarray(plain_flux(wide_flux)))
    (note,) = [w for w in result.warnings if "weights:" in w]
    assert "transformer runs in full precision on CPU" in note and "text_encoder_2" in note
    from studio.library.models import entry_for_path
    from studio.pipelines.diffusion.loading import load_txt2img_pipeline

    quant, _notes = quantize.requested(wide_flux, mode, "cpu", torch.float32)
    pipe = load_txt2img_pipeline(entry_for_path(wide_flux, "file"), "cpu", quant)
    kind = bnb.nn.Linear4bit if mode == "nf4" else bnb.nn.Linear8bitLt
    assert any(isinstance(m, kind) for m in pipe.text_encoder_2.modules())
    assert not any(isinstance(m, kind) for m in pipe.transformer.modules())


def test_the_transformer_gets_diffusers_own_config_and_the_t5_transformers():
    """What a CUDA load asks for: PipelineQuantizationConfig resolves to the same configs as
    diffusers' and transformers' BitsAndBytesConfig (on CUDA the quantization itself is theirs)."""
    pytest.importorskip("bitsandbytes")
    import diffusers
    import transformers

    quant = quantize.Quantized(torch.bfloat16, "nf4", ("transformer", "text_encoder_2"))
    mapping = quantize.pipeline_quantization(quant).quant_mapping
    want = diffusers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                        bnb_4bit_compute_dtype=torch.bfloat16)
    assert isinstance(mapping["transformer"], diffusers.BitsAndBytesConfig)
    assert mapping["transformer"].to_dict() == want.to_dict()
    assert isinstance(mapping["text_encoder_2"], transformers.BitsAndBytesConfig)
    assert mapping["text_encoder_2"].bnb_4bit_quant_type == "nf4"
    assert set(mapping) == {"transformer", "text_encoder_2"}
    assert "4bit" in str(quant) and "torch.bfloat16" in str(quant)


def test_what_is_quantized_in_a_folder(wide_flux, tiny_sd15_dir):
    assert quantize.denoiser_of(wide_flux) == "transformer"
    assert quantize.large_text_encoders(wide_flux) == ("text_encoder_2",)  # not CLIP
    assert quantize.denoiser_of(tiny_sd15_dir) == "unet"
    assert quantize.large_text_encoders(tiny_sd15_dir) == ()


def _with_saved_nf4_transformer(source, dest):
    shutil.copytree(source, dest)
    config_path = dest / "transformer" / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True,
                                     "bnb_4bit_quant_type": "nf4"}
    config_path.write_text(json.dumps(config), encoding="utf-8")
    return dest


def test_a_folder_saved_with_an_nf4_transformer_is_marked_and_needs_cuda(wide_flux, tmp_path):
    from studio.library.kinds.image import describe

    folder = _with_saved_nf4_transformer(wide_flux, tmp_path / "flux-nf4")
    assert quantize.saved_quantization(folder) == {"transformer": "nf4"}
    entry = describe(folder, "file")
    assert entry is not None and entry.precision.startswith("NF4 (bitsandbytes")
    expected = "needs an NVIDIA GPU" if quantize.bnb_installed() else "pip install bitsandbytes"
    with pytest.raises(UserFacingError, match="CUDA" if quantize.bnb_installed() else expected):
        run(folder, Settings(device="cpu", precision="fp32", preview_mode="off"))


@needs_bnb
def test_a_folder_saved_with_an_nf4_t5_loads_and_draws_as_diffusers(wide_flux, tmp_path):
    from studio.library.kinds.image import describe
    from tests.fixtures.tiny_quantized import save_with_nf4_t5

    folder = save_with_nf4_t5(wide_flux, tmp_path / "flux-t5-nf4")
    assert quantize.saved_quantization(folder) == {"text_encoder_2": "nf4"}
    entry = describe(folder, "file")
    assert entry is not None and "NF4 (bitsandbytes): text_encoder_2" in entry.precision
    result = run(folder, Settings(device="cpu", precision="fp32", preview_mode="off"))
    assert np.array_equal(np.asarray(result.image), np.asarray(plain_flux(folder)))


def test_without_bitsandbytes_each_path_says_how_to_install_it(wide_flux, tmp_path,
                                                               monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    assert "pip install bitsandbytes" in quantize.problem("cuda")
    assert "pip install bitsandbytes" in quantize.problem("cpu", "text_encoder")
    quant, notes = quantize.requested(wide_flux, "nf4", "cuda", torch.float16)
    assert quant is None and "pip install bitsandbytes" in notes[0]
    # a job asking for NF4 runs in full precision and says why
    result = run(wide_flux, settings_with(wide_flux, quantize="nf4"), seed=7)
    assert any("pip install bitsandbytes" in w for w in result.warnings)
    assert np.array_equal(np.asarray(result.image), np.asarray(plain_flux(wide_flux, seed=7)))
    folder = _with_saved_nf4_transformer(wide_flux, tmp_path / "flux-nf4-nobnb")
    with pytest.raises(UserFacingError, match="pip install bitsandbytes"):
        run(folder, Settings(device="cpu", precision="fp32", preview_mode="off"))


def test_nf4_of_a_single_file_is_a_sentence(tiny_sd15_dir):
    from studio.library.models import ModelEntry

    entry = ModelEntry("x", tiny_sd15_dir / "model.safetensors", "file", "single-file", "sd1")
    with pytest.raises(UserFacingError, match="apply to diffusers folders"):
        quantize.load_kwargs(entry, quantize.Quantized(torch.float32, "nf4", ("unet",)))


# -- the planner's quantized steps ---------------------------------------------------------------
FLUX_BF16 = [  # FLUX.1-dev in bf16: NF4 sizes as quantized_bytes gives them (linear layers)
    Component("transformer", "the transformer", int(23.8 * GB), int(6.7 * GB)),
    Component("text_encoder_2", "the T5 encoder", int(9.5 * GB), int(2.8 * GB)),
    Component("text_encoder", "the text encoder", int(0.25 * GB)),
    Component("vae", "the vae", int(0.17 * GB)),
]
FLUX_FP8 = [Component("transformer", "the transformer", int(11.9 * GB), int(6.7 * GB)),
            *FLUX_BF16[1:]]


def test_nf4_transformer_and_t5_when_nothing_else_fits_the_gpu():
    p = plan("FLUX.1-dev", FLUX_BF16, "cuda", free_gpu=16 * GB, free_ram=64 * GB, bnb="all")
    assert p.mode == "nf4" and p.quantize == "nf4" and p.offload == "none"
    assert p.quantized == ("transformer", "text_encoder_2")
    assert p.sentence == ("FLUX.1-dev needs ~37 GB; you have 16 GB free on the GPU: the "
                          "transformer and the T5 encoder run in 4 bits (NF4, bitsandbytes), "
                          "which fits.")
    # model offload still comes first when the transformer alone fits
    assert plan("FLUX.1-dev", FLUX_BF16, "cuda", int(27.5 * GB), 64 * GB, bnb="all").mode \
        == "model"


def test_the_t5_in_nf4_when_ram_is_short_for_the_t5_on_the_cpu():
    p = plan("FLUX.1-dev fp8", FLUX_FP8, "cuda", free_gpu=18 * GB, free_ram=4 * GB, bnb="all")
    assert p.mode == "text_encoder_nf4" and p.quantized == ("text_encoder_2",)
    assert p.sentence.endswith("the T5 encoder runs in 4 bits (NF4, bitsandbytes) on the GPU.")
    # with RAM for it, the T5 runs on the CPU (lossless) as before
    assert plan("FLUX.1-dev fp8", FLUX_FP8, "cuda", 18 * GB, 32 * GB, bnb="all").mode \
        == "text_encoder_cpu"


def test_without_bitsandbytes_the_sentence_names_the_install_line():
    p = plan("FLUX.1-dev", FLUX_BF16, "cuda", 16 * GB, 64 * GB, bnb="missing")
    assert p.mode == "sequential" and "pip install bitsandbytes" in p.sentence
    p = plan("FLUX.1-dev", FLUX_BF16, "cuda", 16 * GB, 64 * GB, bnb="")
    assert p.mode == "sequential" and "bitsandbytes" not in p.sentence


def test_on_a_cpu_the_t5_in_nf4_when_ram_is_short():
    p = plan("FLUX.1-dev", FLUX_BF16, "cpu", 0, free_ram=32 * GB, bnb="text_encoder")
    assert p.mode == "text_encoder_nf4" and p.quantized == ("text_encoder_2",)
    assert "the T5 encoder runs in 4 bits (NF4, bitsandbytes) to fit" in p.sentence
    p = plan("FLUX.1-dev", FLUX_BF16, "cpu", 0, free_ram=32 * GB, bnb="missing")
    assert p.mode == "full" and "pip install bitsandbytes" in p.sentence


@needs_bnb
def test_the_nf4_estimate_is_what_the_loaded_encoder_holds(wide_flux):
    """From the headers before loading: the T5 in NF4, against the loaded encoder's parameters
    plus the block scales bitsandbytes keeps beside them."""
    from studio.library.models import ModelEntry
    from studio.pipelines.diffusion.planner import components_of
    from studio.pipelines.model_cache import measure_bytes

    entry = ModelEntry("tiny", wide_flux, "file", "diffusers", "flux")
    found = {c.key: c for c in components_of(entry, 4)}
    assert found["text_encoder"].nf4 == 0 and found["vae"].nf4 == 0  # CLIP and VAE stay
    t5 = transformers_t5(wide_flux, "nf4")
    scales = sum(m.weight.quant_state.absmax.numel() * 4 for m in t5.modules()
                 if hasattr(getattr(m, "weight", None), "quant_state"))
    measured = measure_bytes(t5) + scales
    assert 0.97 * measured <= found["text_encoder_2"].nf4 <= 1.03 * measured, \
        (found["text_encoder_2"].nf4, measured)


@needs_bnb
def test_a_job_runs_as_the_planner_chose_with_the_t5_in_nf4(wide_flux, monkeypatch):
    """RAM (faked) a little short for the whole model on the CPU: the plan puts the T5 in NF4,
    the job loads it so (the image is transformers' NF4 T5's) and says why; the next job finds
    it loaded as planned instead of planning again with its memory taken."""
    from studio.library.models import ModelEntry
    from studio.pipelines.diffusion import planner
    from studio.pipelines.diffusion.planner import WORKING_MIN, components_of

    parts = components_of(ModelEntry("w", wide_flux, "file", "diffusers", "flux"), 4)
    # on a CPU only the T5 is quantized (diffusers quantizes a transformer on CUDA alone)
    squeezed = sum(c.nf4 if c.key == "text_encoder_2" else c.bytes for c in parts) + WORKING_MIN
    monkeypatch.setattr(planner, "free_memory", lambda device: (0, squeezed))
    settings = Settings(device="cpu", precision="fp32", preview_mode="off")
    service = Txt2ImgService(lambda: settings, default_paths)
    req = Txt2ImgRequest(model=str(wide_flux), prompt="a lighthouse at dusk", steps=2, cfg=3.5,
                         width=64, height=64, seed=5, count=1)
    first = RecordingSink()
    (result,) = service.run(req, first, CancelToken())
    assert "Loading model: text_encoder_2 in NF4 (4-bit) through bitsandbytes…" in first.messages
    (said,) = [w for w in result.warnings if "needs ~" in w]
    assert said.endswith("the T5 encoder runs in 4 bits (NF4, bitsandbytes) to fit.")
    expected = plain_flux(wide_flux, text_encoder_2=transformers_t5(wide_flux, "nf4"))
    assert np.array_equal(np.asarray(result.image), np.asarray(expected))
    sink = RecordingSink()
    service.run(req, sink, CancelToken())
    assert service.cache.loads == 1 and not [m for m in sink.messages if "needs ~" in m]
