"""LoRA training speed: Studio's trainer step vs a bare diffusers + peft loop (issue #18).

    python -m bench.lora_train [--family sd1|flux|sd3|qwen-image] [--steps 20] [--rounds 3]
                               [--resolution 64] [--rank 4]

Both sides train the same tiny random pipeline of the family (SD 1.5, FLUX.1-dev, SD 3.5 or
Qwen-Image layout; tests/fixtures/tiny_models.py, tiny_families.py) on the same four images with the same LoRA (rank, alpha,
targets, AdamW, lr), in one process, in alternating rounds so that the machine's load hits them
alike:

- ``studio``: ``LoraTrainer.train_step()`` (``FlowLoraTrainer`` for FLUX.1 and SD 3.5: cached
  latents and prompt embeddings, accelerate, seeded per-step randomness for exact resume).
- ``bare``: the loop of diffusers' example written out by hand on the same cached latents and
  embeddings — ``train_text_to_image_lora`` for SD 1.5 (``add_noise``, MSE on the noise),
  ``train_dreambooth_lora_flux.py`` / ``_sd3.py`` / ``_qwen_image.py`` for the others (a sigma from the scheduler's
  sigmas, ``(1 - sigma) · latents + sigma · noise``, FLUX's packed latents with img/txt ids
  and guidance, MSE on ``noise - latents`` with the weighting scheme) — backward,
  ``optimizer.step``.

``ratio`` = studio steps/s / bare steps/s per round (target ≥ 0.95).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("STUDIO_HOME", tempfile.mkdtemp(prefix="studio-bench-lora-"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def training_images(folder: Path, side: int) -> Path:
    """Four random pictures with a caption each: a LoRA training folder (bench/gpu.py too)."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(
            folder / f"{i}.png")
        (folder / f"{i}.txt").write_text(f"pattern {i}", encoding="utf-8")
    return folder


class Bare:
    """diffusers' example loop, written plainly on the same cached tensors."""

    def __init__(self, model: Path, latents, embeds, rank: int, lr: float) -> None:
        import torch
        from diffusers import DDPMScheduler, UNet2DConditionModel
        from peft import LoraConfig

        torch.manual_seed(0)
        self.unet = UNet2DConditionModel.from_pretrained(model / "unet")
        self.unet.requires_grad_(False)
        self.unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                                         target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
        params = [p for p in self.unet.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=lr)
        self.scheduler = DDPMScheduler.from_pretrained(model / "scheduler")
        self.latents, self.embeds = latents, embeds

    def step(self) -> float:
        import torch
        import torch.nn.functional as F

        i = int(torch.randint(len(self.latents), (1,)))
        latents, embeds = self.latents[i][None], self.embeds[i][None]
        noise = torch.randn_like(latents)
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (1,))
        noisy = self.scheduler.add_noise(latents, noise, t)
        self.unet.train()
        pred = self.unet(noisy, t, embeds, return_dict=False)[0]
        loss = F.mse_loss(pred.float(), noise.float())
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        return float(loss.detach())


class BareFlow:
    """diffusers' FLUX / SD3 DreamBooth-LoRA example loop, written plainly on the same cached
    tensors (latents already shifted and scaled, prompt and pooled embeddings)."""

    def __init__(self, model: Path, family: str, latents, texts, targets: list[str], rank: int,
                 lr: float) -> None:
        import torch
        from diffusers import (
            FlowMatchEulerDiscreteScheduler,
            FluxTransformer2DModel,
            QwenImageTransformer2DModel,
            SD3Transformer2DModel,
        )
        from peft import LoraConfig

        torch.manual_seed(0)
        cls = {"flux": FluxTransformer2DModel, "sd3": SD3Transformer2DModel,
               "qwen-image": QwenImageTransformer2DModel}[family]
        self.transformer = cls.from_pretrained(model / "transformer")
        self.transformer.requires_grad_(False)
        self.transformer.add_adapter(LoraConfig(r=rank, lora_alpha=rank,
                                                init_lora_weights="gaussian",
                                                target_modules=targets))
        params = [p for p in self.transformer.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=lr)
        self.scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(model / "scheduler")
        self.family, self.latents, self.texts = family, latents, texts
        self.scheme = "logit_normal" if family == "sd3" else "none"

    def step(self) -> float:
        import torch
        from diffusers import FluxPipeline, QwenImagePipeline
        from diffusers.training_utils import (
            compute_density_for_timestep_sampling,
            compute_loss_weighting_for_sd3,
        )

        i = int(torch.randint(len(self.latents), (1,)))
        latents = self.latents[i][None]
        embeds, pooled = self.texts[i][0][None], self.texts[i][1]  # Qwen: its mask (or None)
        pooled = None if pooled is None else pooled[None]
        noise = torch.randn_like(latents)
        u = compute_density_for_timestep_sampling(self.scheme, 1, logit_mean=0.0, logit_std=1.0,
                                                  mode_scale=1.29)
        index = (u * self.scheduler.config.num_train_timesteps).long()
        timesteps = self.scheduler.timesteps[index]
        sigmas = self.scheduler.sigmas[index].view(-1, 1, 1, 1)
        noisy = (1.0 - sigmas) * latents + sigmas * noise
        self.transformer.train()
        if self.family == "flux":
            b, c, h, w = noisy.shape
            pred = self.transformer(
                hidden_states=FluxPipeline._pack_latents(noisy, b, c, h, w),
                timestep=timesteps / 1000, guidance=torch.ones(b), pooled_projections=pooled,
                encoder_hidden_states=embeds, txt_ids=torch.zeros(embeds.shape[1], 3),
                img_ids=FluxPipeline._prepare_latent_image_ids(b, h // 2, w // 2, "cpu",
                                                               embeds.dtype),
                return_dict=False)[0]
            pred = FluxPipeline._unpack_latents(pred, h * 8, w * 8, 8)
        elif self.family == "qwen-image":
            b, c, h, w = noisy.shape
            pred = self.transformer(
                hidden_states=QwenImagePipeline._pack_latents(noisy, b, c, h, w),
                timestep=timesteps / 1000, encoder_hidden_states=embeds,
                encoder_hidden_states_mask=pooled, img_shapes=[[(1, h // 2, w // 2)]] * b,
                return_dict=False)[0]
            pred = QwenImagePipeline._unpack_latents(pred, h * 8, w * 8, 8)[:, :, 0]
        else:
            pred = self.transformer(hidden_states=noisy, timestep=timesteps,
                                    encoder_hidden_states=embeds, pooled_projections=pooled,
                                    return_dict=False)[0]
        weighting = compute_loss_weighting_for_sd3(self.scheme, sigmas)
        loss = torch.mean((weighting * (pred - (noise - latents)) ** 2).reshape(1, -1), 1).mean()
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        return float(loss.detach())


def _rate(step, steps: int) -> float:
    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--family", choices=("sd1", "flux", "sd3", "qwen-image"), default="sd1")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--rank", type=int, default=4)
    args = parser.parse_args(argv)

    import torch

    from studio.core.config import Settings, default_paths
    from studio.pipelines.train.lora_config import LoraTrainConfig
    from studio.pipelines.train.lora_flow import trainer_for
    from tests.fixtures.tiny_families import build_tiny_qwen_image
    from tests.fixtures.tiny_models import build_tiny_flux, build_tiny_sd3, build_tiny_sd15

    torch.set_num_threads(1)
    home = Path(os.environ["STUDIO_HOME"])
    build = {"sd1": build_tiny_sd15, "flux": build_tiny_flux, "sd3": build_tiny_sd3,
             "qwen-image": build_tiny_qwen_image}
    model = build[args.family](home / f"tiny-{args.family}")
    data = training_images(home / "data", args.resolution)
    config = LoraTrainConfig(data_dir=data, base=str(model), name="bench", rank=args.rank,
                             alpha=float(args.rank), lr=1e-4, steps=10**6,
                             resolution=args.resolution)
    studio = trainer_for(config, Settings(device="cpu", precision="fp32"), default_paths())
    studio.prepare()
    if args.family == "sd1":
        bare: Bare | BareFlow = Bare(model, studio.latents, [text[0] for text in studio.texts],
                                     args.rank, 1e-4)
    else:  # the very layers Studio adapts
        targets = sorted({k.split(".", 1)[1].rsplit(".lora_", 1)[0]
                          for k in studio.peft_state()})
        bare = BareFlow(model, args.family, studio.latents, studio.texts, targets, args.rank,
                        1e-4)
    names = {"sd1": "SD 1.5", "flux": "FLUX.1-dev", "sd3": "SD 3.5", "qwen-image": "Qwen-Image"}
    print(f"tiny {names[args.family]}, {args.resolution} px, rank {args.rank}, "
          f"{args.steps} steps per round, 1 torch thread")
    ratios = []
    for round_ in range(args.rounds):
        ours = _rate(studio.train_step, args.steps)
        theirs = _rate(bare.step, args.steps)
        ratios.append(ours / theirs)
        print(f"round {round_ + 1}: studio {ours:.1f} steps/s, bare {theirs:.1f} steps/s, "
              f"ratio {ratios[-1]:.3f}", flush=True)
    print(f"ratio (studio / bare): median {statistics.median(ratios):.3f}, "
          f"{min(ratios):.3f}–{max(ratios):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
