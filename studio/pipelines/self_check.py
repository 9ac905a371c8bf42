"""The install checks behind ``studio self-test`` that need no window: imports, shipped files, a
two-step image, one chat token and a training step. No Qt here.

Each check builds what it needs in a scratch folder — a tiny random-weight Stable Diffusion
pipeline (its CLIP tokenizer written from the BPE merges that ship in ``assets/``) and a tiny Llama
with a byte-level BPE tokenizer trained on the spot — and runs it through the same services the
window and the CLI use (:class:`~studio.pipelines.txt2img.Txt2ImgService`, the chat service, the
lesson registry), so a broken frozen bundle fails here the way it would fail for a user. Nothing
is downloaded: everything works with ``HF_HUB_OFFLINE=1`` and no network at all.
"""

from __future__ import annotations

import dataclasses
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from studio.config import Paths, Settings

#: Modules a working install imports (the window's, the engines', the lessons' data).
STACK_MODULES = (
    "numpy", "PIL.Image", "torch", "safetensors.torch", "tokenizers", "huggingface_hub",
    "transformers", "diffusers", "accelerate", "peft", "PySide6.QtCore", "PySide6.QtGui",
    "PySide6.QtWidgets", "PySide6.QtSvg", "pyqtgraph", "sklearn.datasets", "platformdirs",
    "markdown_it", "pygments", "tqdm",
)
#: Distributions whose metadata diffusers/transformers read at run time (importlib.metadata):
#: a frozen app that lost it fails on import with "No package metadata was found".
METADATA_DISTS = (
    "torch", "diffusers", "transformers", "tokenizers", "huggingface_hub", "safetensors",
    "accelerate", "peft", "tqdm", "regex", "requests", "filelock", "numpy", "packaging",
    "pyyaml",
)
#: Files the app reads from ASSETS_DIR.
ASSET_FILES = ("tokenizers/bpe_simple_vocab_16e6.txt.gz", "configs", "catalogs/cyclegan.json",
               "icons/studio.svg")

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
def check_imports() -> str:
    """Import the whole stack and read the package metadata the libraries check."""
    import importlib

    for name in STACK_MODULES:
        importlib.import_module(name)
    missing = []
    for dist in METADATA_DISTS:
        try:
            metadata.version(dist)
        except metadata.PackageNotFoundError:
            missing.append(dist)
    if missing:
        raise CheckFailed(f"package metadata missing for {', '.join(missing)}")
    import torch

    return f"torch {torch.__version__}, diffusers {metadata.version('diffusers')}, " \
           f"transformers {metadata.version('transformers')}"


def check_assets() -> str:
    """The files that ship with the app are where the app looks for them."""
    from studio import ASSETS_DIR

    missing = [name for name in ASSET_FILES if not (ASSETS_DIR / name).exists()]
    if missing:
        raise CheckFailed(f"missing in {ASSETS_DIR}: {', '.join(missing)}")
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
    pipe.save_pretrained(folder, safe_serialization=True)
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
def _run_job(kind: str, handler: Any, request: Any) -> tuple[Any, list[tuple[int, int]]]:
    """Run one job on a JobRunner worker, as the window does; (result, progress steps)."""
    from studio.jobs import JobRunner, JobState

    steps: list[tuple[int, int]] = []

    class Listener:
        def job_changed(self, job: Any) -> None:
            pass

        def job_progress(self, job: Any, step: int, total: int, preview: Any) -> None:
            steps.append((step, total))

        def job_partial(self, job: Any, result: Any) -> None:
            pass

    runner = JobRunner({kind: handler}, listener=Listener(), name=f"self-test-{kind}")
    try:
        job = runner.submit(kind, request, title=kind)
        if not runner.wait(job, timeout=JOB_TIMEOUT):
            runner.cancel(job)
            raise CheckFailed(f"the {kind} job did not finish in {JOB_TIMEOUT:.0f} s")
    finally:
        runner.shutdown(wait=True, timeout=30)
    if job.state is not JobState.DONE:
        raise CheckFailed(f"the {kind} job ended {job.state.value}: {job.error or job.message}")
    return job.result, steps


def check_generate(root: Path, device: str = "auto") -> str:
    """A two-step text-to-image job with a tiny model, saved as a PNG with its parameters."""
    from PIL import Image

    from studio.pipelines.requests import Txt2ImgRequest
    from studio.pipelines.txt2img import Txt2ImgService

    settings, paths = scratch_settings(root)
    settings = dataclasses.replace(settings, device=device)
    model = build_tiny_sd(paths.models_dir / "tiny-sd")
    service = Txt2ImgService(lambda: settings, lambda: paths)
    request = Txt2ImgRequest(model=str(model), prompt="a lighthouse at dawn",
                             steps=GENERATE_STEPS, cfg=5.0, width=IMAGE_SIDE, height=IMAGE_SIDE,
                             seed=42)
    try:
        results, steps = _run_job("txt2img", service.run, request)
    finally:
        service.cache.unload_all()
    if len(results or []) != 1:
        raise CheckFailed(f"expected 1 image, got {len(results or [])}")
    done = sorted({s for s, total in steps if total == GENERATE_STEPS})
    if done[-1:] != [GENERATE_STEPS]:
        raise CheckFailed(f"expected progress to reach step {GENERATE_STEPS}, saw {done}")
    with Image.open(results[0].path) as image:
        if image.size != (IMAGE_SIDE, IMAGE_SIDE) or "parameters" not in image.info:
            raise CheckFailed(f"the saved image is wrong: {image.size}, {sorted(image.info)}")
    return f"{GENERATE_STEPS} steps, {IMAGE_SIDE}×{IMAGE_SIDE} PNG"


def check_chat(root: Path, device: str = "auto") -> str:
    """One token from a tiny local chat model through the chat service."""
    from studio.pipelines.chat.service import ChatService
    from studio.pipelines.chat.types import ChatRequest

    settings, paths = scratch_settings(root)
    settings = dataclasses.replace(settings, device=device)
    model = build_tiny_llama(paths.models_dir / "tiny-llama")
    service = ChatService(lambda: settings, lambda: paths)
    request = ChatRequest(model=str(model), messages=[{"role": "user", "content": "Hello!"}],
                          temperature=0.0, max_new_tokens=1, seed=0)
    reply, _ = _run_job("chat", service.run, request)
    if reply is None or reply.completion_tokens != 1:
        raise CheckFailed(f"expected one token, got {getattr(reply, 'completion_tokens', None)}")
    return f"{reply.prompt_tokens} prompt tokens → 1 token"


def lesson_step(key: str) -> float:
    """The loss of the first training step of lesson ``key`` (default settings, seed 0)."""
    import math

    from studio.pipelines.train.registry import lesson_class

    cls = lesson_class(key)
    trainer = cls(cls.validate_config(), seed=0)
    loss = float(trainer.step().get("loss", float("nan")))
    if not math.isfinite(loss):
        raise CheckFailed(f"{key}: the first step's loss is {loss}")
    return loss


def _lesson_step_in_child(key: str, answers: Any) -> None:
    try:
        answers.put(("ok", lesson_step(key)))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        answers.put(("error", f"{type(exc).__name__}: {exc}"))


def check_train(lessons: tuple[str, ...] | None = None, spawned: str = "gan-2d") -> str:
    """One training step of each lesson in the registry (their data ships with the app), and
    one in a spawned process, as the Train workspace runs lessons (a frozen app must hand the
    child to multiprocessing.freeze_support instead of starting a second app)."""
    import multiprocessing
    import queue

    from studio.pipelines.train.registry import lesson_keys

    keys = list(lessons or lesson_keys())
    for key in keys:
        lesson_step(key)
    faces = check_faces()
    if not spawned:
        return f"{len(keys)} lessons, one step each; {faces}"
    context = multiprocessing.get_context("spawn")
    answers = context.Queue()
    child = context.Process(target=_lesson_step_in_child, args=(spawned, answers), daemon=True)
    child.start()
    try:
        status, value = answers.get(timeout=JOB_TIMEOUT)
    except queue.Empty:
        raise CheckFailed(f"the spawned {spawned} step gave no answer "
                          f"(exit code {child.exitcode})") from None
    finally:
        child.join(timeout=30)
        if child.is_alive():
            child.kill()
    if status != "ok":
        raise CheckFailed(f"the spawned {spawned} step failed: {value}")
    return f"{len(keys)} lessons, one step each; {spawned} in a spawned process; {faces}"


def check_faces() -> str:
    """The faces data set loads where it is available, and an installer ships it (a frozen app
    without it fails). Elsewhere it is optional (scikit-image): said, not failed."""
    from studio.pipelines.train.image_sets import faces_available, load_image_set

    if not faces_available():
        if getattr(sys, "frozen", False):
            raise CheckFailed("the faces data set (datasets/lfw_subset.npy) is not in the app")
        return "faces data set not installed (optional: scikit-image)"
    faces = load_image_set("faces")
    return f"faces data set ({len(faces.x_train)} training images)"
