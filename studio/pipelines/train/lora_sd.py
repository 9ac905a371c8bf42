"""Train a LoRA for a Stable Diffusion 1.x or SDXL model on the user's own images (issue #18).

The data is a folder of images with kohya-style ``.txt`` sidecar captions and an optional
trigger word, in aspect-ratio buckets (:mod:`.lora_data`); their VAE latents and prompt
embeddings are computed once (cached), so a step is one UNet forward/backward. What a run is set
to, and what the device allows, is :mod:`.lora_config`.

The LoRA is a PEFT ``LoraConfig`` adapter on the UNet's attention projections (and, when asked,
the text encoders'), trained with the noise-prediction MSE under the model's own scheduler, as
diffusers' ``train_text_to_image_lora`` / ``train_text_to_image_lora_sdxl`` examples do;
``accelerate`` runs the loop (mixed precision, gradient checkpointing).

Every random choice of step ``n`` (which image, noise, timestep) comes from a generator seeded by
``(seed, n)``, so resuming from a checkpoint gives exactly the weights of an uninterrupted run.
The result is written in kohya's format (:mod:`.lora_kohya`, with ``ss_`` metadata) into the
library's ``loras`` folder, with a ``.preview.png`` beside it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.core.config import Paths, Settings
from studio.core.jobs import UserFacingError
from studio.pipelines.train.lora_config import LoraTrainConfig, device_problems
from studio.pipelines.train.lora_data import Dataset, Example, load_pixels, scan_folder
from studio.pipelines.train.lora_kohya import (
    TEXT_ENCODERS,
    kohya_from_peft,
    split_parts,
    write_lora_file,
)

log = logging.getLogger(__name__)

UNET_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
#: family -> kohya's ``ss_base_model_version``
SUPPORTED_FAMILIES = {"sd1": "sd_v1", "sdxl": "sdxl_base_v1-0"}
ARCHITECTURES = {"sd1": "stable-diffusion-v1/lora", "sdxl": "stable-diffusion-xl-v1-base/lora"}
FAMILY_NAMES = {"sd1": "Stable Diffusion 1.x", "sdxl": "SDXL"}


# -- the trainer --------------------------------------------------------------------------------
@dataclass
class StepReport:
    step: int
    total: int
    loss: float
    lr: float
    elapsed: float


def supported_text() -> str:
    """"Stable Diffusion 1.x and SDXL": the families LoRA training supports, in words."""
    names = list(FAMILY_NAMES.values())
    return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]


class LoraTrainer:
    """One training run: ``prepare()`` loads and caches, ``run()`` trains to ``config.steps``.

    SD 1.x and SDXL alike: for SDXL the prompt is both text encoders' penultimate hidden states
    side by side, the pooled embedding of the second, and the ``add_time_ids`` of each picture
    (original size, crop corner, target size), as diffusers' ``train_text_to_image_lora_sdxl``
    computes them. With ``train_text_encoder`` the text encoders get LoRA layers too (their own
    learning rate), saved under kohya's ``lora_te_`` (SD 1.x) or ``lora_te1_``/``lora_te2_``.
    """

    def __init__(self, config: LoraTrainConfig, settings: Settings, paths: Paths,
                 device: str = "cpu") -> None:
        config.validate()
        problems = device_problems(device)
        for option in ("mixed_precision", "optimizer"):
            why = problems.get(option, {}).get(getattr(config, option))
            if why:
                raise UserFacingError(why)
        self.config, self.settings, self.paths, self.device = config, settings, paths, device
        self.step = 0
        self.losses: list[float] = []
        self.samples: list[tuple[int, list[Path]]] = []
        self.dataset: Dataset | None = None
        self.samples_dir = self.state_dir / "samples"
        self.models: dict[str, Any] = {}  # "unet", "text_encoder"… → the trained model

    # paths
    @property
    def out_dir(self) -> Path:
        return Path(self.config.out_dir or self.paths.models_dir / "loras")

    @property
    def lora_file(self) -> Path:
        return self.out_dir / f"{self.config.name}.safetensors"

    @property
    def state_dir(self) -> Path:
        return self.paths.data_dir / "lora-training" / self.config.name

    # setup
    def prepare(self) -> None:
        """Read the folder, load the library model ``config.base``, cache, add the adapter."""
        dataset = scan_folder(self.config.data_dir, self.config.trigger, self.config.resolution)
        self.attach(*self.load_base(), dataset)

    def load_base(self) -> tuple[Any, str, str]:
        """The library model ``config.base`` loaded: (pipeline, its name, its family); a model
        of a family LoRA training does not support is refused with the ones it does."""
        import torch

        from studio.library.resolve import resolve_named
        from studio.pipelines.diffusion.loading import load_txt2img_pipeline

        # a folder, a file, a cached repo id or a name as Generate and `studio models` list it
        entry = resolve_named(self.config.base, "image", self.settings, self.paths,
                              command="LoRA training").entry
        if entry.family not in SUPPORTED_FAMILIES:
            raise UserFacingError(
                f"'{entry.name}' is an {entry.family} model; LoRA training supports "
                f"{supported_text()} models for now. Pick one of those.")  # plural-ok
        self.entry = entry
        pipe = load_txt2img_pipeline(entry, self.device, torch.float32, self.paths)
        return pipe, entry.name, entry.family

    def attach(self, pipe: Any, base_name: str, family: str, dataset: Dataset) -> None:
        """Train on ``pipe`` (an SD 1.x or SDXL pipeline already loaded, called ``base_name``)
        and ``dataset``: cache its latents and prompts and add the LoRA adapters."""
        import torch
        from peft import LoraConfig, inject_adapter_in_model

        from studio.pipelines.train.torch_lessons import new_accelerator

        cfg = self.config
        self.dataset, self.base_name, self.family = dataset, base_name, family
        self.pipe = pipe
        self.accelerator = new_accelerator(mixed_precision=cfg.mixed_precision,
                                           cpu=self.device == "cpu")
        self.encoders = {attr: getattr(pipe, attr) for attr, _ in TEXT_ENCODERS[family]}
        self.tokenizers = [pipe.tokenizer] + ([pipe.tokenizer_2] if family == "sdxl" else [])
        for part in (pipe.vae, pipe.unet, *self.encoders.values()):
            part.requires_grad_(False)
        self._cache(pipe)
        self.counts = model_counts(pipe, family)
        unet = pipe.unet
        if not cfg.sdpa:
            from diffusers.models.attention_processor import AttnProcessor

            unet.set_attn_processor(AttnProcessor())
        if cfg.mixed_precision != "no":  # frozen weights in half precision, as diffusers' scripts
            dtype = torch.bfloat16 if cfg.mixed_precision == "bf16" else torch.float16
            for part in (unet, *self.encoders.values()):
                part.to(dtype=dtype)
        self._offload()
        with torch.random.fork_rng(devices=[]):  # the LoRA's first weights follow the seed
            torch.manual_seed(cfg.seed)
            # kohya allows a fractional alpha (0.5…); PEFT's scaling alpha/r takes it as is.
            unet.add_adapter(LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha,  # type: ignore[arg-type]
                                        init_lora_weights="gaussian",
                                        target_modules=UNET_TARGETS))
            if cfg.train_text_encoder:  # PEFT's own injection (transformers' wants peft 0.22)
                for encoder in self.encoders.values():
                    inject_adapter_in_model(LoraConfig(
                        r=cfg.rank, lora_alpha=cfg.alpha,  # type: ignore[arg-type]
                        init_lora_weights="gaussian", target_modules=TEXT_TARGETS), encoder)
        models = {"unet": unet, **(self.encoders if cfg.train_text_encoder else {})}
        if cfg.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
            for key in models:
                if key != "unet":  # transformers 5 renamed it; 4.x has only the old name
                    encoder = models[key]
                    getattr(encoder, "activation_checkpointing_enable",
                            encoder.gradient_checkpointing_enable)()
        groups: list[dict[str, Any]] = []
        self.params = []
        for key, model in models.items():
            params = [p for p in model.parameters() if p.requires_grad]
            for p in params:
                p.data = p.data.float()
            groups.append({"params": params, "lr": cfg.lr if key == "unet" else self.te_lr})
            self.params += params
        optimizer: torch.optim.Optimizer
        if cfg.optimizer == "adamw8bit":
            import bitsandbytes as bnb

            optimizer = bnb.optim.AdamW8bit(groups, lr=cfg.lr)
        else:
            optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
        *prepared, self.optimizer = self.accelerator.prepare(*models.values(), optimizer)
        self.models = dict(zip(models, prepared, strict=True))
        self.unet = self.models["unet"]
        self.noise_scheduler = _training_scheduler(pipe)
        if hasattr(pipe, "set_progress_bar_config"):
            pipe.set_progress_bar_config(disable=True)

    @property
    def te_lr(self) -> float:
        lr = self.config.text_encoder_lr
        return self.config.lr if lr is None else lr

    def _tokens(self, caption: str) -> list[Any]:
        return [tok(caption, padding="max_length", truncation=True,
                    max_length=tok.model_max_length, return_tensors="pt").input_ids
                for tok in self.tokenizers]

    def _encode_text(self, ids: list[Any]) -> tuple[Any, Any]:
        """(prompt embeddings, pooled embedding or None) of a batch of token ids: SD 1.x the
        last hidden state; SDXL both encoders' penultimate states side by side and the second's
        pooled projection (diffusers' SDXL training script and pipeline alike)."""
        import torch

        encoders = [self.models.get(attr, model) for attr, model in self.encoders.items()]
        if self.family != "sdxl":
            return encoders[0](ids[0].to(self.device))[0], None
        hidden, pooled = [], None
        for encoder, tokens in zip(encoders, ids, strict=True):
            out = encoder(tokens.to(self.device), output_hidden_states=True)
            pooled = out[0]
            hidden.append(out.hidden_states[-2])
        return torch.cat(hidden, dim=-1), pooled

    def _encode_image(self, example: Example) -> Any:
        pixels = load_pixels(example).unsqueeze(0).to(self.device)
        vae = self.pipe.vae
        return (vae.encode(pixels).latent_dist.mean * vae.config.scaling_factor)[0]

    def _cache(self, pipe) -> None:
        import torch

        assert self.dataset is not None
        examples = self.dataset.examples
        self.ids = [self._tokens(ex.caption) for ex in examples]
        self.time_ids = [torch.tensor(ex.time_ids(), dtype=torch.float32) for ex in examples]
        self.latents: list[Any] = []
        self.texts: list[tuple[Any, Any]] = []
        with torch.no_grad():
            for index, ex in enumerate(examples):
                if self.config.cache_latents:
                    self.latents.append(self._encode_image(ex))
                if self.config.text_cached:
                    embeds, pooled = self._encode_text(self.ids[index])
                    self.texts.append((embeds[0], None if pooled is None else pooled[0]))
        by_bucket: dict[tuple[int, int], list[int]] = {}
        for index, ex in enumerate(examples):
            by_bucket.setdefault(ex.bucket, []).extend([index] * self.config.repeats)
        self.buckets: list[list[int]] = [by_bucket[b] for b in sorted(by_bucket)]

    def _offload(self) -> None:
        """What the steps no longer need leaves the GPU: the VAE once latents are cached, the
        text encoders once their outputs are (kohya does the same); samples bring them back."""
        if self.device == "cpu":
            return
        if self.config.cache_latents:
            self.pipe.vae.to("cpu")
        if self.config.text_cached:
            for encoder in self.encoders.values():
                encoder.to("cpu")

    def _latent(self, index: int) -> Any:
        import torch

        if self.config.cache_latents:
            return self.latents[index]
        assert self.dataset is not None
        with torch.no_grad():
            return self._encode_image(self.dataset.examples[index])

    # one step
    def _pick(self, generator) -> list[int]:
        import torch

        weights = torch.tensor([len(b) for b in self.buckets], dtype=torch.float)
        bucket = self.buckets[int(torch.multinomial(weights, 1, generator=generator))]
        picks = torch.randint(len(bucket), (self.config.batch_size,), generator=generator)
        return [bucket[int(i)] for i in picks]

    def _prompts(self, indices: list[int]) -> tuple[Any, Any]:
        import torch

        if self.config.text_cached:
            embeds = torch.stack([self.texts[i][0] for i in indices])
            pooled = (None if self.family != "sdxl"
                      else torch.stack([self.texts[i][1] for i in indices]))
            return embeds, pooled
        ids = [torch.cat([self.ids[i][n] for i in indices]) for n in range(len(self.tokenizers))]
        if self.config.train_text_encoder:
            return self._encode_text(ids)
        with torch.no_grad():
            return self._encode_text(ids)

    def _loss(self, generator, indices: list[int] | None = None):
        """The noise-prediction loss of one batch drawn from ``generator`` (which images,
        unless ``indices`` are given; the noise; the timesteps)."""
        import torch
        import torch.nn.functional as F

        indices = self._pick(generator) if indices is None else indices
        latents = torch.stack([self._latent(i) for i in indices])
        noise = torch.randn(latents.shape, generator=generator).to(latents.device)
        steps = self.noise_scheduler.config.num_train_timesteps
        timesteps = torch.randint(0, steps, (latents.shape[0],), generator=generator).to(
            latents.device)
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        if self.noise_scheduler.config.prediction_type == "v_prediction":
            target = self.noise_scheduler.get_velocity(latents, noise, timesteps)
        else:
            target = noise
        with self.accelerator.autocast():
            embeds, pooled = self._prompts(indices)
            extra = {}
            if self.family == "sdxl":
                extra["added_cond_kwargs"] = {
                    "text_embeds": pooled,
                    "time_ids": torch.stack([self.time_ids[i] for i in indices]).to(self.device)}
            pred = self.unet(noisy, timesteps, embeds, return_dict=False, **extra)[0]
        return F.mse_loss(pred.float(), target.float())

    def train_step(self) -> float:
        import torch

        # each process of `accelerate launch` draws its own batch (the first as a lone run)
        generator = torch.Generator().manual_seed(
            self.config.seed * 1_000_003 + self.step
            + self.accelerator.process_index * 1_000_000_007)
        for model in self.models.values():
            model.train()
        loss = self._loss(generator)
        self.accelerator.backward(loss)
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.step += 1
        value = float(loss.detach())
        self.losses.append(value)
        return value

    def fixed_loss(self, seed: int = 0) -> float:
        """The loss on the images of the largest bucket at once, noise and timesteps fixed by
        ``seed``, no update: a steady measure of learning (a step's own loss jumps with its
        noise level)."""
        import torch

        largest: list[int] = max(self.buckets, key=len)
        indices = sorted(set(largest))
        with torch.no_grad():
            return float(self._loss(torch.Generator().manual_seed(seed), indices))

    def _trained(self) -> dict[str, Any]:
        """The trained models unwrapped (accelerate's wrappers off), by part."""
        return {key: self.accelerator.unwrap_model(m) for key, m in self.models.items()}

    # checkpoints
    def save_checkpoint(self) -> Path:
        import torch
        from safetensors.torch import save_file

        from studio.core.files import atomic_write_text

        folder = self.state_dir
        folder.mkdir(parents=True, exist_ok=True)
        weights = {f"{key}.{name}": p.detach().cpu().contiguous()
                   for key, model in self._trained().items()
                   for name, p in model.named_parameters() if p.requires_grad}
        save_file(weights, str(folder / "lora.safetensors"))
        torch.save(self.optimizer.state_dict(), folder / "optimizer.pt")
        atomic_write_text(folder / "state.json", json.dumps(
            {"step": self.step, "losses": self.losses, "config": _config_json(self.config)}))
        return folder

    def has_checkpoint(self) -> bool:
        return (self.state_dir / "state.json").is_file()

    def load_checkpoint(self) -> None:
        import torch
        from safetensors.torch import load_file

        from studio.library.safe_load import load_state_dict

        folder = self.state_dir
        try:
            state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
            weights = load_file(str(folder / "lora.safetensors"))
            optim = load_state_dict(folder / "optimizer.pt")  # weights_only: no code runs
        except (OSError, ValueError) as exc:
            raise UserFacingError(f"The checkpoint in {folder} cannot be read ({exc}); start the "
                                  "training again without resuming.") from exc
        saved = state.get("config", {})
        if (saved.get("rank") != self.config.rank
                or bool(saved.get("train_text_encoder")) != self.config.train_text_encoder):
            raise UserFacingError(f"The checkpoint in {folder} was trained with another rank or "
                                  "text-encoder setting; resume with the same settings or start "
                                  "again.")
        params = {f"{key}.{name}": p for key, model in self._trained().items()
                  for name, p in model.named_parameters()}
        with torch.no_grad():
            for name, value in weights.items():
                params[name if name.split(".", 1)[0] in self.models else f"unet.{name}"].copy_(
                    value)
        self.optimizer.load_state_dict(optim)
        self.step = int(state["step"])
        self.losses = [float(v) for v in state.get("losses", [])]

    # samples and output
    def sample(self) -> list[Path]:
        import torch

        cfg = self.config
        folder = self.samples_dir
        folder.mkdir(parents=True, exist_ok=True)
        for model in self.models.values():
            model.eval()
        seed = cfg.seed if cfg.sample_seed is None else cfg.sample_seed
        out = []
        if self.device != "cpu":  # what _offload moved away comes back for the samples
            for part in (self.pipe.vae, *self.encoders.values()):
                part.to(self.device)
        try:
            with self.accelerator.autocast():
                for index, prompt in enumerate(cfg.sample_prompts):
                    image = self.pipe(prompt, num_inference_steps=cfg.sample_steps,
                                      width=cfg.resolution, height=cfg.resolution,
                                      generator=torch.Generator("cpu").manual_seed(seed)).images[0]
                    path = folder / f"step{self.step:06d}-{index}.png"
                    image.save(path)
                    out.append(path)
        finally:
            self._offload()
        self.samples.append((self.step, out))
        return out

    def estimate(self, device_memory: int | None = None):
        """The run's memory estimate (:func:`lora_estimate.estimate_memory`) and its sentence."""
        from studio.pipelines.train.lora_estimate import estimate_memory

        cfg = self.config
        return estimate_memory(
            self.family, self.counts, cfg.resolution, cfg.rank, batch_size=cfg.batch_size,
            mixed_precision=cfg.mixed_precision, gradient_checkpointing=cfg.gradient_checkpointing,
            cache_latents=cfg.cache_latents, cache_text=cfg.cache_text,
            train_text_encoder=cfg.train_text_encoder, optimizer=cfg.optimizer,
            device=self.device, device_memory=device_memory)

    def peft_state(self) -> dict:
        """The adapters' weights as PEFT names them, each under its part (``unet.…``,
        ``text_encoder.…``), copied to the CPU."""
        from peft.utils import get_peft_model_state_dict

        return {f"{key}.{k}": v.detach().cpu().float().clone()
                for key, model in self._trained().items()
                for k, v in get_peft_model_state_dict(model).items()}

    def load_peft_state(self, state: dict) -> None:
        from peft.utils import set_peft_model_state_dict

        parts = split_parts(state)
        for key, model in self._trained().items():
            set_peft_model_state_dict(model, {name: v for (part, name), v in parts.items()
                                              if part == key})

    @property
    def unet_layers(self) -> int | None:
        """SDXL's UNet blocks per level (kohya names SDXL's layers as the original UNet)."""
        if self.family != "sdxl":
            return None
        return int(self.pipe.unet.config.layers_per_block)

    def kohya_state_dict(self) -> dict:
        return kohya_from_peft(self.peft_state(), self.config.alpha, self.family,
                               self.unet_layers)

    def metadata(self) -> dict[str, str]:
        assert self.dataset is not None
        cfg = self.config
        return {
            "ss_base_model_version": SUPPORTED_FAMILIES[self.family],
            "ss_sd_model_name": self.base_name,
            "ss_network_module": "networks.lora",
            "ss_network_dim": str(cfg.rank),
            "ss_network_alpha": str(cfg.alpha),
            "ss_learning_rate": str(cfg.lr),
            "ss_unet_lr": str(cfg.lr),
            "ss_text_encoder_lr": str(self.te_lr) if cfg.train_text_encoder else "0",
            "ss_network_train_unet_only": str(not cfg.train_text_encoder),
            "ss_max_train_steps": str(cfg.steps),
            "ss_steps": str(self.step),
            "ss_seed": str(cfg.seed),
            "ss_resolution": f"({cfg.resolution}, {cfg.resolution})",
            "ss_enable_bucket": "True",
            "ss_num_train_images": str(len(self.dataset.examples) * cfg.repeats),
            "ss_mixed_precision": cfg.mixed_precision,
            "ss_gradient_checkpointing": str(cfg.gradient_checkpointing),
            "ss_output_name": cfg.name,
            "ss_training_comment": f"trigger: {cfg.trigger}" if cfg.trigger else "",
            "ss_tag_frequency": json.dumps({Path(cfg.data_dir).name:
                                            self.dataset.tag_frequency()}),
            "ss_dataset_dirs": json.dumps({Path(cfg.data_dir).name: {
                "n_repeats": cfg.repeats, "img_count": len(self.dataset.examples)}}),
            "modelspec.architecture": ARCHITECTURES[self.family],
            "modelspec.title": cfg.name,
        }

    def save_lora(self) -> Path:
        preview = self.samples[-1][1][0] if self.samples and self.samples[-1][1] else None
        return write_lora_file(self.lora_file, self.kohya_state_dict(), self.metadata(), preview)

    def run(self, resume: bool = False,
            on_step: Callable[[StepReport], None] | None = None,
            should_stop: Callable[[], bool] = lambda: False) -> Path:
        """Train up to ``config.steps`` (from the checkpoint when ``resume``); stopping early
        keeps the latest weights (a checkpoint and the LoRA file)."""
        cfg = self.config
        main = self.accelerator.is_main_process  # with `accelerate launch`, one process writes
        if resume and self.has_checkpoint():
            self.load_checkpoint()
        start = time.monotonic()
        while self.step < cfg.steps:
            if should_stop():
                break
            loss = self.train_step()
            if on_step is not None:
                on_step(StepReport(self.step, cfg.steps, loss, cfg.lr, time.monotonic() - start))
            if cfg.save_every and self.step % cfg.save_every == 0 and self.step < cfg.steps \
                    and main:
                self.save_checkpoint()
            if cfg.sample_every and cfg.sample_prompts and self.step % cfg.sample_every == 0 \
                    and main:
                self.sample()
        if main:
            self.save_checkpoint()
            if cfg.sample_prompts and (not self.samples or self.samples[-1][0] != self.step):
                self.sample()
            self.save_lora()
        self.accelerator.wait_for_everyone()
        return self.lora_file


def model_counts(pipe: Any, family: str) -> dict[str, int]:
    """Parameters of the UNet, the text encoders and the VAE, and the LoRA's parameters per
    unit of rank (in + out features of each layer it adapts), for the memory estimate."""
    import torch

    def lora_per_rank(model: Any, targets: list[str]) -> int:
        return sum(m.in_features + m.out_features for name, m in model.named_modules()
                   if isinstance(m, torch.nn.Linear)
                   and any(name == t or name.endswith("." + t) for t in targets))

    encoders = [getattr(pipe, attr) for attr, _ in TEXT_ENCODERS[family]]
    return {"unet": sum(p.numel() for p in pipe.unet.parameters()),
            "text": sum(p.numel() for e in encoders for p in e.parameters()),
            "vae": sum(p.numel() for p in pipe.vae.parameters()),
            "lora_unet": lora_per_rank(pipe.unet, UNET_TARGETS),
            "lora_text": sum(lora_per_rank(e, TEXT_TARGETS) for e in encoders)}


def _training_scheduler(pipe: Any):
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config(pipe.scheduler.config)


def _config_json(config: LoraTrainConfig) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in config.__dict__.items()}


def train_lora(config: LoraTrainConfig, settings: Settings, paths: Paths, *,
               resume: bool = False, device: str = "cpu",
               on_step: Callable[[StepReport], None] | None = None,
               should_stop: Callable[[], bool] = lambda: False) -> tuple[Path, LoraTrainer]:
    trainer = LoraTrainer(config, settings, paths, device)
    trainer.prepare()
    for warning in trainer.dataset.warnings if trainer.dataset else []:
        log.warning("%s", warning)
    return trainer.run(resume=resume, on_step=on_step, should_stop=should_stop), trainer
