"""Random-weight pipelines of each image family for ``bench/txt2img.py --family NAME`` (#15).

Each builder saves a diffusers folder of the family's real pipeline, model and tokenizer classes
with random weights (nothing is downloaded): the real architecture on CUDA where it is written
here (SD 3.5 medium, FLUX.1 dev, SDXL), and on the CPU a narrow one sized so that one 256 px
image of 16 steps takes one to a few seconds on one CPU thread. The narrow models keep the real
structure — the layer kinds, the latent channels and packing, the text encoder's kind and the way
the pipeline reads it — and the family's shipped scheduler configuration (assets/configs); only
widths and depths are smaller.

The tokenizers are made here as the tests' fixtures make theirs (bench/ does not import tests/):
the real CLIP BPE (Studio ships its merges), a T5 Unigram and a Qwen byte-level BPE trained on a
few sentences (their real vocabularies are downloads), each saved as the class the pipeline loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "configs"

_WORDS = ("a lighthouse on cliff at dusk oil paint blurry cat fox in the snow watercolor "
          "portrait of an old harbour with boats under red sky castle forest river mountain city "
          "night").split()
_TEXT = [" ".join(_WORDS[i:] + _WORDS[:i]) for i in range(len(_WORDS))]

#: Qwen's ChatML template (Z-Image and FLUX.2 klein render their prompt through it)
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


# -- tokenizers --------------------------------------------------------------------------------
def clip_tokenizer(dest: Path, pad: str) -> Any:
    from transformers import CLIPTokenizer

    from studio.library.clip_tokenizer import write_clip_tokenizer

    return CLIPTokenizer.from_pretrained(str(write_clip_tokenizer(dest, pad)))


def t5_tokenizer() -> Any:
    """A T5TokenizerFast over a 120-piece Unigram trained here (T5's spiece model is a
    download): FLUX's and Chroma's tokenizer class, special tokens and padding side."""
    from tokenizers import SentencePieceUnigramTokenizer
    from transformers import T5TokenizerFast

    unigram = SentencePieceUnigramTokenizer()
    unigram.train_from_iterator(_TEXT, vocab_size=120,
                                special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>")
    return T5TokenizerFast(tokenizer_object=unigram._tokenizer, pad_token="<pad>",
                           eos_token="</s>", unk_token="<unk>", extra_ids=0)


def qwen_tokenizer() -> Any:
    """A Qwen2TokenizerFast over a 300-token byte-level BPE trained here, with Qwen's
    <|endoftext|>/<|im_start|>/<|im_end|> and the ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    raw.train_from_iterator(_TEXT * 20 + ["You are a helpful assistant. Describe the image "
                                          "by detailing the color, shape, size, texture, "
                                          "quantity, text, spatial relationships of the "
                                          "objects and background:"] * 20, trainer=trainer)
    tok = Qwen2TokenizerFast(tokenizer_object=raw, eos_token="<|im_end|>",
                             pad_token="<|endoftext|>", unk_token=None, bos_token=None)
    tok.chat_template = CHATML
    return tok


# -- components --------------------------------------------------------------------------------
def _scheduler(folder: str, **overrides: Any) -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler

    config = FlowMatchEulerDiscreteScheduler.load_config(str(ASSETS / folder / "scheduler"))
    return FlowMatchEulerDiscreteScheduler.from_config({**config, **overrides})


def _vae16(folder: str, full_size: bool) -> Any:
    """The 16-channel AutoencoderKL of SD 3.5 / FLUX.1 / Chroma / Z-Image (its shipped config,
    narrower on the CPU)."""
    from diffusers import AutoencoderKL

    config = AutoencoderKL.load_config(str(ASSETS / folder / "vae"))
    if not full_size:
        config = {**config, "block_out_channels": [32, 64, 128, 128]}
    return AutoencoderKL.from_config(config)


def _clip(width: int, layers: int, act: str, projection: bool) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(hidden_size=width, intermediate_size=width * 4,
                            num_attention_heads=max(1, width // 64), num_hidden_layers=layers,
                            vocab_size=49408, max_position_embeddings=77, projection_dim=width,
                            hidden_act=act)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def _t5(width: int, layers: int) -> Any:
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=120, d_model=width, d_kv=32, d_ff=width * 2,
                                   num_layers=layers, num_heads=max(1, width // 32),
                                   feed_forward_proj="gated-gelu", decoder_start_token_id=0,
                                   pad_token_id=0, eos_token_id=1))


def _qwen3(width: int, layers: int, causal_lm: bool) -> Any:
    from transformers import Qwen3Config, Qwen3ForCausalLM, Qwen3Model

    config = Qwen3Config(hidden_size=width, intermediate_size=width * 3,
                         num_hidden_layers=layers, num_attention_heads=max(1, width // 32),
                         num_key_value_heads=max(1, width // 64), head_dim=32, vocab_size=300,
                         max_position_embeddings=1024, bos_token_id=None, eos_token_id=2,
                         pad_token_id=0, tie_word_embeddings=True)
    return (Qwen3ForCausalLM if causal_lm else Qwen3Model)(config).eval()


def _save(pipe: Any, dest: Path) -> Path:
    pipe.save_pretrained(str(dest), safe_serialization=True)
    return dest


# -- the families --------------------------------------------------------------------------------
def build_random_sdxl(dest: Path, full_size: bool, seed: int = 0) -> Path:
    """SDXL 1.0's architecture (its shipped UNet and VAE configs): full size on CUDA; on the CPU
    the UNet narrower (64/128/256 channels, one transformer layer a level) and two narrow CLIP
    encoders of different widths, their pooled vector in the added-time embedding as in SDXL."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )

    from studio.library.clip_tokenizer import PAD_CLIP_L, PAD_OPEN_CLIP

    torch.manual_seed(seed)
    unet_cfg = UNet2DConditionModel.load_config(str(ASSETS / "sdxl" / "unet"))
    vae_cfg = AutoencoderKL.load_config(str(ASSETS / "sdxl" / "vae"))
    widths, layers = (768, 1280), 12
    if not full_size:
        widths, layers = (128, 256), 2
        unet_cfg = {**unet_cfg, "block_out_channels": [64, 128, 256],
                    "attention_head_dim": [1, 2, 4], "transformer_layers_per_block": [1, 1, 1],
                    "cross_attention_dim": sum(widths),
                    "projection_class_embeddings_input_dim":
                        unet_cfg["addition_time_embed_dim"] * 6 + widths[1]}
        vae_cfg = {**vae_cfg, "block_out_channels": [32, 64, 128, 128]}
    pipe = StableDiffusionXLPipeline(
        unet=UNet2DConditionModel.from_config(unet_cfg), vae=AutoencoderKL.from_config(vae_cfg),
        text_encoder=_clip(widths[0], layers, "quick_gelu", projection=False),
        text_encoder_2=_clip(widths[1], layers + (20 if full_size else 0), "gelu",
                             projection=True),
        tokenizer=clip_tokenizer(dest.parent / f".{dest.name}-tok1", PAD_CLIP_L),
        tokenizer_2=clip_tokenizer(dest.parent / f".{dest.name}-tok2", PAD_OPEN_CLIP),
        scheduler=EulerDiscreteScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
            steps_offset=1, timestep_spacing="leading"))
    if full_size:
        pipe = pipe.to(torch.float16)
    return _save(pipe, dest)


def build_random_sd3(dest: Path, full_size: bool, seed: int = 0) -> Path:
    """An SD 3.5-architecture pipeline (no T5, as SD 3.5 runs without it): SD 3.5 medium's
    transformer on CUDA, a narrow one on the CPU."""
    import torch
    from diffusers import SD3Transformer2DModel, StableDiffusion3Pipeline

    from studio.library.clip_tokenizer import PAD_CLIP_L, PAD_OPEN_CLIP

    torch.manual_seed(seed)
    if full_size:
        transformer = SD3Transformer2DModel(
            sample_size=128, patch_size=2, in_channels=16, out_channels=16, num_layers=24,
            attention_head_dim=64, num_attention_heads=24, joint_attention_dim=4096,
            caption_projection_dim=1536, pooled_projection_dim=2048, pos_embed_max_size=384)
        widths = (768, 1280)
    else:
        transformer = SD3Transformer2DModel(
            sample_size=32, patch_size=2, in_channels=16, out_channels=16, num_layers=4,
            attention_head_dim=32, num_attention_heads=4, joint_attention_dim=256,
            caption_projection_dim=128, pooled_projection_dim=256, pos_embed_max_size=64)
        widths = (128, 128)
    encoders = [_clip(w, 12 if full_size else 2, act, projection=True)
                for w, act in zip(widths, ("quick_gelu", "gelu"), strict=True)]
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, vae=_vae16("sd35", full_size), text_encoder=encoders[0],
        text_encoder_2=encoders[1], text_encoder_3=None,
        tokenizer=clip_tokenizer(dest.parent / f".{dest.name}-tok1", PAD_CLIP_L),
        tokenizer_2=clip_tokenizer(dest.parent / f".{dest.name}-tok2", PAD_OPEN_CLIP),
        tokenizer_3=None, scheduler=_scheduler("sd35"))
    return _save(pipe, dest)


def build_random_flux(dest: Path, full_size: bool, seed: int = 0) -> Path:
    """A FLUX.1-dev-architecture pipeline: the real sizes on CUDA, a narrow transformer and T5
    on the CPU (packed 16-channel latents, the guidance embedder, CLIP's pooled vector)."""
    import torch
    from diffusers import FluxPipeline, FluxTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    from studio.library.clip_tokenizer import PAD_CLIP_L

    torch.manual_seed(seed)
    if full_size:
        transformer = FluxTransformer2DModel(guidance_embeds=True)
        t5 = T5EncoderModel(T5Config(vocab_size=120, d_model=4096, d_kv=64, d_ff=10240,
                                     num_layers=24, num_heads=64,
                                     feed_forward_proj="gated-gelu"))
        clip = _clip(768, 12, "quick_gelu", projection=False)
    else:
        transformer = FluxTransformer2DModel(
            num_layers=2, num_single_layers=4, attention_head_dim=32, num_attention_heads=4,
            joint_attention_dim=256, pooled_projection_dim=128, guidance_embeds=True,
            axes_dims_rope=(8, 12, 12))
        t5 = _t5(256, 2)
        clip = _clip(128, 2, "quick_gelu", projection=False)
    pipe = FluxPipeline(
        transformer=transformer, vae=_vae16("flux", full_size), text_encoder=clip,
        text_encoder_2=t5, tokenizer=clip_tokenizer(dest.parent / f".{dest.name}-tok",
                                                    PAD_CLIP_L),
        tokenizer_2=t5_tokenizer(), scheduler=_scheduler("flux"))
    return _save(pipe, dest)


def _narrow_only(family: str, full_size: bool) -> None:
    if full_size:
        raise SystemExit(f"--family {family}: only the narrow CPU build is written here; "
                         "bench/gpu.py builds it at its real size on a GPU.")


def build_random_chroma(dest: Path, full_size: bool, seed: int = 0) -> Path:
    """Chroma1-HD's architecture, narrow: ChromaTransformer2DModel (FLUX.1's blocks, the
    modulation approximator instead of per-block modulation), a T5 encoder alone, FLUX's VAE."""
    import torch
    from diffusers import ChromaPipeline, ChromaTransformer2DModel

    _narrow_only("chroma", full_size)
    torch.manual_seed(seed)
    transformer = ChromaTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=2, attention_head_dim=32,
        num_attention_heads=4, joint_attention_dim=256, axes_dims_rope=(8, 12, 12),
        approximator_num_channels=16, approximator_hidden_dim=128, approximator_layers=2)
    pipe = ChromaPipeline(transformer=transformer, vae=_vae16("chroma", False),
                          text_encoder=_t5(256, 2), tokenizer=t5_tokenizer(),
                          scheduler=_scheduler("chroma"))
    return _save(pipe, dest)


def build_random_qwen_image(dest: Path, full_size: bool, seed: int = 0) -> Path:
    """Qwen-Image's architecture, narrow: the MMDiT over 2×2-packed 16-channel latents, its
    Wan-style causal 3-D VAE, and a Qwen2.5-VL encoder (a small vision tower included, as the
    class has one; text-to-image reads the language model's last hidden state)."""
    import torch
    from diffusers import AutoencoderKLQwenImage, QwenImagePipeline, QwenImageTransformer2DModel
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    _narrow_only("qwen-image", full_size)
    torch.manual_seed(seed)
    width = 256
    transformer = QwenImageTransformer2DModel(
        patch_size=2, in_channels=64, out_channels=16, num_layers=4, attention_head_dim=32,
        num_attention_heads=4, joint_attention_dim=width, axes_dims_rope=(8, 12, 12))
    vae_cfg = AutoencoderKLQwenImage.load_config(str(ASSETS / "qwen_image" / "vae"))
    vae = AutoencoderKLQwenImage.from_config({**vae_cfg, "base_dim": 32, "num_res_blocks": 1})
    encoder = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(
        text_config={"hidden_size": width, "intermediate_size": width * 3,
                     "num_hidden_layers": 2, "num_attention_heads": width // 32,
                     "num_key_value_heads": width // 64, "vocab_size": 300,
                     "bos_token_id": None, "eos_token_id": 2,
                     "rope_scaling": {"mrope_section": [4, 6, 6], "rope_type": "default",
                                      "type": "default"}},
        vision_config={"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                       "out_hidden_size": width, "patch_size": 14, "spatial_merge_size": 2,
                       "temporal_patch_size": 2, "fullatt_block_indexes": [0],
                       "window_size": 28},
        vocab_size=300, bos_token_id=None, eos_token_id=2, pad_token_id=0)).eval()
    pipe = QwenImagePipeline(transformer=transformer, vae=vae, text_encoder=encoder,
                             tokenizer=qwen_tokenizer(), scheduler=_scheduler("qwen_image"))
    return _save(pipe, dest)


def build_random_z_image(dest: Path, full_size: bool, seed: int = 0) -> Path:
    """Z-Image's architecture, narrow: the single-stream S3-DiT (noise and caption refiners,
    then the joint layers) over FLUX.1's 16-channel VAE latents, a Qwen3 encoder."""
    import torch
    from diffusers import ZImagePipeline, ZImageTransformer2DModel

    _narrow_only("z-image", full_size)
    torch.manual_seed(seed)
    width = 256
    transformer = ZImageTransformer2DModel(
        all_patch_size=(2,), all_f_patch_size=(1,), in_channels=16, dim=256, n_layers=2,
        n_refiner_layers=1, n_heads=4, n_kv_heads=4, cap_feat_dim=width, axes_dims=[16, 24, 24],
        axes_lens=[1024, 512, 512])
    with torch.no_grad():  # made with torch.empty: fixed values keep the model finite
        transformer.x_pad_token.copy_(torch.ones_like(transformer.x_pad_token))
        transformer.cap_pad_token.copy_(torch.ones_like(transformer.cap_pad_token))
    pipe = ZImagePipeline(transformer=transformer, vae=_vae16("z_image", False),
                          text_encoder=_qwen3(width, 2, causal_lm=False),
                          tokenizer=qwen_tokenizer(), scheduler=_scheduler("z_image"))
    return _save(pipe, dest)


def build_random_flux2(dest: Path, full_size: bool, seed: int = 0) -> Path:
    """FLUX.2 klein's architecture, narrow: Flux2Transformer2DModel over the 32-channel VAE's
    2×2-patchified 128-channel tokens, and a Qwen3 causal LM deep enough for the three hidden
    layers klein stacks (9, 18, 27) as its text features; distilled (guidance ignored, one
    pass a step) as klein 4B's shipped model_index says."""
    import torch
    from diffusers import AutoencoderKLFlux2, Flux2KleinPipeline, Flux2Transformer2DModel

    _narrow_only("flux2", full_size)
    torch.manual_seed(seed)
    width = 64
    transformer = Flux2Transformer2DModel(
        patch_size=1, in_channels=128, num_layers=2, num_single_layers=4, attention_head_dim=32,
        num_attention_heads=4, joint_attention_dim=width * 3, timestep_guidance_channels=64,
        axes_dims_rope=(8, 8, 8, 8), guidance_embeds=False)
    vae_cfg = AutoencoderKLFlux2.load_config(str(ASSETS / "flux2_klein" / "vae"))
    vae = AutoencoderKLFlux2.from_config({**vae_cfg, "block_out_channels": [32, 64, 128, 128],
                                          "layers_per_block": 1})
    pipe = Flux2KleinPipeline(transformer=transformer, vae=vae,
                              text_encoder=_qwen3(width, 28, causal_lm=True),
                              tokenizer=qwen_tokenizer(), scheduler=_scheduler("flux2_klein"),
                              is_distilled=True)
    return _save(pipe, dest)
