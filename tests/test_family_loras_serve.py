"""A FLUX.1 LoRA through ``studio serve`` (issue 15): a kohya FLUX.1 LoRA in the library, named by
a ``<lora:NAME:WEIGHT>`` tag in a served prompt, gives the image plain diffusers makes with it at
that weight, and the PNG records its hash as for SD LoRAs."""

from __future__ import annotations

import base64
import io

import numpy as np
import openai
from PIL import Image

from tests.fixtures.tiny_family_loras import random_pairs, write
from tests.test_chat_b_serve_e2e import KEY, start_serve
from tests.test_family_loras import FLUX_ORIGINAL, plain_image


def test_a_served_prompt_applies_a_flux_lora_as_diffusers_does(tiny_flux_dir, tmp_path):
    home = tmp_path / "home"
    (home / "config").mkdir(parents=True)
    (home / "config" / "settings.json").write_text('{"device": "cpu", "precision": "fp32"}')
    (home / "key").write_text(KEY + "\n")
    lora = write(random_pairs(FLUX_ORIGINAL, seed=1), "kohya",
                 home / "data" / "models" / "loras" / "ink.safetensors")
    proc, url = start_serve(home, "--api-key-file", str(home / "key"), "--model",
                            str(tiny_flux_dir))
    try:
        client = openai.OpenAI(base_url=url, api_key=KEY, max_retries=0, timeout=300)

        def served(prompt):
            result = client.images.generate(
                model=tiny_flux_dir.name, prompt=prompt, size="64x64",
                extra_body={"steps": 2, "seed": 5, "guidance_scale": 3.5})
            return Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json)))

        styled = served("a lighthouse at dusk <lora:ink:0.7>")
        assert np.array_equal(np.asarray(styled.convert("RGB")),
                              plain_image("FluxPipeline", tiny_flux_dir, lora, 0.7))
        assert "Lora hashes: \"ink: " in styled.text.get("parameters", "")
        plain = served("a lighthouse at dusk")  # the next request unloads it again
        assert np.array_equal(np.asarray(plain.convert("RGB")),
                              plain_image("FluxPipeline", tiny_flux_dir))
    finally:
        proc.terminate()
        proc.wait(timeout=120)
