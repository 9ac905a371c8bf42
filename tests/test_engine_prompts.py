"""Long prompts: 75-token chunks, as A1111 encodes them, for SD 1.x/2.x and SDXL."""

from __future__ import annotations

import numpy as np
import torch

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken
from studio.core.requests import Txt2ImgRequest
from studio.pipelines.diffusion.prompts import count_tokens, encode_chunks, prepare_prompt_inputs
from studio.pipelines.diffusion.txt2img import Txt2ImgService
from tests.fixtures.sinks import RecordingSink as Sink

LONG = ", ".join(f"detail number {i}" for i in range(25))  # 76..150 tokens: two chunks


def test_short_prompts_go_through_diffusers_unchanged(sd15_pipe):
    inputs = prepare_prompt_inputs(sd15_pipe, "sd1", "a cat", "ugly", "cpu")
    assert inputs.kwargs == {"prompt": "a cat", "negative_prompt": "ugly"}
    assert inputs.warnings == []


def test_one_chunk_encodes_exactly_like_diffusers(sd15_pipe):
    ids = sd15_pipe.tokenizer("a red bicycle", add_special_tokens=False).input_ids
    ours = encode_chunks(sd15_pipe, [ids], "cpu")
    theirs, _ = sd15_pipe.encode_prompt("a red bicycle", "cpu", 1, False)
    assert ours.shape == theirs.shape == (1, 77, 32)
    assert torch.equal(ours, theirs)


def test_long_prompt_is_chunked_and_negative_padded(sd15_pipe):
    assert 75 < count_tokens(sd15_pipe.tokenizer, LONG) <= 150
    inputs = prepare_prompt_inputs(sd15_pipe, "sd1", LONG, "blurry", "cpu")
    assert inputs.chunks == 2 and inputs.warnings == []
    assert inputs.kwargs["prompt_embeds"].shape == (1, 154, 32)
    assert inputs.kwargs["negative_prompt_embeds"].shape == (1, 154, 32)
    # The first chunk is the start of the prompt encoded on its own, up to its last comma
    # (A1111's word wrap: a chunk breaks after a comma within 20 tokens of its end).
    first = sd15_pipe.tokenizer(LONG, add_special_tokens=False).input_ids[:75]
    last_comma = max(i for i, t in enumerate(first)
                     if t == sd15_pipe.tokenizer.convert_tokens_to_ids(",</w>"))
    assert 75 - last_comma <= 20
    first = first[:last_comma + 1]
    assert torch.equal(inputs.kwargs["prompt_embeds"][:, :77], encode_chunks(sd15_pipe, [first],
                                                                             "cpu"))
    # A long negative prompt pads the positive one instead.
    swapped = prepare_prompt_inputs(sd15_pipe, "sd1", "cat", LONG, "cpu")
    assert swapped.kwargs["prompt_embeds"].shape == swapped.kwargs[
        "negative_prompt_embeds"].shape == (1, 154, 32)


def _tails_differ(model_dir, steps):
    """Whether two long prompts that differ only after token 77 give different images."""
    settings = Settings(device="cpu", precision="fp32", preview_mode="off")
    service = Txt2ImgService(lambda: settings, default_paths)
    images = []
    for tail in (", in the style of a pencil sketch", ", under bright neon light"):
        req = Txt2ImgRequest(model=str(model_dir), prompt=LONG + tail, steps=steps, width=64,
                             height=64, seed=9)
        (result,) = service.run(req, Sink(), CancelToken())
        assert result.warnings == []
        images.append(np.asarray(result.image))
    return not np.array_equal(images[0], images[1])


def test_words_after_77_tokens_change_the_sd_image(tiny_sd15_dir):
    assert _tails_differ(tiny_sd15_dir, steps=2)


def test_sdxl_long_prompt_is_chunked_like_a1111(sdxl_pipe, tiny_sdxl_dir):
    # A1111 chunks SDXL prompts too (both encoders); the words after 77 tokens count.
    inputs = prepare_prompt_inputs(sdxl_pipe, "sdxl", LONG + ", UNIQUETAILWORD", "", "cpu")
    assert inputs.chunks == 2 and inputs.warnings == []
    assert inputs.kwargs["prompt_embeds"].shape == (1, 154, 96)
    assert inputs.kwargs["negative_prompt_embeds"].shape == (1, 154, 96)
    assert inputs.kwargs["pooled_prompt_embeds"].shape == (1, 32)
    # The first chunk (and the pooled embedding) is the start of the prompt (up to its last
    # comma, as A1111 wraps words) encoded by diffusers.
    start = LONG[:LONG.rindex(",", 0, LONG.index("detail number 18")) + 1]
    embeds, _, pooled, _ = sdxl_pipe.encode_prompt(start, device="cpu",
                                                   do_classifier_free_guidance=False)
    assert torch.equal(inputs.kwargs["prompt_embeds"][:, :77], embeds)
    assert torch.equal(inputs.kwargs["pooled_prompt_embeds"], pooled)

    assert _tails_differ(tiny_sdxl_dir, steps=1)
