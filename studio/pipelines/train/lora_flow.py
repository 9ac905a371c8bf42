"""Train a LoRA for a FLUX.1, SD 3.5 or Qwen-Image model on the user's own images (issue #18).

These families are flow-matching transformers, so the step is the one diffusers' examples
``train_dreambooth_lora_flux.py``, ``train_dreambooth_lora_sd3.py`` and
``train_dreambooth_lora_qwen_image.py`` take: a noise level
``sigma`` drawn with the family's weighting scheme (``compute_density_for_timestep_sampling``)
from the model's own ``FlowMatchEulerDiscreteScheduler`` sigmas, ``noisy = (1 - sigma) · latents
+ sigma · noise``, and the transformer's prediction compared with ``noise - latents``
(``compute_loss_weighting_for_sd3``). FLUX.1 packs the latents 2×2 into tokens with their
``img_ids``/``txt_ids`` and, for dev, gets the guidance embedding; its prompt is CLIP's pooled
vector and T5's sequence. SD 3.5 takes both CLIPs and T5 (zeros where a download has no T5).
Qwen-Image's VAE latents are one video frame, normalised by the VAE's per-channel mean and std,
packed 2×2 like FLUX's; its prompt is Qwen2.5-VL's hidden states with their mask.
The prompts go through the pipeline's own ``encode_prompt``, as at generation.

Everything else — the folder, buckets, captions, cached latents and prompts, accelerate, the
optimizer, checkpoints and exact resume, samples, pause/stop — is :class:`LoraTrainer`'s; this
class overrides its family hooks. The LoRA is PEFT on the transformer's attention projections
(and FLUX's single blocks' ``proj_mlp``/``proj_out``); the text encoders stay frozen
(:data:`TEXT_ENCODER_OFF` says why). The file is diffusers' PEFT layout
(``transformer.<module>.lora_A.weight``), which diffusers, ComfyUI and Forge load, with kohya's
``ss_`` metadata and a preview image.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from studio.core.config import Paths, Settings
from studio.core.jobs import UserFacingError
from studio.pipelines.train.lora_config import LoraTrainConfig
from studio.pipelines.train.lora_sd import LoraTrainer

if TYPE_CHECKING:
    from studio.pipelines.train.lora_data import Dataset

#: family -> kohya's / musubi-tuner's ss_base_model_version
FLOW_FAMILIES = {"flux": "flux1", "sd3": "sd3", "qwen-image": "qwen_image"}
#: the attention projections diffusers' examples adapt (``--lora_layers`` defaults)
ATTENTION_TARGETS = ("attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0", "attn.add_q_proj",
                     "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out")
#: FLUX's single-stream blocks: their MLP in and the joint output projection
FLUX_SINGLE_TARGETS = ("proj_mlp", "proj_out")
#: the weighting scheme of each family's example script (FLUX: none; SD3: logit-normal)
WEIGHTING = {"flux": "none", "sd3": "logit_normal", "qwen-image": "none"}
#: FLUX.1 dev's distilled guidance during training: 1 keeps the distillation (diffusers'
#: advanced FLUX script and ai-toolkit); samples use the pipeline's own 3.5
FLUX_TRAIN_GUIDANCE = 1.0
#: the T5 tokens a prompt has, as the pipelines' defaults at generation
MAX_SEQUENCE = {"flux": 512, "sd3": 256, "qwen-image": 1024}
TEXT_ENCODER_OFF = (
    "FLUX.1, SD 3.5 and Qwen-Image LoRAs train the transformer only: their text encoders (T5 "
    "at 4.7 B parameters, Qwen2.5-VL at 7 B) are too big to train beside the model on one GPU, "
    "and the LoRAs people share for them adapt the transformer, as diffusers', kohya's and "
    "ai-toolkit's defaults do.")
NOT_APPLICABLE = {  # the page's knobs that do not apply to these families, and why
    "train_text_encoder": TEXT_ENCODER_OFF,
    "text_encoder_lr": TEXT_ENCODER_OFF,
    "sdpa": "FLUX.1, SD 3.5 and Qwen-Image always use their own attention (PyTorch's SDPA).",
}


def trainer_for(config: LoraTrainConfig, settings: Settings, paths: Paths,
                device: str = "cpu") -> LoraTrainer:
    """The trainer for ``config.base``'s family: :class:`FlowLoraTrainer` for FLUX.1,
    SD 3.5 and Qwen-Image, :class:`LoraTrainer` for SD 1.x, SDXL (and to refuse the others with a sentence)."""
    from studio.library.resolve import resolve_named

    entry = resolve_named(config.base, "image", settings, paths, command="LoRA training").entry
    cls = FlowLoraTrainer if entry.family in FLOW_FAMILIES else LoraTrainer
    return cls(config, settings, paths, device)


class FlowLoraTrainer(LoraTrainer):
    """One FLUX.1, SD 3.5 or Qwen-Image LoRA run: ``prepare()`` loads and caches, ``run()``
    trains."""

    MODEL_KEY = "transformer"
    FAMILIES = FLOW_FAMILIES

    def attach(self, pipe: Any, base_name: str, family: str, dataset: Dataset) -> None:
        if self.config.train_text_encoder:
            raise UserFacingError(TEXT_ENCODER_OFF + " Turn text-encoder training off.")
        super().attach(pipe, base_name, family, dataset)
        self.guidance_embeds = bool(getattr(pipe.transformer.config, "guidance_embeds", False))

    # -- family hooks ----------------------------------------------------------------------------
    def _setup_parts(self, pipe: Any, family: str) -> Any:
        self.encoders = {attr: model for attr in ("text_encoder", "text_encoder_2",
                                                  "text_encoder_3")
                         if (model := getattr(pipe, attr, None)) is not None}
        self.tokenizers = []  # the pipeline's encode_prompt tokenizes
        return pipe.transformer

    def _lora_targets(self, model: Any) -> list[str]:
        """The exact module names adapted (a bare ``proj_out`` would also catch the final
        output layer, which diffusers' examples leave alone)."""
        import torch

        out = []
        for name, module in model.named_modules():
            if not isinstance(module, torch.nn.Linear):
                continue
            if any(name.endswith("." + t) for t in ATTENTION_TARGETS):
                out.append(name)
            elif self.family == "flux" and name.startswith("single_transformer_blocks.") \
                    and name.rsplit(".", 1)[-1] in FLUX_SINGLE_TARGETS:
                out.append(name)
        return out

    def _model_counts(self, pipe: Any, family: str) -> dict[str, int]:
        import torch

        transformer = pipe.transformer
        targets = set(self._lora_targets(transformer))
        return {"unet": sum(p.numel() for p in transformer.parameters()),
                "text": sum(p.numel() for e in self.encoders.values() for p in e.parameters()),
                "vae": sum(p.numel() for p in pipe.vae.parameters()),
                "lora_unet": sum(m.in_features + m.out_features
                                 for name, m in transformer.named_modules()
                                 if name in targets and isinstance(m, torch.nn.Linear)),
                "lora_text": 0}

    def _training_scheduler(self, pipe: Any) -> Any:
        from diffusers import FlowMatchEulerDiscreteScheduler

        return FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)

    @property
    def architecture(self) -> str:
        if self.family == "sd3":
            return "stable-diffusion-3/lora"
        if self.family == "qwen-image":
            return "qwen-image/lora"
        return "flux-1-dev/lora" if self.guidance_embeds else "flux-1-schnell/lora"

    def metadata(self) -> dict[str, str]:
        return {**super().metadata(), "modelspec.implementation": "diffusers"}

    # -- prompts and latents ---------------------------------------------------------------------
    def _tokens(self, caption: str) -> list[Any]:
        return [caption]  # encode_prompt takes the words

    def _encode_text(self, ids: list[Any]) -> tuple[Any, Any]:
        """(prompt embeddings, pooled embedding) of captions, by the pipeline's encode_prompt
        (Qwen-Image: its prompt mask in the pooled embedding's place)."""
        pipe, captions = self.pipe, list(ids)
        if self.family == "qwen-image":
            embeds, mask = pipe.encode_prompt(prompt=captions, device=self.device,
                                              max_sequence_length=MAX_SEQUENCE["qwen-image"])
            return embeds, mask
        if self.family == "flux":
            embeds, pooled, _ = pipe.encode_prompt(prompt=captions, prompt_2=None,
                                                   device=self.device,
                                                   max_sequence_length=MAX_SEQUENCE["flux"])
            return embeds, pooled
        embeds, _, pooled, _ = pipe.encode_prompt(
            prompt=captions, prompt_2=None, prompt_3=None, device=self.device,
            do_classifier_free_guidance=False, max_sequence_length=MAX_SEQUENCE["sd3"])
        return embeds, pooled

    def _prompts(self, indices: list[int]) -> tuple[Any, Any]:
        import torch

        if self.config.text_cached and self.family == "qwen-image":
            return _padded([self.texts[i] for i in indices])
        if self.config.text_cached:
            return super()._prompts(indices)
        assert self.dataset is not None
        with torch.no_grad():
            return self._encode_text([self.dataset.examples[i].caption for i in indices])

    def _encode_image(self, example: Any) -> Any:
        from studio.pipelines.train.lora_data import load_pixels

        pixels = load_pixels(example).unsqueeze(0).to(self.device)
        vae = self.pipe.vae
        if self.family == "qwen-image":  # one frame of its video VAE, per-channel normalised
            import torch

            latent = vae.encode(pixels[:, :, None]).latent_dist.mean
            mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
            std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
            return ((latent - mean.to(latent)) / std.to(latent))[0, :, 0]
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        return ((vae.encode(pixels).latent_dist.mean - shift) * vae.config.scaling_factor)[0]

    # -- one step --------------------------------------------------------------------------------
    def _loss(self, generator, indices: list[int] | None = None):
        """The flow-matching loss of one batch drawn from ``generator`` (which images, unless
        ``indices`` are given; the noise; the noise levels), as diffusers' examples compute it."""
        import torch
        from diffusers.training_utils import (
            compute_density_for_timestep_sampling,
            compute_loss_weighting_for_sd3,
        )

        indices = self._pick(generator) if indices is None else indices
        latents = torch.stack([self._latent(i) for i in indices]).float()
        batch = latents.shape[0]
        noise = torch.randn(latents.shape, generator=generator).to(latents.device)
        scheme = WEIGHTING[self.family]
        u = compute_density_for_timestep_sampling(scheme, batch, logit_mean=0.0, logit_std=1.0,
                                                  mode_scale=1.29, generator=generator)
        scheduler = self.noise_scheduler
        index = (u * scheduler.config.num_train_timesteps).long()
        timesteps = scheduler.timesteps[index].to(latents.device)
        sigmas = scheduler.sigmas[index].to(latents.device, latents.dtype).view(-1, 1, 1, 1)
        noisy = (1.0 - sigmas) * latents + sigmas * noise
        target = noise - latents
        with self.accelerator.autocast():
            embeds, pooled = self._prompts(indices)
            pred = self._predict(noisy, timesteps, embeds, pooled)
        weighting = compute_loss_weighting_for_sd3(scheme, sigmas)
        return torch.mean((weighting.float() * (pred.float() - target) ** 2).reshape(batch, -1),
                          1).mean()

    def _predict(self, noisy: Any, timesteps: Any, embeds: Any, pooled: Any) -> Any:
        """The transformer's velocity for ``noisy`` latents (unpacked again for FLUX)."""
        import torch

        if self.family == "sd3":
            return self.denoiser(hidden_states=noisy, timestep=timesteps,
                                 encoder_hidden_states=embeds, pooled_projections=pooled,
                                 return_dict=False)[0]
        if self.family == "qwen-image":
            return self._predict_qwen(noisy, timesteps, embeds, pooled)
        from diffusers import FluxPipeline

        batch, channels, height, width = noisy.shape
        device, dtype = noisy.device, embeds.dtype
        packed = FluxPipeline._pack_latents(noisy, batch, channels, height, width)
        img_ids = FluxPipeline._prepare_latent_image_ids(batch, height // 2, width // 2,
                                                          device, dtype)
        txt_ids = torch.zeros(embeds.shape[1], 3, device=device, dtype=dtype)
        guidance = (torch.full((batch,), FLUX_TRAIN_GUIDANCE, device=device)
                    if self.guidance_embeds else None)
        pred = self.denoiser(hidden_states=packed, timestep=timesteps / 1000, guidance=guidance,
                             pooled_projections=pooled, encoder_hidden_states=embeds,
                             txt_ids=txt_ids, img_ids=img_ids, return_dict=False)[0]
        scale = self.pipe.vae_scale_factor
        return FluxPipeline._unpack_latents(pred, height * scale, width * scale, scale)


    def _predict_qwen(self, noisy: Any, timesteps: Any, embeds: Any, mask: Any) -> Any:
        from diffusers import QwenImagePipeline

        batch, channels, height, width = noisy.shape
        packed = QwenImagePipeline._pack_latents(noisy, batch, channels, height, width)
        pred = self.denoiser(hidden_states=packed, timestep=timesteps / 1000, guidance=None,
                             encoder_hidden_states_mask=mask, encoder_hidden_states=embeds,
                             img_shapes=[[(1, height // 2, width // 2)]] * batch,
                             return_dict=False)[0]
        scale = self.pipe.vae_scale_factor
        return QwenImagePipeline._unpack_latents(pred, height * scale, width * scale,
                                                 scale)[:, :, 0]


def _padded(texts: list[tuple[Any, Any]]) -> tuple[Any, Any]:
    """Cached Qwen-Image prompts (embeddings, mask) of different lengths as one batch, padded
    with zeros that the mask leaves out (as encode_prompt pads a batch of prompts)."""
    import torch

    pad = torch.nn.functional.pad
    longest = max(int(embeds.shape[0]) for embeds, _ in texts)
    embeds = torch.stack([pad(e, (0, 0, 0, longest - e.shape[0])) for e, _ in texts])
    masks = [torch.ones(e.shape[0], dtype=torch.long, device=e.device) if m is None else m
             for e, m in texts]  # encode_prompt gives no mask where nothing is padded
    mask = torch.stack([pad(m, (0, longest - m.shape[0])) for m in masks])
    return embeds, None if bool(mask.all()) else mask

