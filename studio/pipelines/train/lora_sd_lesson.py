"""The ``lora-sd`` lesson: the Train → LoRA page, a LoRA for Stable Diffusion 1.x, SDXL, FLUX.1,
SD 3.5 or Qwen-Image on your images.

The training itself is :class:`studio.pipelines.train.lora_sd.LoraTrainer` (#18's core: cached
latents and prompts, aspect buckets, PEFT on the UNet's attention, kohya's file format), or for
FLUX.1, SD 3.5 and Qwen-Image :class:`studio.pipelines.train.lora_flow.FlowLoraTrainer` (flow matching on the
transformer, diffusers' file layout; the knobs that do not apply are greyed, with the reason); this
lesson drives it one step at a time from the Train session (a child process in the window), so
the page can pause, step, change the learning rate or the sample prompts mid-run, and resume from
a run's checkpoint exactly (each step's randomness comes from ``(seed, step)``).

Images: a folder of yours (``.txt`` sidecars as kohya reads them, a trigger word put first), or,
when none is chosen, ten shapes drawn in red ink that ship with Studio. Base model: an SD 1.x,
SDXL, FLUX.1, SD 3.5 or Qwen-Image model from the library by its name (or path), or, when none is named, a tiny SD 1.x pipeline
built with the real diffusers classes and random weights (so the page, the CLI and the self-test
work without any download; its samples are noise). Every ``sample_every`` steps the sample prompts
are drawn at a fixed seed and kept as a row; every ``save_every`` steps and at ``steps`` the LoRA
is written into the library's ``loras`` folder (``<name>.safetensors`` with ``ss_`` metadata and
``<name>.preview.png``), where Generate lists it. No Qt here.
"""

from __future__ import annotations

import re
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch

from studio.core.wording import count_of
from studio.pipelines.train import torch_lessons as tl
from studio.pipelines.train.base import (
    InvalidParameter,
    LessonInfo,
    ParamSpec,
    Trainer,
    TrainingFinished,
    check_loss,
)
from studio.pipelines.train.lora_config import LoraTrainConfig, device_memory
from studio.pipelines.train.lora_data import (
    Dataset,
    Example,
    bucket_for,
    buckets,
    caption_with_trigger,
    read_caption,
    scan_folder,
)
from studio.pipelines.train.lora_flow import FLOW_FAMILIES, NOT_APPLICABLE, trainer_for
from studio.pipelines.train.lora_kohya import lora_file_state, write_lora_file
from studio.pipelines.train.lora_sd import LoraTrainer
from studio.pipelines.train.registry import lesson_text

DATASETS = ("shapes", "folder")
DATASET_NAMES = {"shapes": "Red shapes (ships with Studio)", "folder": "Your folder"}
CAPTIONS = ("sidecars", "blip")
CAPTION_NAMES = {"sidecars": "The .txt files",
                 "blip": "Fill missing ones (Florence-2 or BLIP)"}
RESOLUTIONS = ("auto", "128", "256", "384", "512", "640", "768", "1024")
RESOLUTION_NAMES = {"auto": "Model's own (SD 1.x 512, SDXL, FLUX.1, SD 3.5 1024; tiny 64)",
                    "128": "128 px (a quick try)",
                    **{r: f"{r} px" for r in RESOLUTIONS[2:]}}
PRECISIONS = ("no", "bf16", "fp16")
PRECISION_NAMES = {"no": "fp32 (none)", "bf16": "bf16", "fp16": "fp16 (CUDA GPUs)"}
OPTIMIZER_NAMES = {"adamw": "AdamW", "adamw8bit": "8-bit AdamW (bitsandbytes)"}
TINY_NAME = "Studio's tiny SD 1.x (random weights)"
TINY_SIDE = 64
MODEL_SIDE = {"sd1": 512, "sdxl": 1024, "flux": 1024, "sd3": 1024, "qwen-image": 1024}
SHAPE_NAMES = ("circle", "square", "triangle", "cross", "ring")
SMOOTH_OVER = 20  # steps the smoothed loss averages
THUMB_SIDE = 96
MAX_SHOWN = 200  # images listed on the page (all of them train)
PROMPT_SPLIT = "|"

EXPLANATION = """\
**What you see.** Left, your images with their captions (the `.txt` file beside each image, as
kohya reads it; select one to edit it, Save writes the file). Every *Sample every* steps the
sample prompts are drawn at the same seed and added as a row, so you can see the style arrive;
drag the slider to look back. Above them: the smoothed loss, the learning rate, steps per second
and the time left. LoRA freezes the model and trains small rank-*r* matrices beside its attention
layers; the result is a file of a few MB in kohya's format that Generate, A1111, Forge and
ComfyUI load.

**What to try.** Choose *Your folder* with 10–50 pictures of one style or character and a trigger
word nobody uses ("zxqstyle"); pick an SD 1.x, SDXL, FLUX.1, SD 3.5 or Qwen-Image base model
from your library; Play. Change
the sample prompts while it trains. *Keep LoRA now* stops and writes the LoRA as it is; Pause keeps
a checkpoint that the Runs tab resumes exactly. Then in Generate pick the LoRA (it is listed by its
name) and use the trigger word in the prompt.

**What is normal.** The loss of diffusion training is noisy (each step draws a new noise
level), so watch the smoothed curve: it falls a little and flattens; the samples tell more than
the loss. With Studio's tiny random model (no base model named) a step takes a fraction of a
second, the smoothed loss drifts down from about 1 within a minute or two, and the samples are
coloured noise — it shows the machinery, not a style. A real SD 1.x model learns a style in
500–2000 steps at 512 px: hours on a CPU, minutes on a GPU. SDXL trains at 1024 px and wants a
GPU with 12 GB or more. FLUX.1, SD 3.5 and Qwen-Image train their transformer only (their T5 or
Qwen2.5-VL text encoder is too big to train beside it, so those knobs are greyed); at 1024 px
with bf16 and checkpointing FLUX.1 wants about 33 GB and SD 3.5 Large about 24 GB (the estimate above the images says what
your run needs). Their LoRA is saved in diffusers' layout, which diffusers, ComfyUI and Forge
load.
"""


def _settings_paths() -> tuple[Any, Any]:
    from studio.core.config import default_paths, load_settings

    settings = load_settings().settings
    return settings, settings.resolved_paths(default_paths())


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")[:60]


def split_prompts(text: str) -> list[str]:
    return [p.strip() for p in str(text).split(PROMPT_SPLIT) if p.strip()]


def shapes_dataset(trigger: str, resolution: int, count: int = 10) -> Dataset:
    """Shapes in red ink on cream paper (drawn, so they ship with Studio), captioned by shape."""
    from PIL import Image

    from studio.pipelines.train.image_data import _shape

    rng = np.random.default_rng(0)
    ink, paper = np.array([200.0, 30.0, 40.0]), np.array([245.0, 236.0, 215.0])
    choices = buckets(resolution)
    examples = []
    for i in range(count):
        name = SHAPE_NAMES[i % len(SHAPE_NAMES)]
        alpha = _shape(name, resolution, rng)[..., None]
        rgb = (paper * (1 - alpha) + ink * alpha).astype(np.uint8)
        examples.append(Example(Path(f"{name}-{i}.png"), caption_with_trigger(f"a red {name}",
                                                                              trigger),
                                bucket_for((resolution, resolution), choices),
                                Image.fromarray(rgb)))
    return Dataset(examples, {}, [])


def tiny_pipeline(seed: int) -> Any:
    """A tiny StableDiffusionPipeline (SD 1.x layout, real classes, random weights from
    ``seed``) with the real CLIP tokenizer built from the merges that ship with Studio."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from studio.library.clip_tokenizer import write_clip_tokenizer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64), layers_per_block=1, sample_size=TINY_SIDE // 8,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
            attention_head_dim=(2, 4), norm_num_groups=32)
        vae = AutoencoderKL(
            block_out_channels=(32, 32, 32, 32), down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, layers_per_block=1,
            norm_num_groups=32, sample_size=TINY_SIDE)
        text = CLIPTextModel(CLIPTextConfig(
            hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2,
            vocab_size=49408, max_position_embeddings=77, hidden_act="quick_gelu",
            bos_token_id=49406, eos_token_id=49407, pad_token_id=1))
    with tempfile.TemporaryDirectory(prefix="studio-clip-") as folder:
        tokenizer = CLIPTokenizer.from_pretrained(write_clip_tokenizer(Path(folder)))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    return StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text, tokenizer=tokenizer,
                                   scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)


def _thumb(example: Example) -> np.ndarray:
    from PIL import Image, ImageOps

    if example.image is not None:
        img = example.image.convert("RGB")
    else:
        with Image.open(example.path) as opened:
            img = ImageOps.exif_transpose(opened).convert("RGB")
    img.thumbnail((THUMB_SIDE, THUMB_SIDE))
    return np.asarray(img, dtype=np.uint8).copy()


class LoraSDLesson(Trainer):
    """A LoRA for an SD 1.x, SDXL (kohya format), FLUX.1, SD 3.5 or Qwen-Image model (diffusers'
    format), trained a step at a time with samples."""

    info = LessonInfo(**lesson_text("lora-sd"), explanation=EXPLANATION, log_scale=False,
                      series=("loss", "smooth_loss"),
                      series_labels={"loss": "Loss (each step)",
                                     "smooth_loss": f"Loss (mean of {SMOOTH_OVER})"})
    params = (
        ParamSpec("dataset", "shapes", "choice", choices=DATASETS, choice_labels=DATASET_NAMES,
                  label="Images", help="What the LoRA learns: your folder, or Studio's shapes."),
        ParamSpec("data_folder", "", "folder", label="Image folder",
                  help="A folder of images (any sizes) with .txt captions beside them."),
        ParamSpec("captions", "sidecars", "choice", choices=CAPTIONS, choice_labels=CAPTION_NAMES,
                  label="Captions",
                  help="BLIP (from the Hugging Face cache) writes a .txt for each image that has "
                       "none, before training; captions you wrote stay."),
        ParamSpec("trigger", "", "text", maximum=80, label="Trigger word",
                  help="Put before every caption; use it in Generate's prompt to call the "
                       "LoRA up."),
        ParamSpec("model", "", "text", maximum=1000, label="Base model",
                  help="An SD 1.x, SDXL, FLUX.1, SD 3.5 or Qwen-Image model's name as "
                       "Generate lists it (or its path); empty: Studio's tiny random model."),
        ParamSpec("name", "", "text", maximum=60, label="LoRA name",
                  help="The file name in the library's loras folder; empty: the folder's "
                       "name."),
        ParamSpec("rank", 8, "int", minimum=1, maximum=128, label="Rank (network dim)",
                  help="Size of the LoRA matrices: more rank, a bigger file that can hold "
                       "more."),
        ParamSpec("alpha", 8.0, "float", minimum=0.01, maximum=1024, label="Alpha",
                  help="The update is scaled by alpha / rank (kohya's network alpha)."),
        tl.lr_spec(1e-4, "AdamW's step size; 1e-4 is usual for SD 1.x and SDXL LoRAs, the "
                         "tiny model likes 1e-3."),
        ParamSpec("train_text_encoder", False, "bool", label="Train text encoder",
                  help="LoRA layers in the text encoder(s) too: captions' words learn the "
                       "style as well (a bigger file; saved as kohya's lora_te keys). SD 1.x "
                       "and SDXL only."),
        ParamSpec("text_encoder_lr", 5e-5, "float", minimum=1e-7, maximum=10.0, live=True,
                  log_scale=True, label="Text-encoder LR",
                  help="The text encoder's own learning rate (kohya's text_encoder_lr); "
                       "usually half the UNet's or less."),
        ParamSpec("mixed_precision", "no", "choice", choices=PRECISIONS,
                  choice_labels=PRECISION_NAMES, label="Mixed precision",
                  help="Frozen weights and most maths in 16 bits: about half the memory. fp16 "
                       "needs a CUDA GPU; bf16 runs on a CPU where it supports it."),
        ParamSpec("gradient_checkpointing", False, "bool", label="Gradient checkpointing",
                  help="Recompute activations in the backward pass: far less memory, steps "
                       "about a third slower."),
        ParamSpec("cache_latents", True, "bool", label="Cache latents",
                  help="Encode each image with the VAE once (the VAE then leaves the GPU) "
                       "instead of at every step; the same loss."),
        ParamSpec("cache_text", True, "bool", label="Cache text-encoder outputs",
                  help="Encode each caption once (the text encoders leave the GPU); not "
                       "possible while the text encoder trains."),
        ParamSpec("optimizer", "adamw", "choice", choices=("adamw", "adamw8bit"),
                  choice_labels=OPTIMIZER_NAMES, label="Optimizer",
                  help="8-bit AdamW keeps its moments in 8 bits: less memory (GPU or CPU)."),
        ParamSpec("sdpa", True, "bool", label="SDPA attention",
                  help="PyTorch's fused scaled-dot-product attention in the UNet (less memory, "
                       "faster); off: the plain attention."),
        ParamSpec("steps", 500, "int", minimum=1, maximum=1_000_000, live=True,
                  label="Steps", help="Training stops here and writes the LoRA."),
        ParamSpec("resolution", "auto", "choice", choices=RESOLUTIONS,
                  choice_labels=RESOLUTION_NAMES, label="Resolution",
                  help="Images are cut to buckets of about this many pixels squared, keeping "
                       "their aspect."),
        ParamSpec("repeats", 1, "int", minimum=1, maximum=100, label="Repeats",
                  help="Each image counts this many times (kohya's folder repeats)."),
        ParamSpec("sample_prompts", "", "text", maximum=2000, live=True,
                  label="Sample prompts",
                  help="Prompts separated by | ; empty: the first two captions."),
        ParamSpec("sample_seed", 42, "int", minimum=0, maximum=2**31 - 1, live=True,
                  label="Sample seed", help="The samples' fixed seed, so rows compare."),
        ParamSpec("sample_every", 25, "int", minimum=0, maximum=1_000_000, live=True,
                  label="Sample every", help="Steps between rows of samples (0: none)."),
        ParamSpec("sample_steps", 20, "int", minimum=1, maximum=150, live=True,
                  label="Sample steps", help="Denoising steps of each sample image."),
        ParamSpec("save_every", 0, "int", minimum=0, maximum=1_000_000, live=True,
                  label="Save every", help="Write the LoRA every N steps as well (0: only at "
                                           "the end)."),
    )

    @classmethod
    def unavailable_choices(cls) -> dict[str, dict[str, str]]:
        from studio.core.devices import resolve_device
        from studio.pipelines.train.captions import find_captioner, needs_text
        from studio.pipelines.train.lora_config import device_problems

        out = device_problems(resolve_device(_settings_paths()[0].device))
        if find_captioner() is None:
            out["captions"] = {"blip": needs_text()}
        return out

    @classmethod
    def validate_config(cls, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        config = super().validate_config(overrides)
        if config["captions"] == "blip":
            reason = cls.unavailable_choices().get("captions", {}).get("blip")
            if reason:
                raise InvalidParameter(reason)
        if config["dataset"] == "folder":
            folder = str(config["data_folder"]).strip()
            if not folder:
                raise InvalidParameter("Choose your folder of images first (Image folder), or "
                                       "pick Studio's shapes.")
            if not Path(folder).expanduser().is_dir():
                raise InvalidParameter(f"The image folder {folder} does not exist or is not a "
                                       "folder.")
        name = str(config["name"]).strip()
        if name and _slug(name) != name:
            raise InvalidParameter(f"'{name}' cannot be a LoRA file name; use letters, digits, "
                                   "'-' or '_'.")
        return config

    def __init__(self, config: dict[str, Any] | None = None, seed: int = 0,
                 step_count: int = 0) -> None:
        super().__init__(config=self.validate_config(config), seed=seed, step_count=step_count)
        cfg = self.config
        self.settings, self.paths = _settings_paths()
        model = str(cfg["model"]).strip()
        folder = (Path(str(cfg["data_folder"])).expanduser() if cfg["dataset"] == "folder"
                  else None)
        name = str(cfg["name"]).strip() or (_slug(folder.name) if folder else "") or "red-shapes"
        device = "cpu"
        if model:
            from studio.core.devices import resolve_device

            device = resolve_device(self.settings.device)
        train_config = LoraTrainConfig(
            data_dir=folder or Path("shapes"), base=model or TINY_NAME, name=name,
            trigger=str(cfg["trigger"]), rank=int(cfg["rank"]), alpha=float(cfg["alpha"]),
            lr=float(cfg["lr"]), steps=int(cfg["steps"]), resolution=TINY_SIDE,
            repeats=int(cfg["repeats"]), seed=seed, sample_steps=int(cfg["sample_steps"]),
            sample_seed=int(cfg["sample_seed"]),
            train_text_encoder=bool(cfg["train_text_encoder"]),
            text_encoder_lr=float(cfg["text_encoder_lr"]),
            mixed_precision=str(cfg["mixed_precision"]),
            gradient_checkpointing=bool(cfg["gradient_checkpointing"]),
            cache_latents=bool(cfg["cache_latents"]), cache_text=bool(cfg["cache_text"]),
            optimizer=str(cfg["optimizer"]), sdpa=bool(cfg["sdpa"]))
        self.core = (trainer_for(train_config, self.settings, self.paths, device) if model
                     else LoraTrainer(train_config, self.settings, self.paths, device))
        if model:  # the model first: its family gives the resolution ("auto")
            pipe, base_name, family = self.core.load_base()
        else:
            pipe, base_name, family = tiny_pipeline(seed), TINY_NAME, "sd1"
        side = (int(cfg["resolution"]) if cfg["resolution"] != "auto"
                else MODEL_SIDE[family] if model else TINY_SIDE)
        self.core.config.resolution = side
        if folder is not None and cfg["captions"] == "blip":
            from studio.pipelines.train.captions import caption_missing

            caption_missing(ex.path for ex in scan_folder(folder, "", side).examples)
        dataset = (scan_folder(folder, cfg["trigger"], side) if folder is not None
                   else shapes_dataset(cfg["trigger"], side))
        self.core.attach(pipe, base_name, family, dataset)
        self.core.samples_dir = (self.core.state_dir
                                 / f"samples-{time.strftime('%Y%m%d-%H%M%S')}-"
                                   f"{uuid.uuid4().hex[:6]}")
        self.dataset = dataset
        self.estimate = self.core.estimate(device_memory(device)).sentence
        self._set_prompts()
        self.saved = ""
        self._rate = 0.0
        self._shown = [{"path": "" if ex.image is not None else str(ex.path),
                        "name": ex.path.name,
                        "caption": (read_caption(ex.path) or "") if ex.image is None
                        else ex.caption,
                        "thumb": _thumb(ex)} for ex in dataset.examples[:MAX_SHOWN]]

    # -- knobs ---------------------------------------------------------------------------------
    def _set_prompts(self) -> None:
        prompts = split_prompts(self.config["sample_prompts"])
        if not prompts:
            seen: list[str] = []
            for ex in self.dataset.examples:
                if ex.caption and ex.caption not in seen:
                    seen.append(ex.caption)
            prompts = seen[:2] or [self.config["trigger"].strip() or "a picture"]
        self.core.config.sample_prompts = prompts

    def on_param_changed(self, name: str) -> None:
        cfg, core = self.config, self.core.config
        if name in ("lr", "text_encoder_lr"):  # group 0 is the UNet's, the others the encoders'
            groups = self.core.optimizer.param_groups
            for group in groups[:1] if name == "lr" else groups[1:]:
                group["lr"] = float(cfg[name])
        elif name == "sample_prompts":
            self._set_prompts()
        elif name in ("sample_seed", "sample_steps", "steps"):
            setattr(core, name, int(cfg[name]))
            if name == "steps" and self.step_count >= core.steps:  # "Keep LoRA now"
                self._finish()

    # -- training ------------------------------------------------------------------------------
    def step(self, part: str | None = None) -> dict[str, float]:
        core = self.core
        if self.step_count >= core.config.steps:
            raise TrainingFinished(self.finished_text())
        began = time.monotonic()
        loss = core.train_step()
        self.step_count = core.step
        check_loss(loss, self.step_count)
        took = time.monotonic() - began
        rate = 1.0 / took if took > 0 else 0.0
        self._rate = rate if self._rate == 0 else 0.9 * self._rate + 0.1 * rate
        every = int(self.config["sample_every"])
        if every and self.step_count % every == 0:
            core.sample()
        save = int(self.config["save_every"])
        if self.step_count >= core.config.steps:
            self._finish()
        elif save and self.step_count % save == 0:
            self.saved = str(core.save_lora())
        recent = core.losses[-SMOOTH_OVER:]
        return {"step": self.step_count, "loss": loss,
                "smooth_loss": float(sum(recent) / len(recent)), "lr": self.lr}

    def _finish(self) -> None:
        """Samples of the final weights (unless this step drew them) and the LoRA file."""
        core = self.core
        if core.config.sample_prompts and (not core.samples or core.samples[-1][0] != core.step):
            core.sample()
        self.saved = str(core.save_lora())

    def out_of_memory(self) -> str:
        """Out of memory mid-run: what was kept, and the settings that would fit (the
        estimate's savings, from where the run stood)."""
        from studio.pipelines.train.lora_estimate import after_out_of_memory

        core = getattr(self, "core", None)
        if core is None or not getattr(core, "counts", None):
            return super().out_of_memory()
        kept = (f"{Path(self.saved).name} (saved before) is kept" if self.saved else
                "nothing was saved yet (Save every keeps a file as it goes)")
        return (f"The LoRA run ran out of memory at step {self.step_count}; {kept}. "
                f"{after_out_of_memory(core)} Change that, then Reset and Play.")

    def finished_text(self) -> str:
        return (f"Finished {count_of(self.step_count, 'step')}: {Path(self.saved).name} is in "
                "Models and in Generate's LoRA list. Raise Steps and Play to train on.")

    @property
    def lr(self) -> float:
        return float(self.core.optimizer.param_groups[0]["lr"])

    def snapshot(self) -> dict[str, Any]:
        core = self.core
        recent = core.losses[-SMOOTH_OVER:]
        left = max(0, core.config.steps - self.step_count)
        return {
            "step": self.step_count, "steps": core.config.steps,
            "loss": core.losses[-1] if core.losses else float("nan"),
            "smooth_loss": float(sum(recent) / len(recent)) if recent else float("nan"),
            "lr": self.lr, "steps_per_s": self._rate,
            "eta_s": left / self._rate if self._rate > 0 else float("nan"),
            "model": core.base_name, "name": core.config.name, "device": core.device,
            "resolution": core.config.resolution,
            "data_note": (f"{count_of(len(self.dataset.examples), 'image')} × "
                          f"{core.config.repeats} repeats, buckets of about "
                          f"{core.config.resolution}² px"
                          + (f", '{core.config.trigger.strip()}' put before every caption"
                             if core.config.trigger.strip() else "")),
            "warnings": list(self.dataset.warnings), "estimate": self.estimate,
            "images": self._shown, "prompts": list(core.config.sample_prompts),
            "family": core.family,
            "inapplicable": dict(NOT_APPLICABLE) if core.family in FLOW_FAMILIES else {},
            "samples": [(step, [str(p) for p in paths]) for step, paths in core.samples],
            "saved": self.saved,
        }

    # -- state and export ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        core = self.core
        return {"peft": core.peft_state(), "optimizer": tl.optimizer_state(core.optimizer),
                "step_count": self.step_count, "losses": [float(v) for v in core.losses],
                "samples": [[step, [str(p) for p in paths]] for step, paths in core.samples],
                "saved": self.saved, "metadata": core.metadata(),
                "alpha": float(core.config.alpha), "name": core.config.name,
                "family": core.family, "unet_layers": core.unet_layers,
                "rank": int(core.config.rank)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        core = self.core
        core.load_peft_state(state["peft"])
        core.optimizer.load_state_dict(state["optimizer"])
        self.step_count = core.step = int(state["step_count"])
        core.losses = [float(v) for v in state["losses"]]
        core.samples = [(int(step), [Path(p) for p in paths]) for step, paths in state["samples"]]
        self.saved = str(state.get("saved", ""))

    def export_model(self, folder: Path) -> list[Path]:
        return write_lora_export(Path(folder), self.state_dict())


def write_lora_export(folder: Path, state: dict[str, Any]) -> list[Path]:
    """A run's LoRA (its checkpoint's state) as ``<folder>/<folder name>.safetensors`` in kohya's
    format (FLUX.1, SD 3.5: diffusers') with its ``ss_`` metadata, and the last sample as its
    ``.preview.png``."""
    folder = Path(folder)
    name = folder.name.lstrip(".").removesuffix(".exporting")
    metadata = {**state["metadata"], "ss_output_name": name, "modelspec.title": name}
    previews = [Path(p) for _, paths in state["samples"][-1:] for p in paths[:1]]
    target = write_lora_file(folder / f"{name}.safetensors",
                             lora_file_state(state["peft"], float(state["alpha"]),
                                             state.get("family", "sd1"), _rank(state),
                                             state.get("unet_layers")), metadata,
                             previews[0] if previews else None)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.stem.startswith(target.stem))



def _rank(state: dict[str, Any]) -> int:
    """The run's LoRA rank (older checkpoints did not keep it: a lora_A's rows)."""
    if "rank" in state:
        return int(state["rank"])
    return next(int(v.shape[0]) for k, v in state["peft"].items() if ".lora_A." in k)
