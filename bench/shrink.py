"""Benchmark: "Make smaller" (int8 / int4 / fp8 weight-only) on a random chat model at Qwen2's
architecture, Studio's shrink job beside plain transformers + torchao, in one process.

    python bench/shrink.py                      # CPU: hidden 512, 8 layers, vocab 32000
    python bench/shrink.py --methods int8 --hidden 896 --layers 24 --vocab 151936  # Qwen2-0.5B

The model is ``Qwen2ForCausalLM`` (grouped-query attention, tied embeddings, SwiGLU MLP at
Qwen2-0.5B's width ratio) scaled down, with random weights and the tests' tiny BPE tokenizer
(nothing is downloaded; the vocabulary is padded to ``--vocab`` rows so the embeddings weigh what
they weigh in a real model). Perplexity of random weights is meaningless in itself; its change
is what quantization costs.

Per method, Studio = the ``shrink`` job on the engine (plan, measure the original, quantize and
save, load the copy through Chat's loader, measure it): size ratio and perplexity ratio (the
dialog shows the change); the tokens/s ratio is the median of ``--rounds`` greedy runs of the
original and the copy taken in turn (one run each, as the dialog makes, is noise on a shared
machine). Raw = ``from_pretrained(quantization_config=TorchAoConfig(...))``
then ``save_pretrained``, the two calls the job makes, timed alone; then the raw in-memory
quantized model and Studio's saved-and-reloaded copy are compared: logits (max |difference|, 0
means the safetensors round trip is exact) and tokens/s (medians; Studio's copy / raw's model).

The image section (``--image-methods int8,fp8``; ``--image-methods ''`` skips it, ``--methods ''``
skips the chat one) does the same for an image model: a random SD 1.5-layout pipeline whose UNet
is widened to ``--unet-width`` channels (the text encoder and VAE stay tiny). Studio = the
``image-shrink`` job (sample before, store the UNet, reload through Generate's loader, sample
after): size, UNet bytes and seconds-per-step ratios and the samples' pixel difference. Raw =
``UNet2DConditionModel.from_pretrained`` with ``TorchAoConfig(Int8WeightOnlyConfig())`` (int8), or
``enable_layerwise_casting(float8_e4m3fn)`` (fp8), then ``save_pretrained``, timed alone; Studio's
reloaded UNet against raw's in-memory one: max |output difference| on one input (0: the round
trip is exact) and seconds per UNet call (medians of ``--rounds``; Studio / raw).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_model(folder: Path, hidden: int, layers: int, vocab: int) -> Path:
    """A random Qwen2 with the tiny fixture's tokenizer and chat template."""
    import torch
    from transformers import AutoConfig, Qwen2Config, Qwen2ForCausalLM

    from tests.fixtures.tiny_llama import build_tiny_llama

    build_tiny_llama(folder)  # tokenizer and template; the weights are replaced below
    for f in folder.glob("*.safetensors"):
        f.unlink()
    small = AutoConfig.from_pretrained(folder)
    heads = max(2, hidden // 64)
    config = Qwen2Config(
        vocab_size=max(vocab, small.vocab_size), hidden_size=hidden,
        intermediate_size=(hidden * 4864 // 896) // 64 * 64, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=max(1, heads // 7) if heads >= 7 else 1,
        max_position_embeddings=2048, tie_word_embeddings=True,
        eos_token_id=small.eos_token_id, pad_token_id=small.pad_token_id, bos_token_id=None)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    with torch.no_grad():  # logits less flat than random init's, as in a trained model
        model.model.embed_tokens.weight.mul_(3.0)
        model.model.embed_tokens.weight[config.eos_token_id].mul_(0.0)
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    model.save_pretrained(folder)
    return folder


def studio_shrink(settings, paths, model: Path, method: str, eval_tokens: int,
                  speed_tokens: int):
    """Studio's shrink job on the engine, as the dialog and ``studio models shrink`` run it."""
    from studio.core.shrink_requests import ShrinkRequest
    from studio.pipelines.services import build_engine

    engine = build_engine(lambda: settings, lambda: paths, name="bench-shrink")
    try:
        start = time.perf_counter()
        job = engine.submit(ShrinkRequest(model=str(model), method=method,
                                          eval_tokens=eval_tokens, speed_tokens=speed_tokens))
        engine.wait(job)
        seconds = time.perf_counter() - start
    finally:
        engine.shutdown(wait=True, timeout=30)
    if job.error:
        raise SystemExit(f"{method}: {job.error}")
    return job.result, seconds


def raw_quantize(model: Path, method: str, out: Path):
    """Plain transformers + torchao: quantize while loading, save as safetensors."""
    from transformers import AutoModelForCausalLM, TorchAoConfig

    from studio.pipelines.chat.shrink import torchao_config

    start = time.perf_counter()
    quantized = AutoModelForCausalLM.from_pretrained(
        str(model), dtype="auto", quantization_config=TorchAoConfig(torchao_config(method)))
    quantized.save_pretrained(str(out), safe_serialization=True)
    return quantized, time.perf_counter() - start


def compare(raw_model, original: Path, studio_path: Path, tokenizer, speed_tokens: int,
            rounds: int) -> tuple[float, float, float]:
    """(max |logit difference| of Studio's reloaded copy vs raw's model, tokens/s of the copy /
    the original, of the copy / raw's model). Speeds are medians of ``rounds`` runs taken in
    turn (original, copy, raw), so a busy machine slows all three alike."""
    import statistics

    import torch

    from studio.library.chat_models import chat_entry_for_folder
    from studio.pipelines.chat.loading import LoadOptions, load_chat_model
    from studio.pipelines.chat.shrink import eval_text, tokens_per_second

    def load(folder: Path):
        return load_chat_model(chat_entry_for_folder(folder, "studio"), "cpu",
                               LoadOptions(torch.float32)).model

    first, copy = load(original), load(studio_path)
    ids = tokenizer(eval_text(4000), return_tensors="pt")["input_ids"][:, :256]
    with torch.inference_mode():
        diff = float((copy(ids).logits - raw_model(ids).logits).abs().max())
    speeds: dict[str, list[float]] = {"original": [], "copy": [], "raw": []}
    for _ in range(rounds):
        for name, model in (("original", first), ("copy", copy), ("raw", raw_model)):
            speeds[name].append(tokens_per_second(model, tokenizer, speed_tokens))
    med = {name: statistics.median(values) for name, values in speeds.items()}
    return diff, med["copy"] / med["original"], med["copy"] / med["raw"]


def build_image_model(folder: Path, width: int) -> Path:
    """The tests' tiny SD 1.5 pipeline with a wider UNet (SD 1.5's block layout, 3 levels)."""
    import torch
    from diffusers import UNet2DConditionModel

    from tests.fixtures.tiny_models import build_tiny_sd15

    build_tiny_sd15(folder)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(width, 2 * width, 4 * width), layers_per_block=2, sample_size=32,
        in_channels=4, out_channels=4, cross_attention_dim=32, attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        norm_num_groups=32)
    shutil.rmtree(folder / "unet")
    unet.save_pretrained(folder / "unet", safe_serialization=True)
    return folder


def raw_image_quantize(model: Path, method: str, out: Path):
    """Plain diffusers + torchao (int8) or layer-wise casting (fp8): store the UNet, save it."""
    import torch
    from diffusers import TorchAoConfig, UNet2DConditionModel
    from torchao.quantization import Int8WeightOnlyConfig

    start = time.perf_counter()
    if method == "int8":
        unet = UNet2DConditionModel.from_pretrained(
            str(model), subfolder="unet", torch_dtype=torch.float32,
            quantization_config=TorchAoConfig(Int8WeightOnlyConfig()))
    else:
        unet = UNet2DConditionModel.from_pretrained(str(model), subfolder="unet",
                                                    torch_dtype=torch.float32)
        unet.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn,
                                      compute_dtype=torch.float32)
    unet.save_pretrained(str(out), safe_serialization=True)
    return unet, time.perf_counter() - start


def compare_unets(raw_unet, studio_path: Path, rounds: int, side: int) -> tuple[float, float]:
    """(max |output difference|, seconds per call Studio / raw) of Studio's reloaded UNet (via
    Generate's loader) and raw's in-memory one, on one fixed input."""
    import statistics

    import torch

    from studio.library.models import entry_for_path
    from studio.pipelines.diffusion.loading import load_txt2img_pipeline

    copy = load_txt2img_pipeline(entry_for_path(studio_path, "studio"), "cpu",
                                 torch.float32).unet
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, side // 8, side // 8, generator=gen)
    context = torch.randn(2, 77, 32, generator=gen)
    t = torch.tensor([500, 500])
    times: dict[str, list[float]] = {"copy": [], "raw": []}
    with torch.inference_mode():
        diff = float((copy(x, t, context).sample - raw_unet(x, t, context).sample).abs().max())
        for _ in range(rounds):
            for name, unet in (("copy", copy), ("raw", raw_unet)):
                start = time.perf_counter()
                unet(x, t, context)
                times[name].append(time.perf_counter() - start)
    return diff, statistics.median(times["copy"]) / statistics.median(times["raw"])


def image_section(args, settings, paths, home: Path) -> None:
    from studio.core.shrink_requests import ImageShrinkRequest
    from studio.pipelines.services import build_engine

    model = build_image_model(paths.models_dir / "sd15-random", args.unet_width)
    print(f"\nimage: SD 1.5 layout, UNet width {args.unet_width} (3 levels); sample "
          f"{args.image_size}px, {args.image_steps} steps", flush=True)
    rows = []
    for method in [m.strip() for m in args.image_methods.split(",") if m.strip()]:
        engine = build_engine(lambda: settings, lambda: paths, name="bench-shrink-image")
        try:
            start = time.perf_counter()
            job = engine.submit(ImageShrinkRequest(model=str(model), method=method,
                                                   size=args.image_size,
                                                   steps=args.image_steps))
            engine.wait(job)
            studio_s = time.perf_counter() - start
        finally:
            engine.shutdown(wait=True, timeout=30)
        if job.error:
            raise SystemExit(f"{method}: {job.error}")
        report = job.result
        raw_dir = home / f"raw-unet-{method}"
        raw_unet, raw_s = raw_image_quantize(model, method, raw_dir)
        raw_size = sum(p.stat().st_size for p in raw_dir.glob("*.safetensors"))
        studio_size = sum(p.stat().st_size for p in (report.path / "unet").glob("*.safetensors"))
        diff, speed = compare_unets(raw_unet, report.path, args.rounds, args.image_size)
        b, a = report.before, report.after
        print(f"  {method}: {b.size_bytes / 2**20:.1f} MB → {a.size_bytes / 2**20:.1f} MB, UNet "
              f"{b.denoiser_bytes / 2**20:.1f} → {a.denoiser_bytes / 2**20:.1f} MB in memory, "
              f"{b.seconds_per_step:.3f} → {a.seconds_per_step:.3f} s/step, samples differ by "
              f"{report.pixel_difference:.2f}/255", flush=True)
        rows.append(f"{method:<6} {a.size_bytes / b.size_bytes:>7.3f} "
                    f"{a.denoiser_bytes / b.denoiser_bytes:>7.3f} "
                    f"{a.seconds_per_step / b.seconds_per_step:>7.2f} "
                    f"{report.pixel_difference:>6.2f} │ {studio_s:>8.1f} {raw_s:>6.1f} "
                    f"{raw_size / studio_size:>8.3f} {diff:>10.2e} {speed:>8.2f}")
        shutil.rmtree(raw_dir, ignore_errors=True)
        del raw_unet
    print("\nsize, unet, s/step: the copy / the original (Studio's job; s/step from one sample "
          "each); Δpx: the samples' mean |difference| of 255; studio s: the whole job; raw s: "
          "store + save alone; raw size: raw's UNet file / Studio's; max|Δout| and call S/R: "
          "Studio's reloaded UNet against raw's in-memory one")
    print(f"{'method':<6} {'size':>7} {'unet':>7} {'s/step':>7} {'Δpx':>6} │ {'studio s':>8} "
          f"{'raw s':>6} {'raw size':>8} {'max|Δout|':>10} {'call S/R':>8}")
    for row in rows:
        print(row)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="int8,int4,fp8")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--eval-tokens", type=int, default=512)
    parser.add_argument("--speed-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="speed runs per model (median)")
    parser.add_argument("--image-methods", default="int8,fp8")
    parser.add_argument("--unet-width", type=int, default=128,
                        help="the image model's UNet channels at its first level")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--image-steps", type=int, default=4)
    args = parser.parse_args()
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import torch
    from transformers import AutoTokenizer

    from studio.core.config import Settings, default_paths

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; Qwen2 hidden "
          f"{args.hidden}, {args.layers} layers, vocab {args.vocab}; perplexity on "
          f"{args.eval_tokens} tokens, speed over {args.speed_tokens} greedy tokens")
    with tempfile.TemporaryDirectory(prefix="bench-shrink-") as tmp:
        home = Path(tmp)
        os.environ["STUDIO_HOME"] = str(home / "home")
        settings = Settings(device="cpu")
        paths = settings.resolved_paths(default_paths())
        model = build_model(paths.models_dir / "qwen2-random", args.hidden, args.layers,
                            args.vocab)
        tokenizer = AutoTokenizer.from_pretrained(str(model))
        header = (f"{'method':<6} {'size':>7} {'tok/s':>7} {'ppl ×':>7} │ {'studio s':>8} "
                  f"{'raw s':>6} {'raw size':>8} {'max|Δlogit|':>11} {'tok/s S/R':>9}")
        rows = []
        for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
            report, studio_s = studio_shrink(settings, paths, model, method, args.eval_tokens,
                                             args.speed_tokens)
            raw_dir = home / f"raw-{method}"
            raw_model, raw_s = raw_quantize(model, method, raw_dir)
            raw_size = sum(p.stat().st_size for p in raw_dir.glob("*.safetensors"))
            diff, speed, speed_ratio = compare(raw_model, model, report.path, tokenizer,
                                               args.speed_tokens, args.rounds)
            b, a = report.before, report.after
            rows.append(f"{method:<6} {a.size_bytes / b.size_bytes:>7.3f} "
                        f"{speed:>7.2f} "
                        f"{a.perplexity / b.perplexity:>7.4f} │ {studio_s:>8.1f} {raw_s:>6.1f} "
                        f"{raw_size / a.size_bytes:>8.3f} {diff:>11.2e} {speed_ratio:>9.2f}")
            print(f"  {method}: {b.size_bytes / 2**20:.1f} MB → {a.size_bytes / 2**20:.1f} MB, "
                  f"perplexity {b.perplexity:.2f} → {a.perplexity:.2f}, "
                  f"{b.tokens_per_s:.1f} → {a.tokens_per_s:.1f} tokens/s", flush=True)
            shutil.rmtree(raw_dir, ignore_errors=True)
            del raw_model
        print("\nsize: the copy / the original (Studio's job); tok/s: the same, medians of "
              f"{args.rounds} runs each taken in turn; ppl ×: after / before; "
              "studio s: the whole job (both measurements included); raw s: quantize + save "
              "alone; raw size: raw's file / Studio's; max|Δlogit| and tok/s S/R: Studio's "
              "reloaded copy against raw's in-memory model")
        print(header)
        for row in rows:
            print(row)
        if args.image_methods.strip():
            image_section(args, settings, paths, home)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
