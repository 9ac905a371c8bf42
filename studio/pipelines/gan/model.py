"""A GAN folder (:mod:`studio.library.gan_models`) loaded for drawing, with no pickle anywhere.

The generator is the ``dcgan`` lesson's own :class:`~studio.pipelines.train.dcgan.Generator`,
built from ``gan.json`` and loaded from ``generator.safetensors`` with ``strict=True``, in eval
mode (BatchNorm's running statistics), so Generate draws exactly what the lesson's sample grid
shows. Seed ``s`` means the noise vector ``torch.randn(latent_dim)`` of a CPU generator seeded
with ``s``; a variation seed blends its noise in spherically (A1111's variation seed). A GAN
draws at its own small size; the picture is enlarged by whole pixels (nearest) to the largest
size that fits the requested width and height, so nothing is blurred or invented.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from studio.core.jobs import UserFacingError

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image as PILImage


class GANModel:
    """A trained generator on a device."""

    def __init__(self, folder: Path, device: str = "cpu") -> None:
        import torch

        from studio.library.gan_models import WEIGHTS_FILE, read_gan_info
        from studio.library.safe_load import load_state_dict
        from studio.pipelines.train.dcgan import Generator

        self.folder = Path(folder)
        self.info = read_gan_info(self.folder)
        self.latent_dim = int(self.info["latent_dim"])
        self.size = int(self.info["image_size"])
        self.channels = int(self.info["channels"])
        self.device = device
        with torch.random.fork_rng(devices=[]):
            net = Generator(self.latent_dim, int(self.info["width"]), self.channels, self.size,
                            torch.Generator().manual_seed(0))
        try:
            net.load_state_dict(load_state_dict(self.folder / WEIGHTS_FILE), strict=True)
        except RuntimeError as exc:
            raise UserFacingError(f"{self.folder.name}'s weights do not match its gan.json "
                                  f"({str(exc).splitlines()[0][:200]}).") from exc
        self.net = net.to(device).eval().requires_grad_(False)

    def noise(self, seed: int) -> torch.Tensor:
        """The noise vector of ``seed`` (1, latent_dim), always drawn on the CPU."""
        import torch

        return torch.randn((1, self.latent_dim), generator=torch.Generator().manual_seed(seed))

    def varied_noise(self, seed: int, variation_seed: int | None,
                     strength: float) -> torch.Tensor:
        z = self.noise(seed)
        if variation_seed is None or strength <= 0:
            return z
        from studio.pipelines.diffusion.variation import slerp

        other = self.noise(variation_seed)
        return slerp(strength, z.reshape(-1, 1), other.reshape(-1, 1)).reshape(1, -1)

    def draw(self, z: torch.Tensor) -> np.ndarray:
        """Images for noise ``z`` (n, latent_dim): (n, size, size, channels) uint8."""
        import torch

        with torch.inference_mode():
            x = self.net(z.to(self.device)).float().cpu().clamp(-1, 1)
        return ((x + 1) * 127.5).round().to(torch.uint8).numpy().transpose(0, 2, 3, 1)

    def scale_for(self, width: int, height: int) -> int:
        """The whole-pixel enlargement that fits ``width`` × ``height`` (at least 1)."""
        return max(1, min(int(width), int(height)) // self.size)

    def to_image(self, pixels: np.ndarray, scale: int = 1) -> PILImage:
        """One (size, size, channels) uint8 array as a PIL RGB image enlarged ``scale`` times."""
        from PIL import Image

        image = Image.fromarray(pixels[..., 0], mode="L") if pixels.shape[-1] == 1 \
            else Image.fromarray(pixels, mode="RGB")
        image = image.convert("RGB")
        if scale > 1:
            image = image.resize((self.size * scale,) * 2, Image.Resampling.NEAREST)
        return image

    def walk(self, seed_a: int, seed_b: int, frames: int) -> list[np.ndarray]:
        """``frames`` images on the spherical path from ``seed_a``'s noise to ``seed_b``'s."""
        import torch

        from studio.pipelines.diffusion.variation import slerp

        a, b = self.noise(seed_a).reshape(-1, 1), self.noise(seed_b).reshape(-1, 1)
        steps = [i / max(1, frames - 1) for i in range(frames)]
        # the ends exactly the seeds' own images (the formula's rounding would move them)
        z = torch.cat([(a if t == 0 else b if t == 1 else slerp(t, a, b)).reshape(1, -1)
                       for t in steps])
        return list(self.draw(z))
