"""Benchmark: the model library's scan, and generating again with a model still in memory.

1. Scan. A Hugging Face hub cache of ``--models`` repos (default 200), laid out as
   ``hf_hub_download`` writes it (``models--org--name/{blobs, snapshots/<rev>/… → ../../blobs/…,
   refs/main}``) in a temporary ``HF_HOME``: diffusers pipelines (SD 1.5, SD 2, SDXL: model_index,
   configs, safetensors), single-file checkpoints, chat models (``LlamaForCausalLM``), kohya
   LoRAs and CycleGAN ``.pth`` generators. Safetensors headers are real (the tensor names, shapes
   and byte ranges of the real architectures, built on torch's meta device); the data after them
   is a sparse file of the right length, so the cache "holds" hundreds of GB on no disk. Times
   ``studio.library.catalog.list_models`` (what the Models workspace shows) against
   ``huggingface_hub.scan_cache_dir`` on the same cache, warm, alternating, medians.
   scan_cache_dir does less: it lists repos, revisions and files, but detects no kind, reads no
   header and finds nothing outside the hub cache.
2. Switch back. Two small SD pipelines A and B; ``Txt2ImgService`` generates with A, then B, then
   A again. Printed per generation: the total time, the time spent in the model cache's ``get``
   (reading the model, or finding it in memory) and whether a model was read from disk. With a
   memory budget that holds both (``--budget-gb``, 0 = automatic), the third generation loads
   nothing. Plain diffusers has no cache: switching back there means ``from_pretrained`` again.
3. Unreachable Hub. ``plan_download`` (what the Download dialog asks first) with ``HF_ENDPOINT``
   on a closed local port: the time until the "Cannot reach" message (one refused connection; the
   test checks there is no retry, this shows the time).

    python bench/library.py                            # 200 models, tiny pipelines (< 1 min)
    python bench/library.py --models 1000 --size narrow --budget-gb 8
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import statistics
import struct
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONFIGS = Path(__file__).resolve().parents[1] / "assets" / "configs"
REPO_KINDS = ("diffusers", "single-file", "chat", "lora", "cyclegan")
_DTYPE_BYTES = {"F16": 2, "BF16": 2, "F32": 4}


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set environment variables for the block, and put the old values back after it."""
    old = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# -- 1. a synthetic hub cache ------------------------------------------------------------------


def _shapes(module: Any) -> dict[str, list[int]]:
    return {name: list(t.shape) for name, t in module.state_dict().items()}


class Architectures:
    """Tensor names and shapes of the real architectures, from their configs on the meta device
    (no memory, no weights), computed once and shared by every synthetic model."""

    def __init__(self) -> None:
        import torch
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import (
            CLIPTextConfig,
            CLIPTextModel,
            CLIPTextModelWithProjection,
            LlamaConfig,
            LlamaForCausalLM,
        )

        self.diffusers: dict[str, dict[str, dict[str, list[int]]]] = {}
        with torch.device("meta"):
            for family in ("sd15", "sd2", "sdxl"):
                folder = CONFIGS / family
                parts = {
                    "unet": _shapes(UNet2DConditionModel.from_config(
                        UNet2DConditionModel.load_config(str(folder / "unet")))),
                    "vae": _shapes(AutoencoderKL.from_config(
                        AutoencoderKL.load_config(str(folder / "vae")))),
                    "text_encoder": _shapes(CLIPTextModel(
                        CLIPTextConfig.from_pretrained(str(folder / "text_encoder")))),
                }
                if (folder / "text_encoder_2").is_dir():
                    parts["text_encoder_2"] = _shapes(CLIPTextModelWithProjection(
                        CLIPTextConfig.from_pretrained(str(folder / "text_encoder_2"))))
                self.diffusers[family] = parts
            # SmolLM2-360M's shape: 32 layers, 960 wide, grouped-query attention.
            self.chat_config = LlamaConfig(
                hidden_size=960, intermediate_size=2560, num_hidden_layers=32,
                num_attention_heads=15, num_key_value_heads=5, vocab_size=49152,
                max_position_embeddings=8192, tie_word_embeddings=True)
            self.chat = _shapes(LlamaForCausalLM(self.chat_config))
        self.single_file = {family: self._ldm(family) for family in ("sd15", "sdxl")}
        self.lora = self._kohya_lora(self.diffusers["sd15"]["unet"], rank=32)

    def _ldm(self, family: str) -> dict[str, list[int]]:
        """An original-layout (LDM) checkpoint: as many tensors as the real one, under the prefixes
        and with the cross-attention key the library's detection reads."""
        parts = self.diffusers[family]
        out = {f"model.diffusion_model.{k}": s for k, s in parts["unet"].items()}
        out.update({f"first_stage_model.{k}": s for k, s in parts["vae"].items()})
        if family == "sdxl":
            out.update({f"conditioner.embedders.0.transformer.{k}": s
                        for k, s in parts["text_encoder"].items()})
            out.update({f"conditioner.embedders.1.model.{k}": s
                        for k, s in parts["text_encoder_2"].items()})
        else:
            out.update({f"cond_stage_model.transformer.{k}": s
                        for k, s in parts["text_encoder"].items()})
            key = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
            out[key] = [320, 768]
        return out

    @staticmethod
    def _kohya_lora(unet: dict[str, list[int]], rank: int) -> dict[str, list[int]]:
        """A kohya LoRA over every attention projection of the UNet (down, up and alpha)."""
        out: dict[str, list[int]] = {}
        for name, shape in unet.items():
            if ".attn" not in name or not name.endswith(("to_q.weight", "to_k.weight",
                                                         "to_v.weight", "to_out.0.weight")):
                continue
            base = "lora_unet_" + name.removesuffix(".weight").replace(".", "_")
            out[f"{base}.lora_down.weight"] = [rank, shape[1]]
            out[f"{base}.lora_up.weight"] = [shape[0], rank]
            out[f"{base}.alpha"] = []
        return out


def safetensors_header(shapes: dict[str, list[int]], dtype: str = "F16") -> tuple[bytes, int]:
    """(the 8-byte length + JSON header of a safetensors file, the byte length of its data)."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in shapes.items():
        n = _DTYPE_BYTES[dtype]
        for dim in shape:
            n *= dim
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the format pads the header to 8 bytes
    return struct.pack("<Q", len(raw)) + raw, offset


class HubRepo:
    """One repo of the cache: content in ``blobs/``, the snapshot's files as relative links."""

    def __init__(self, hub: Path, repo_id: str) -> None:
        self.repo_id = repo_id
        self.root = hub / f"models--{repo_id.replace('/', '--')}"
        self.revision = hashlib.sha1(repo_id.encode()).hexdigest()
        self.snapshot = self.root / "snapshots" / self.revision
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)
        self.snapshot.mkdir(parents=True, exist_ok=True)
        (self.root / "refs").mkdir(exist_ok=True)
        (self.root / "refs" / "main").write_text(self.revision)

    def add(self, rel: str, write: Callable[[Path], None]) -> None:
        blob = self.root / "blobs" / hashlib.sha256(f"{self.repo_id}/{rel}".encode()).hexdigest()
        write(blob)
        link = self.snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)

    def add_text(self, rel: str, text: str) -> None:
        self.add(rel, lambda p: p.write_text(text, encoding="utf-8"))

    def add_json(self, rel: str, data: dict) -> None:
        self.add_text(rel, json.dumps(data, indent=1))

    def add_safetensors(self, rel: str, header: tuple[bytes, int]) -> None:
        head, data_len = header

        def write(path: Path) -> None:
            with open(path, "wb") as fh:
                fh.write(head)
                fh.truncate(len(head) + data_len)  # sparse: the data takes no disk

        self.add(rel, write)


def _diffusers_repo(repo: HubRepo, family: str, headers: dict[str, tuple[bytes, int]]) -> None:
    folder = CONFIGS / family
    repo.add_text("model_index.json", (folder / "model_index.json").read_text(encoding="utf-8"))
    for config in sorted(folder.rglob("*.json")):
        rel = config.relative_to(folder).as_posix()
        if rel != "model_index.json":
            repo.add_text(rel, config.read_text(encoding="utf-8"))
    for part, header in headers.items():
        name = "diffusion_pytorch_model" if part in ("unet", "vae") else "model"
        repo.add_safetensors(f"{part}/{name}.safetensors", header)
    for tok in ("tokenizer",) + (("tokenizer_2",) if family == "sdxl" else ()):
        repo.add_json(f"{tok}/vocab.json", {"<|startoftext|>": 49406, "<|endoftext|>": 49407})
        repo.add_text(f"{tok}/merges.txt", "#version: 0.2\n")
    repo.add_text("README.md", f"# {repo.repo_id}\n")


def _chat_repo(repo: HubRepo, arch: Architectures, header: tuple[bytes, int]) -> None:
    config = arch.chat_config.to_dict()
    config.update(architectures=["LlamaForCausalLM"], dtype="bfloat16")
    repo.add_json("config.json", config)
    repo.add_json("generation_config.json", {"bos_token_id": 1, "eos_token_id": 2})
    repo.add_json("tokenizer_config.json", {"chat_template": "{{ messages }}",
                                            "eos_token": "<|im_end|>"})
    repo.add_json("tokenizer.json", {"version": "1.0", "model": {"type": "BPE", "vocab": {}}})
    repo.add_safetensors("model.safetensors", header)
    repo.add_text("README.md", f"# {repo.repo_id}\n")


def build_hub_cache(hub: Path, count: int) -> Counter:
    """Write ``count`` repos into ``hub`` (kinds in turn); returns how many of each kind."""
    import torch

    from studio.pipelines.cyclegan.model import GeneratorSpec, build_generator

    arch = Architectures()
    headers = {family: {part: safetensors_header(shapes) for part, shapes in parts.items()}
               for family, parts in arch.diffusers.items()}
    single = {family: safetensors_header(shapes) for family, shapes in arch.single_file.items()}
    chat = safetensors_header(arch.chat, "BF16")
    lora = safetensors_header(arch.lora)
    # A real generator's key layout (9 residual blocks) at a tiny width: the pickle is what the
    # scan reads, and it does not depend on the width.
    generator = build_generator(GeneratorSpec(3, 3, 4, 9), fixed_norm=False).state_dict()
    families = ("sd15", "sd2", "sdxl")
    made: Counter = Counter()
    for i in range(count):
        kind = REPO_KINDS[i % len(REPO_KINDS)]
        family = families[(i // len(REPO_KINDS)) % len(families)]
        repo = HubRepo(hub, f"bench-{kind}/model-{i:04d}")
        if kind == "diffusers":
            _diffusers_repo(repo, family, headers[family])
        elif kind == "single-file":
            name = "sdxl" if family == "sdxl" else "sd15"
            repo.add_safetensors(f"{name}-model-{i:04d}.safetensors", single[name])
        elif kind == "chat":
            _chat_repo(repo, arch, chat)
        elif kind == "lora":
            repo.add_safetensors(f"lora-{i:04d}.safetensors", lora)
        else:
            repo.add("latest_net_G.pth", lambda p: torch.save(generator, p))
        made[kind] += 1
    return made


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


@contextlib.contextmanager
def _counting_hub_scans() -> Iterator[list[int]]:
    """Count calls of ``huggingface_hub.scan_cache_dir`` (the library imports it when called)."""
    import huggingface_hub

    real, calls = huggingface_hub.scan_cache_dir, [0]

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return real(*args, **kwargs)

    huggingface_hub.scan_cache_dir = counted
    try:
        yield calls
    finally:
        huggingface_hub.scan_cache_dir = real


def run_scan_bench(count: int, rounds: int, workdir: Path) -> dict[str, Any]:
    """Build the cache under ``workdir`` and time both scans; returns medians and what was seen."""
    from huggingface_hub import scan_cache_dir

    from studio.core.config import Settings, default_paths
    from studio.library.catalog import list_models

    hf_home = workdir / "hf-home"
    hub = hf_home / "hub"
    start = time.perf_counter()
    made = build_hub_cache(hub, count)
    build_s = time.perf_counter() - start
    with environment(HF_HOME=str(hf_home), HF_HUB_CACHE=str(hub),
                     STUDIO_HOME=str(workdir / "studio-home"), HF_HUB_OFFLINE="1"):
        settings, paths = Settings(), default_paths()
        from studio.library import cyclegan_models, detect

        detect._header_cache.clear()  # the first scan after a start reads every header (and
        # works out each file's precision, family and kind from it)…
        cyclegan_models._pth_cache.clear()  # …and lists every pickle's strings
        with _counting_hub_scans() as hub_scans:  # counting list_models' own scans
            cold_s, entries = _timed(lambda: list_models(settings, paths))
        info = scan_cache_dir(hub)
        studio_t, raw_t = [], []
        for _ in range(rounds):
            t, entries = _timed(lambda: list_models(settings, paths))
            studio_t.append(t)
            t, info = _timed(lambda: scan_cache_dir(hub))
            raw_t.append(t)
    studio_s, raw_s = statistics.median(studio_t), statistics.median(raw_t)
    return {"models": count, "made": made, "build_s": build_s, "studio_s": studio_s,
            "cold_s": cold_s,
            "raw_s": raw_s, "ratio": studio_s / raw_s, "listed": len(entries),
            "kinds": Counter(e.kind for e in entries), "hub_repos": len(info.repos),
            "hub_scans": hub_scans[0],
            "size_on_disk": info.size_on_disk, "warnings": len(info.warnings)}


def print_scan(result: dict[str, Any], rounds: int) -> None:
    n = result["models"]
    made = ", ".join(f"{v} {k}" for k, v in sorted(result["made"].items()))
    print(f"library scan: {n} models in a synthetic Hugging Face cache ({made}; "
          f"{result['size_on_disk'] / 1e9:.0f} GB of sparse files, built in "
          f"{result['build_s']:.1f} s), {rounds} alternating warm rounds, medians")
    print(f"  studio list_models      {result['studio_s'] * 1000:8.1f} ms   "
          f"{result['studio_s'] / n * 1000:.2f} ms per model   {result['listed']} entries: "
          + ", ".join(f"{v} {k}" for k, v in sorted(result["kinds"].items())))
    print(f"  studio, first scan      {result['cold_s'] * 1000:8.1f} ms   "
          f"{result['cold_s'] / n * 1000:.2f} ms per model   (every safetensors header read; "
          "later scans reuse unchanged files' headers and what was worked out from them)")
    print(f"  huggingface scan_cache  {result['raw_s'] * 1000:8.1f} ms   "
          f"{result['raw_s'] / n * 1000:.2f} ms per model   {result['hub_repos']} repos")
    print(f"  ratio studio/raw = {result['ratio']:.2f}  (scan_cache_dir does less: no kind "
          "detection, no headers read, no studio/extra folders; list_models calls it "
          f"{result['hub_scans']} times itself)")


# -- 2. switching back to a model still in the cache --------------------------------------------


def build_pipeline(dest: Path, size: str, seed: int) -> Path:
    """A small random SD 1.5-layout pipeline: ``tiny`` as the tests' fixture, ``narrow`` as
    bench/txt2img.py's (the real text encoder and a narrower UNet/VAE)."""
    if size == "tiny":
        from tests.fixtures.tiny_models import build_tiny_sd15

        return build_tiny_sd15(dest, seed=seed)
    from bench.txt2img import build_random_sd15

    return build_random_sd15(dest, full_size=False, seed=seed)


def run_switch_bench(size: str, budget_gb: float, rounds: int, workdir: Path) -> dict[str, Any]:
    """Generate with A, B, A through one Txt2ImgService (``rounds`` times, from an empty cache
    each time; medians); and switching back to A in plain diffusers."""
    import torch
    from diffusers import StableDiffusionPipeline

    from studio.core.config import Settings, default_paths
    from studio.core.jobs import CancelToken
    from studio.core.requests import Txt2ImgRequest
    from studio.pipelines.diffusion.txt2img import Txt2ImgService

    side, steps = (64, 2) if size == "tiny" else (128, 4)
    with environment(STUDIO_HOME=str(workdir / "studio-home"), HF_HUB_OFFLINE="1"):
        models = {"A": build_pipeline(workdir / "model-a", size, 0),
                  "B": build_pipeline(workdir / "model-b", size, 1)}
        settings = Settings(device="cpu", precision="fp32", preview_mode="off",
                            memory_budget_gb=budget_gb)

        def raw_generate() -> tuple[float, float]:
            """(from_pretrained, generate) seconds: what switching back costs in diffusers."""
            load, pipe = _timed(lambda: StableDiffusionPipeline.from_pretrained(
                str(models["A"]), dtype=torch.float32, safety_checker=None,
                requires_safety_checker=False, local_files_only=True))
            pipe.set_progress_bar_config(disable=True)
            gen, _ = _timed(lambda: pipe("a lighthouse at dusk", num_inference_steps=steps,
                                         width=side, height=side,
                                         generator=torch.Generator("cpu").manual_seed(1)))
            return load, gen

        raw_generate()  # warm-up: the process's first generation pays one-time costs (both sides)
        service = Txt2ImgService(lambda: settings, default_paths)
        cache = service.cache
        in_cache: list[float] = []
        real_get = cache.get

        def timed_get(*args: Any, **kwargs: Any) -> Any:
            t, model = _timed(lambda: real_get(*args, **kwargs))
            in_cache.append(t)
            return model

        cache.get = timed_get  # this instance only: the time spent finding or reading a model
        runs: dict[int, list[dict[str, float]]] = {0: [], 1: [], 2: []}
        raw: list[tuple[float, float]] = []
        for _ in range(rounds):
            cache.unload_all()  # each round starts with nothing in memory
            for position, label in enumerate(("A", "B", "A")):
                request = Txt2ImgRequest(model=str(models[label]), prompt="a lighthouse at dusk",
                                         steps=steps, width=side, height=side, seed=1)
                loads, in_cache[:] = cache.loads, []
                total, _ = _timed(lambda request=request: service.run(request, _Quiet(),
                                                                      CancelToken()))
                runs[position].append({"total_s": total, "load_s": sum(in_cache),
                                       "loaded": cache.loads - loads})
            raw.append(raw_generate())
        cache.unload_all()
    rows = [{"model": label, "loaded": sum(r["loaded"] for r in runs[i]),
             "total_s": statistics.median(r["total_s"] for r in runs[i]),
             "load_s": statistics.median(r["load_s"] for r in runs[i])}
            for i, label in enumerate(("A", "B", "A"))]
    raw_load = statistics.median(load for load, _ in raw)
    raw_total = statistics.median(load + gen for load, gen in raw)
    return {"size": size, "side": side, "steps": steps, "budget_gb": _budget_gb(settings),
            "rounds": rounds, "rows": rows, "raw_load_s": raw_load, "raw_total_s": raw_total}


def _budget_gb(settings: Any) -> float | None:
    """The memory budget in force, where the model cache has one (None before it did)."""
    from studio.pipelines import model_cache

    budget = getattr(model_cache, "budget_bytes", None)
    return budget(settings) / 2**30 if budget is not None else None


class _Quiet:
    """A progress sink that drops everything."""

    def __call__(self, step: int, total: int, preview: object = None) -> None:
        pass

    def partial(self, result: object) -> None:
        pass

    def message(self, text: str) -> None:
        pass


def print_switch(result: dict[str, Any]) -> None:
    budget, rounds = result["budget_gb"], result["rounds"]
    where = "no budget (this cache keeps one model)" if budget is None else \
        f"memory budget {budget:.3g} GB"
    print(f"switch back: {result['size']} SD 1.5 pipelines A and B, {result['side']}x"
          f"{result['side']}, {result['steps']} steps, CPU fp32, {where}; after a warm-up "
          f"generation, {rounds} rounds from an empty cache, medians")
    for n, row in enumerate(result["rows"], 1):
        print(f"  {n}. generate with {row['model']}: total {row['total_s']:6.3f} s   in the "
              f"model cache {row['load_s']:6.3f} s   (read from disk in {row['loaded']} of "
              f"{rounds} rounds)")
    third = result["rows"][2]
    verdict = "A was NOT reloaded" if not third["loaded"] else "A WAS RELOADED"
    print(f"  {verdict}; plain diffusers switching back: from_pretrained {result['raw_load_s']:.3f}"
          f" s, with the generation {result['raw_total_s']:.3f} s; ratio studio/raw = "
          f"{third['total_s'] / result['raw_total_s']:.2f}")


def quiet_libraries() -> None:
    """No progress bars or deprecation chatter from the libraries between the results."""
    import warnings

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore", category=FutureWarning)
    import diffusers.utils.logging
    import huggingface_hub.utils

    huggingface_hub.utils.disable_progress_bars()
    diffusers.utils.logging.disable_progress_bar()


def measure_unreachable_hub(rounds: int) -> float:
    """Median seconds until ``plan_download`` says the Hub cannot be reached (closed port)."""
    import socket

    from huggingface_hub import constants

    from studio.core.jobs import UserFacingError
    from studio.library import hub_download as hd

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    times = []
    offline = constants.HF_HUB_OFFLINE
    with environment(HF_ENDPOINT=f"http://127.0.0.1:{port}", HF_HUB_OFFLINE="0"):
        constants.HF_HUB_OFFLINE = False
        try:
            for _ in range(rounds):
                start = time.perf_counter()
                try:
                    hd.plan_download("tiny/llama-chat", fp16=False, timeout=3)
                except UserFacingError as exc:
                    if "Cannot reach" not in str(exc):
                        raise
                times.append(time.perf_counter() - start)
        finally:
            constants.HF_HUB_OFFLINE = offline
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=200,
                        help="repos in the synthetic Hugging Face cache (default 200)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="timed rounds of each part (default 3)")
    parser.add_argument("--size", choices=("tiny", "narrow"), default="tiny",
                        help="the two pipelines of the switch-back run (default tiny)")
    parser.add_argument("--budget-gb", type=float, default=0.0,
                        help="Settings.memory_budget_gb for the switch-back run (0 = automatic)")
    parser.add_argument("--skip", choices=("scan", "switch", "hub"), action="append", default=[],
                        help="leave a part out (repeatable)")
    args = parser.parse_args(argv)
    if args.models < len(REPO_KINDS) or args.rounds < 1:
        parser.error(f"--models must be at least {len(REPO_KINDS)} and --rounds at least 1")
    quiet_libraries()
    with tempfile.TemporaryDirectory(prefix="studio-bench-library-") as tmp:
        if "scan" not in args.skip:
            print_scan(run_scan_bench(args.models, args.rounds, Path(tmp) / "scan"), args.rounds)
        if "switch" not in args.skip:
            print_switch(run_switch_bench(args.size, args.budget_gb, args.rounds,
                                          Path(tmp) / "switch"))
        if "hub" not in args.skip:
            print(f"unreachable Hub (closed port): 'Cannot reach' after "
                  f"{measure_unreachable_hub(args.rounds) * 1e3:.1f} ms (median of {args.rounds})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
