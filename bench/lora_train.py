"""LoRA training speed: Studio's trainer step vs a bare diffusers + peft loop (issue #18).

    python -m bench.lora_train [--steps 20] [--rounds 3] [--resolution 64] [--rank 4]

Both sides train the same tiny random SD 1.5 pipeline (tests/fixtures/tiny_models.py) on the same
four images with the same LoRA (rank, alpha, targets, AdamW, lr), in one process, in alternating
rounds so that the machine's load hits them alike:

- ``studio``: ``LoraTrainer.train_step()`` (cached latents and prompt embeddings, accelerate,
  seeded per-step randomness for exact resume).
- ``bare``: the loop of diffusers' ``train_text_to_image_lora`` example written out by hand: the
  same cached latents and embeddings, ``unet.add_adapter(LoraConfig)``, noise, timesteps,
  ``add_noise``, MSE, backward, ``optimizer.step``.

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


def _images(folder: Path, side: int) -> Path:
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


def _rate(step, steps: int) -> float:
    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--rank", type=int, default=4)
    args = parser.parse_args(argv)

    import torch

    from studio.core.config import Settings, default_paths
    from studio.pipelines.train.lora_config import LoraTrainConfig
    from studio.pipelines.train.lora_sd import LoraTrainer
    from tests.fixtures.tiny_models import build_tiny_sd15

    torch.set_num_threads(1)
    home = Path(os.environ["STUDIO_HOME"])
    model = build_tiny_sd15(home / "tiny-sd15")
    data = _images(home / "data", args.resolution)
    config = LoraTrainConfig(data_dir=data, base=str(model), name="bench", rank=args.rank,
                             alpha=float(args.rank), lr=1e-4, steps=10**6,
                             resolution=args.resolution)
    studio = LoraTrainer(config, Settings(device="cpu", precision="fp32"), default_paths())
    studio.prepare()
    bare = Bare(model, studio.latents, [text[0] for text in studio.texts], args.rank, 1e-4)
    print(f"tiny SD 1.5, {args.resolution} px, rank {args.rank}, {args.steps} steps per round, "
          "1 torch thread")
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
