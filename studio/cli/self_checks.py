"""The install checks behind ``studio self-test`` that need no window: imports, shipped files, a
two-step image, one chat token and a training step. No Qt here.

Each check builds what it needs in a scratch folder — a tiny random-weight Stable Diffusion
pipeline (its CLIP tokenizer written from the BPE merges that ship in ``assets/``) and a tiny Llama
with a byte-level BPE tokenizer trained on the spot — and runs it through the same services the
window and the CLI use (:class:`~studio.pipelines.diffusion.txt2img.Txt2ImgService`, the chat service, the
lesson registry), so a broken frozen bundle fails here the way it would fail for a user. Nothing
is downloaded: everything works with ``HF_HUB_OFFLINE=1`` and no network at all.
"""

from __future__ import annotations

import dataclasses
import math
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core.config import Paths, Settings
from studio.core.wording import count_of

if TYPE_CHECKING:
    from studio.core.jobs import JobSnapshot

#: Modules a working install imports (the window's, the engines', the lessons' data).
STACK_MODULES = (
    "numpy", "PIL.Image", "torch", "safetensors.torch", "tokenizers", "huggingface_hub",
    "transformers", "diffusers", "accelerate", "peft", "PySide6.QtCore", "PySide6.QtGui",
    "PySide6.QtWidgets", "PySide6.QtSvg", "pyqtgraph", "sklearn.datasets", "platformdirs",
    "markdown_it", "pygments", "tqdm", "trl", "datasets",
)
#: Files the app reads from ASSETS_DIR.
ASSET_FILES = ("tokenizers/bpe_simple_vocab_16e6.txt.gz", "configs", "catalogs/cyclegan.json",
               "icons/studio.svg", "texts/shakespeare.txt.gz", "preferences/studio-polite.jsonl")

GENERATE_STEPS = 2
IMAGE_SIDE = 64  # 8×8 latents: the smallest size the tiny four-level VAE decodes
JOB_TIMEOUT = 600.0


class CheckFailed(Exception):
    """A check ran but its result was wrong; the message says what was expected."""


def scratch_settings(root: Path) -> tuple[Settings, Paths]:
    """Settings and folders under ``root`` (the CPU or the GPU as 'auto' picks, fp32)."""
    paths = Paths(config_dir=root / "config", data_dir=root / "data",
                  models_dir=root / "data" / "models", outputs_dir=root / "outputs",
                  runs_dir=root / "data" / "runs")
    # fp32: random weights overflow in half precision, and the check is about the install.
    settings = Settings(precision="fp32", preview_mode="fast", theme="dark")
    return settings, paths


# -- imports and files ----------------------------------------------------------------------
def studio_requirements() -> list[str]:
    """Studio's own run-time requirements: from its installed metadata, else (a source checkout
    that was never installed) from ``pyproject.toml``."""
    try:
        return list(metadata.requires("studio") or [])
    except metadata.PackageNotFoundError:
        pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
        try:
            import tomllib  # Python 3.11+
        except ImportError:
            tomllib = None
        if tomllib is None or not pyproject.is_file():
            raise CheckFailed("the package metadata of studio itself is missing: install it "
                              "(python -m pip install -c constraints.txt -e .)") from None
        with pyproject.open("rb") as f:
            return list(tomllib.load(f)["project"]["dependencies"])


def runtime_distributions(requirements: list[str] | None = None) -> tuple[list[str], list[str]]:
    """(installed, missing): every distribution Studio needs at run time — its requirements
    and theirs, recursively, with markers evaluated and no extras — by name.

    The installers copy the metadata and data files of exactly these (``packaging/studio.spec``),
    and the self-test checks that each is there: libraries read their own metadata and data at
    import (transformers checks versions; ``kernels``, which a transformers release started to
    need, reads a JSON file that an installer once left behind)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    todo = [Requirement(r) for r in (studio_requirements() if requirements is None
                                     else requirements)]
    seen: dict[str, str] = {}
    missing: list[str] = []
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen or name in missing:
            continue
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            missing.append(name)
            continue
        seen[name] = dist.metadata["Name"]
        todo.extend(Requirement(r) for r in dist.requires or [])
    return sorted(seen.values(), key=str.lower), sorted(missing)


def check_imports() -> str:
    """Import the whole stack and find the package metadata of everything it depends on."""
    import importlib

    for name in STACK_MODULES:
        importlib.import_module(name)
    installed, missing = runtime_distributions()
    if missing:
        raise CheckFailed(f"package metadata missing for {', '.join(missing)}")
    import torch

    return f"torch {torch.__version__}, diffusers {metadata.version('diffusers')}, " \
           f"transformers {metadata.version('transformers')}; {len(installed)} packages"


def check_assets() -> str:
    """The files that ship with the app are where the app looks for them."""
    from studio import ASSETS_DIR

    missing = [name for name in ASSET_FILES if not (ASSETS_DIR / name).exists()]
    if missing:
        raise CheckFailed(f"missing in {ASSETS_DIR}: {', '.join(missing)}")
    from studio.library.families import FAMILIES  # one module per family, found by listing

    if not {"sd1", "sd2", "sdxl"} <= set(FAMILIES):
        raise CheckFailed(f"the model families found are {', '.join(FAMILIES) or 'none'}")
    return str(ASSETS_DIR)


# -- tiny models ------------------------------------------------------------------------------
def build_tiny_sd(folder: Path, seed: int = 0) -> Path:
    """Save a tiny random Stable Diffusion 1.x pipeline (real classes, real CLIP BPE) in ``folder``."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from studio.library.clip_tokenizer import PAD_CLIP_L, write_clip_tokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
        attention_head_dim=(2, 4), norm_num_groups=32)
    vae = AutoencoderKL(
        block_out_channels=(32, 32, 32, 32), in_channels=3, out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4, layers_per_block=1, norm_num_groups=32, sample_size=64)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2,
        vocab_size=49408, max_position_embeddings=77, hidden_act="quick_gelu",
        bos_token_id=49406, eos_token_id=49407, pad_token_id=1))
    tokenizer_dir = write_clip_tokenizer(folder.parent / f".{folder.name}-tokenizer", PAD_CLIP_L)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012,
                                       beta_schedule="scaled_linear", steps_offset=1)
    pipe = StableDiffusionPipeline(
        unet=unet, vae=vae, text_encoder=text_encoder,
        tokenizer=CLIPTokenizer.from_pretrained(tokenizer_dir), scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder, safe_serialization=True)  # type: ignore[attr-defined]
    return folder


def build_tiny_clip(folder: Path, seed: int = 0) -> Path:
    """Save a tiny random CLIPModel with its processor (real CLIP BPE, 32-pixel images) in
    ``folder``: the layout of openai/clip-vit-base-patch32, a few million parameters."""
    import torch
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPProcessor,
        CLIPTokenizer,
    )

    from studio.library.clip_tokenizer import PAD_CLIP_L, write_clip_tokenizer

    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4,
                     "num_hidden_layers": 2, "vocab_size": 49408, "max_position_embeddings": 77,
                     "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 49407},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4,
                       "num_hidden_layers": 2, "image_size": 32, "patch_size": 8},
        projection_dim=16)
    tokenizer_dir = write_clip_tokenizer(folder.parent / f".{folder.name}-tokenizer", PAD_CLIP_L)
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                           crop_size={"height": 32, "width": 32}),
        tokenizer=CLIPTokenizer.from_pretrained(tokenizer_dir))
    CLIPModel(config).eval().save_pretrained(folder, safe_serialization=True)
    processor.save_pretrained(folder)
    return folder


_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
_CHAT_TEXT = ("Hello! How can I help you today? The quick brown fox jumps over the lazy dog. "
              "user assistant system You are a helpful assistant. 0 1 2 3 4 5 6 7 8 9")


def build_tiny_llama(folder: Path, seed: int = 0) -> Path:
    """Save a tiny random Llama chat model (trained BPE tokenizer, ChatML template) in ``folder``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator([_CHAT_TEXT] * 10, trainer=trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>")
    tokenizer.chat_template = _CHAT_TEMPLATE
    eos_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert isinstance(pad_id, int)  # one token: one id
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        eos_token_id=eos_id, pad_token_id=pad_id, bos_token_id=None, tie_word_embeddings=False))
    model.generation_config.eos_token_id = eos_id
    model.generation_config.pad_token_id = pad_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# -- jobs through the real services -----------------------------------------------------------
def _run_jobs(settings: Settings, paths: Paths, requests: list[object]
              ) -> list[tuple[Any, list[tuple[int, int]]]]:
    """Run requests one after another on an engine built as the window builds it, then unload
    every model (the "Unload all" job); [(result, progress steps)] in order."""
    from studio.core.jobs import JobState
    from studio.core.requests import UnloadRequest
    from studio.pipelines.services import build_engine

    class Steps:
        def __init__(self) -> None:
            self.seen: list[tuple[int, int]] = []

        def job_changed(self, job: JobSnapshot) -> None:
            pass

        def job_progress(self, job: JobSnapshot, step: int, total: int, preview: Any) -> None:
            self.seen.append((step, total))

        def job_partial(self, job: JobSnapshot, result: Any) -> None:
            pass

    engine = build_engine(lambda: settings, lambda: paths, name="self-test")
    out = []
    try:
        for request in [*requests, UnloadRequest()]:
            steps = Steps()
            job = engine.submit(request, listener=steps)
            if not job.wait(timeout=JOB_TIMEOUT):
                job.cancel()
                raise CheckFailed(f"the {job.kind} job did not finish in {JOB_TIMEOUT:.0f} s")
            if job.state is not JobState.DONE:
                raise CheckFailed(f"the {job.kind} job ended {job.state.value}: "
                                  f"{job.error or job.message}")
            out.append((job.result, steps.seen))
    finally:
        engine.shutdown(wait=True, timeout=30)
    return out[:-1]


def check_generate(root: Path, device: str = "auto") -> str:
    """A two-step text-to-image job with a tiny model, saved as a PNG with its parameters."""

    from studio.core.requests import Txt2ImgRequest

    settings, paths = scratch_settings(root)
    settings = dataclasses.replace(settings, device=device)
    model = build_tiny_sd(paths.models_dir / "tiny-sd")
    request = Txt2ImgRequest(model=str(model), prompt="a lighthouse at dawn",
                             steps=GENERATE_STEPS, cfg=5.0, width=IMAGE_SIDE, height=IMAGE_SIDE,
                             seed=42)
    [(results, steps)] = _run_jobs(settings, paths, [request])
    done = sorted({s for s, total in steps if total == GENERATE_STEPS})
    _one_saved_png(results, "")
    if done[-1:] != [GENERATE_STEPS]:
        raise CheckFailed(f"expected progress to reach step {GENERATE_STEPS}, saw {done}")
    # `studio params` (and Gallery, reuse: the same reader) reads the PNG back.
    from studio.cli.params import collect

    read = collect(results[0].path)
    if (read["prompt"], read["seed"], read["steps"]) != (request.prompt, 42, GENERATE_STEPS):
        raise CheckFailed(f"studio params read back {read['prompt']!r}, seed {read['seed']}, "
                          f"steps {read['steps']}")
    from studio.cli.self_checks_generate import (
        controlnet_step,
        gallery_search,
        lora_step,
        shrink_step,
    )

    lora = lora_step(model, settings, paths, results[0].path, IMAGE_SIDE)
    search = gallery_search(settings, paths, results[0].path)
    control = controlnet_step(model, settings, paths, results[0].path, IMAGE_SIDE,
                              GENERATE_STEPS)
    shrunk = shrink_step(model, settings, paths, IMAGE_SIDE, GENERATE_STEPS)
    return (f"{count_of(GENERATE_STEPS, 'step')}, {IMAGE_SIDE}×{IMAGE_SIDE} PNG, its "
            f"parameters read back; {lora}; {search}; {control}; {shrunk}")


def _one_saved_png(results: list | None, what: str, side: int = IMAGE_SIDE) -> None:
    """A job made exactly one side² PNG carrying its parameters."""
    from PIL import Image

    results = results or []
    if len(results) != 1:
        raise CheckFailed(f"{what}expected 1 image, got {len(results)}")
    with Image.open(results[0].path) as image:
        if image.size != (side, side) or "parameters" not in image.info:
            raise CheckFailed(f"{what}the saved image is wrong: {image.size}, "
                              f"{sorted(image.info)}")


def check_chat(root: Path, device: str = "auto") -> str:
    """One token from a tiny local chat model through the chat service."""
    from studio.pipelines.chat.types import AttentionRequest, ChatRequest

    settings, paths = scratch_settings(root)
    settings = dataclasses.replace(settings, device=device)
    model = build_tiny_llama(paths.models_dir / "tiny-llama")
    request = ChatRequest(model=str(model), messages=[{"role": "user", "content": "Hello!"}],
                          temperature=0.0, max_new_tokens=1, seed=0)
    # and Complete mode (no template) with token probabilities: the forward hook's path
    complete = dataclasses.replace(request, complete=True, logprobs=2)
    # and where the last layer looked: the prompt that Complete-mode reply read
    looked = AttentionRequest(model=str(model), input_ids=[5, 6, 7, 8])
    [(reply, _), (raw, _), (seen, _)] = _run_jobs(settings, paths, [request, complete, looked])
    if reply is None or reply.completion_tokens != 1:
        raise CheckFailed(f"expected one token, got {getattr(reply, 'completion_tokens', None)}")
    scored = getattr(raw, "logprobs", None) or []
    if len(scored) != 1 or not scored[0].logprob <= 0 or len(scored[0].top) != 2:
        raise CheckFailed(f"Complete mode with token probabilities gave {scored!r}")
    weights = getattr(seen, "weights", None) or []
    if len(weights) != 4 or abs(sum(weights) - 1) > 1e-3:
        raise CheckFailed(f"the attention job gave {weights!r}")
    # Make smaller: an int8 copy (torchao tensors through safetensors), then a token from it.
    from studio.core.shrink_requests import ShrinkRequest

    [(report, _)] = _run_jobs(settings, paths, [ShrinkRequest(model=str(model), method="int8",
                                                               eval_tokens=16, speed_tokens=1)])
    if report is None:
        raise CheckFailed("the int8 copy of the chat model was not made")
    request = dataclasses.replace(request, model=str(report.path))
    [(small, _)] = _run_jobs(settings, paths, [request])
    if small is None or small.completion_tokens != 1:
        raise CheckFailed("the int8 copy did not answer one token")
    return (f"{reply.prompt_tokens} prompt tokens → 1 token; Complete mode: "
            f"p = {math.exp(scored[0].logprob):.1%}; its int8 copy too")


def _tiny_image_inputs(folder: Path) -> tuple[Path, Path]:
    """A 64×64 photo-like image and a mask covering its middle, as PNG files in ``folder``."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    ramp = np.linspace(0, 255, IMAGE_SIDE, dtype=np.uint8)
    pixels = np.stack([np.tile(ramp, (IMAGE_SIDE, 1)), np.tile(ramp[:, None], (1, IMAGE_SIDE)),
                       np.full((IMAGE_SIDE, IMAGE_SIDE), 96, np.uint8)], axis=-1)
    image, mask = folder / "photo.png", folder / "mask.png"
    Image.fromarray(pixels).save(image)
    mask_pixels = np.zeros((IMAGE_SIDE, IMAGE_SIDE), np.uint8)
    mask_pixels[16:48, 16:48] = 255
    Image.fromarray(mask_pixels).save(mask)
    return image, mask


def check_img2img(root: Path, device: str = "auto") -> str:
    """Image to image, inpainting, outpainting (16 px on every side) and SD upscale (1.5×, four
    64-px tiles) with a tiny model, through the img2img service: other diffusers pipelines than
    text to image, loaded by name at run time."""

    from studio.core.requests import Img2ImgRequest

    settings, paths = scratch_settings(root)
    settings = dataclasses.replace(settings, device=device)
    model = build_tiny_sd(paths.models_dir / "tiny-sd")
    image, mask = _tiny_image_inputs(root / "inputs")
    base = Img2ImgRequest(model=str(model), image=str(image), prompt="a painting",
                          steps=GENERATE_STEPS * 2, strength=0.5, cfg=5.0, seed=7)
    side = IMAGE_SIDE + 32  # outpainted and SD-upscaled: 96 px
    checks = {"img2img": (base, IMAGE_SIDE),
              "inpaint": (dataclasses.replace(base, mask=str(mask)), IMAGE_SIDE),
              "outpaint": (dataclasses.replace(base, strength=1.0, mask_blur=4, outpaint_left=16,
                                               outpaint_right=16, outpaint_top=16,
                                               outpaint_bottom=16), side),
              "SD upscale": (dataclasses.replace(base, sd_upscale=1.5, sd_upscale_tile=64,
                                                 sd_upscale_overlap=16), side)}
    ran = _run_jobs(settings, paths, [request for request, _ in checks.values()])
    for (name, (_, size)), (results, _) in zip(checks.items(), ran, strict=True):
        _one_saved_png(results, f"{name}: ", size)
    return (f"img2img and inpaint, {IMAGE_SIDE}×{IMAGE_SIDE} PNGs; outpaint and SD upscale, "
            f"{side}×{side}")


def check_transform(root: Path, device: str = "auto") -> str:
    """A CycleGAN translation with a tiny generator saved as the reference code saves one
    (``latest_net_G.pth``), loaded safely and run through the transform service; and an upscale
    job with a tiny Real-ESRGAN Compact model found by its name in the models' ``upscalers``."""
    import torch
    from PIL import Image
    from safetensors.torch import save_file

    from studio.core.requests import TransformRequest, UpscaleRequest
    from studio.pipelines.cyclegan.model import GeneratorSpec, build_generator
    from studio.pipelines.upscale.model import UpscalerSpec, build_network

    settings, paths = scratch_settings(root)
    settings = dataclasses.replace(settings, device=device)
    torch.manual_seed(0)
    net = build_generator(GeneratorSpec(3, 3, 8, 2), fixed_norm=False)
    weights = paths.models_dir / "cyclegan" / "tiny" / "latest_net_G.pth"
    weights.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), weights)
    upscaler = build_network(UpscalerSpec("SRVGGNetCompact", 2, features=4, blocks=1))
    (paths.models_dir / "upscalers").mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in upscaler.state_dict().items()},
              str(paths.models_dir / "upscalers" / "tiny-2x.safetensors"))
    image, _ = _tiny_image_inputs(root / "inputs")
    jobs = _run_jobs(settings, paths,
                     [TransformRequest(model=str(weights), inputs=[str(image)]),
                      UpscaleRequest(model="tiny-2x", inputs=[str(image)])])
    for (results, _), what, side in zip(jobs, ("translated", "upscaled"),
                                        (IMAGE_SIDE, 2 * IMAGE_SIDE), strict=True):
        if len(results or []) != 1:
            raise CheckFailed(f"{what}: expected 1 image, got {len(results or [])}")
        with Image.open(results[0].path) as out:
            if out.size != (side, side):
                raise CheckFailed(f"the {what} image is {out.size}, not {side}×{side}")
    return (f"CycleGAN generator, {IMAGE_SIDE}×{IMAGE_SIDE} PNG; upscaler ×2, "
            f"{2 * IMAGE_SIDE}×{2 * IMAGE_SIDE} PNG")


def check_serve(root: Path, device: str = "auto") -> str:
    """``studio serve``'s HTTP API on a loopback port, serving what the library scan finds (as
    ``studio models list`` and ``studio serve`` without ``--model`` do): the model list and a
    one-token chat completion and an embedding (the ``embed`` job kind), as an OpenAI client asks
    for them."""
    import json
    import threading
    import urllib.request

    from studio.pipelines.services import build_engine
    from studio.server.app import make_server
    from studio.server.catalog import build_catalog

    settings, paths = scratch_settings(root)
    settings = dataclasses.replace(settings, device=device, preview_mode="off")
    build_tiny_llama(paths.models_dir / "tiny-llama")
    catalog = build_catalog([], settings, paths)
    if not catalog.models:
        raise CheckFailed(f"the library scan found no model in {paths.models_dir}")
    engine = build_engine(lambda: settings, lambda: paths, name="self-test-serve")
    server = make_server("127.0.0.1", 0, engine, catalog)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name="self-test-serve-http", daemon=True)
    thread.start()
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, no proxy
    try:
        with opener.open(f"{server.url}/models", timeout=JOB_TIMEOUT) as reply:
            models = [m["id"] for m in json.load(reply)["data"]]
        body = json.dumps({"model": models[0], "max_tokens": 1, "temperature": 0,
                           "messages": [{"role": "user", "content": "Hello!"}]}).encode()
        request = urllib.request.Request(f"{server.url}/chat/completions", data=body,
                                         headers={"Content-Type": "application/json"})
        with opener.open(request, timeout=JOB_TIMEOUT) as reply:
            answer = json.load(reply)
        body = json.dumps({"model": models[0], "input": "Hello!"}).encode()
        request = urllib.request.Request(f"{server.url}/embeddings", data=body,
                                         headers={"Content-Type": "application/json"})
        with opener.open(request, timeout=JOB_TIMEOUT) as reply:
            vector = json.load(reply)["data"][0]["embedding"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)
        engine.shutdown(wait=True, timeout=30)
    if answer.get("usage", {}).get("completion_tokens") != 1:
        raise CheckFailed(f"expected a one-token completion, got {answer.get('usage')}")
    if not vector or not all(isinstance(v, float) for v in vector):
        raise CheckFailed(f"expected an embedding vector, got {str(vector)[:80]}")
    return (f"{len(models)} model listed, one-token chat completion and a {len(vector)}-float "
            "embedding over HTTP")


def check_download(root: Path, device: str = "auto") -> str:
    """Both kinds of download on the I/O lane — a Hub repository and a single file, with its
    sha256 — from a server on a loopback port that stands in for the Hub (nothing leaves this
    machine), resumed from a partial file as a real second attempt would be."""
    import contextlib
    import hashlib
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from studio.cli.common import restore_environ, set_environ
    from studio.library.download_jobs import FileDownloadRequest, HubDownloadRequest
    from studio.library.hub_download import DownloadPlan, HubFile

    files = {"/studio/tiny-model/resolve/main/config.json": b'{"tiny": true}',
             "/files/latest_net_G.pth": bytes(range(256)) * 64}

    class Files(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            body = files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            start = 0
            ranged = self.headers.get("Range", "")
            if ranged.startswith("bytes="):
                start = int(ranged[6:].split("-")[0] or 0)
            self.send_response(206 if start else 200)
            self.send_header("Content-Length", str(len(body) - start))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.end_headers()
            self.wfile.write(body[start:])

    settings, paths = scratch_settings(root)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Files)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name="self-test-hub", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    weights = files["/files/latest_net_G.pth"]
    target = paths.models_dir / "cyclegan" / "tiny" / "latest_net_G.pth"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.with_name(target.name + ".part").write_bytes(weights[:1000])  # an earlier attempt
    plan = DownloadPlan(repo_id="studio/tiny-model", revision="main",
                        files=[HubFile("config.json", 14, "config.json")])
    old = set_environ({"HF_ENDPOINT": base, "HF_HUB_OFFLINE": "0"})  # only this loopback "Hub"
    try:
        [(folder, _), (result, _)] = _run_jobs(settings, paths, [
            HubDownloadRequest(plan),
            FileDownloadRequest(f"{base}/files/latest_net_G.pth", str(target),
                                hashlib.sha256(weights).hexdigest())])
    finally:
        restore_environ(old)
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)
    with contextlib.suppress(OSError):
        if (Path(folder) / "config.json").read_bytes() == files[
                "/studio/tiny-model/resolve/main/config.json"] \
                and Path(result.path).read_bytes() == weights:
            return "a Hub repository and a resumed file, over a loopback port"
    raise CheckFailed(f"the downloads did not arrive whole ({folder}, {result.path})")
