"""The family registry (issue 15): one module per family, and everything that used to keep its
own table of families reads it."""

from __future__ import annotations

from studio.library import families


def test_each_family_module_registers_itself_in_order():
    assert list(families.FAMILIES) == ["sd1", "sd2", "sdxl", "sd3", "flux", "flux-kontext",
                                       "flux2", "chroma", "qwen-image", "qwen-image-edit",
                                       "z-image"]
    for fam in families.FAMILIES.values():
        assert fam.default_size in {(w, h) for w, h, _ in fam.presets}
        assert all(w % 16 == 0 and h % 16 == 0 for w, h, _ in fam.presets)
        assert all(len(r) == 3 for r in fam.latent_rgb_factors)
        channels = {"flux2": 32}.get(fam.key, 16 if fam.denoiser == "transformer" else 4)
        assert len(fam.latent_rgb_factors) == channels
        # the tiny preview decoders published as diffusers AutoencoderTiny folders
        assert fam.tae_repo.startswith("madebyollin/") or fam.key in (
            "flux2", "qwen-image", "qwen-image-edit")
        assert fam.pipeline_class in fam.diffusers_classes or fam.denoiser == "unet"
    assert families.family("unknown") is None and families.label("gan", "—") == "—"


def test_consumers_read_the_registry():
    from studio.library.classify import by_lora_context_dim
    from studio.library.single_file_configs import ASSET_NAMES, TOKENIZERS
    from studio.pipelines.diffusion.loras import FAMILY_LABELS
    from studio.pipelines.diffusion.previews import TAESD_REPOS, latent_rgb_factors
    from studio.ui.panels.generate.size_presets import DEFAULT_SIZE, presets_for

    assert DEFAULT_SIZE == {"sd1": (512, 512), "sd2": (768, 768), "sdxl": (1024, 1024),
                            "sd3": (1024, 1024), "flux": (1024, 1024), "flux2": (1024, 1024),
                            "chroma": (1024, 1024), "qwen-image": (1328, 1328),
                            "z-image": (1024, 1024), "flux-kontext": (1024, 1024),
                            "qwen-image-edit": (1024, 1024)}
    assert presets_for("sdxl")[0] == (1024, 1024, "1:1 square")
    assert presets_for("not-a-family")[0] == (512, 512, "1:1 square")  # the mixed list
    assert ASSET_NAMES == {"sd1": "sd15", "sd2": "sd2", "sdxl": "sdxl", "flux": "flux",
                           "sd3": "sd35", "chroma": "chroma"}  # the last three: split files
    assert set(TOKENIZERS["sdxl"]) == {"tokenizer", "tokenizer_2"}
    assert FAMILY_LABELS["sd1"] == "SD 1.5"
    assert TAESD_REPOS["sdxl"] == "madebyollin/taesdxl"
    factors, bias = latent_rgb_factors("sd2")
    assert factors == latent_rgb_factors("sd1")[0] and bias == [0.0, 0.0, 0.0]
    assert latent_rgb_factors("sdxl")[1] == [0.1084, -0.0175, -0.0011]
    assert [by_lora_context_dim(w) for w in (768, 1024, 2048, 4096)] == ["sd1", "sd2", "sdxl", ""]
