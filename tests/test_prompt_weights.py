"""A1111's prompt syntax: emphasis, BREAK, prompt editing and alternation.

The parser is checked against the examples A1111 documents in modules/prompt_parser.py; the
weighted conditioning is computed here independently — straight CLIPTextModel calls and A1111's
"Original" emphasis formula written out — and compared with ours.
"""

from __future__ import annotations

import pytest
import torch

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken
from studio.core.requests import Txt2ImgRequest
from studio.pipelines.diffusion.prompt_syntax import parse_attention, prompt_schedule
from studio.pipelines.diffusion.prompts import prepare_prompt_inputs
from studio.pipelines.diffusion.txt2img import Txt2ImgService
from tests.fixtures.sinks import RecordingSink as Sink

# -- the parser, against A1111's documented examples -------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", 1.1)]),
    (r"\(literal\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
    ("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
     [("a ", 1.0), ("house", 1.5730000000000004), (" ", 1.1), ("on", 1.0), (" a ", 1.1),
      ("hill", 0.55), (", sun, ", 1.1), ("sky", 1.4641000000000006), (".", 1.1)]),
    ("((word))", [("word", 1.2100000000000002)]),
    ("[word]", [("word", 1 / 1.1)]),
    ("a BREAK b", [("a", 1.0), ("BREAK", -1), ("b", 1.0)]),
    ("", [("", 1.0)]),
])
def test_attention_matches_a1111(text, expected):
    assert parse_attention(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("test", [(10, "test")]),
    ("a [b:3]", [(3, "a "), (10, "a b")]),
    ("a [b: 3]", [(3, "a "), (10, "a b")]),
    ("a [[[b]]:2]", [(2, "a "), (10, "a [[b]]")]),
    ("[(a:2):3]", [(3, ""), (10, "(a:2)")]),
    ("a [b : c : 1] d", [(1, "a b  d"), (10, "a  c  d")]),
    ("a[b:[c:d:2]:1]e", [(1, "abe"), (2, "ace"), (10, "ade")]),
    ("a [unbalanced", [(10, "a [unbalanced")]),
    ("a [b:.5] c", [(5, "a  c"), (10, "a b c")]),
    ("((a][:b:c [d:3]", [(3, "((a][:b:c "), (10, "((a][:b:c d")]),
    ("[a|(b:1.1)]", [(s, "a" if s % 2 else "(b:1.1)") for s in range(1, 11)]),
    ("[fe|]male", [(s, "female" if s % 2 else "male") for s in range(1, 11)]),
    ("[fe|||]male", [(s, "female" if s % 4 == 1 else "male") for s in range(1, 11)]),
])
def test_schedules_match_a1111(text, expected):
    assert prompt_schedule(text, 10) == expected


def test_chunks_break_at_break_and_wrap_after_a_comma(sd15_pipe):
    from studio.pipelines.diffusion.prompts import weighted_chunks

    tok = sd15_pipe.tokenizer
    a, b, c, comma = (tok.convert_tokens_to_ids(t) for t in ("a</w>", "b</w>", "c</w>", ",</w>"))
    # 60 a, b, comma, 20 c = 82 tokens: full at 75 with the comma 14 tokens back → wraps.
    chunks = weighted_chunks(sd15_pipe, tok, "a " * 60 + "b, " + "(c) " * 20)
    assert [ids for ids, _ in chunks] == [[a] * 60 + [b, comma], [c] * 20]
    assert chunks[1][1] == [1.1] * 20
    # 40 a then a comma 35 tokens back: too far, a plain cut at 75.
    chunks = weighted_chunks(sd15_pipe, tok, "a " * 40 + ", " + "c " * 40)
    assert [len(ids) for ids, _ in chunks] == [75, 6]
    assert [len(ids) for ids, _ in weighted_chunks(sd15_pipe, tok, "BREAK a BREAK")] == [0, 1]


# -- the conditioning, computed independently --------------------------------------------------

def _a1111_chunk(tokenizer, encoder, pieces, pad, penultimate=False):
    """One chunk as A1111 builds it: BOS + weighted tokens + EOS + padding, encoded, each token
    scaled by its weight, then rescaled to the original mean."""
    ids, mults = [tokenizer.bos_token_id], [1.0]
    for text, weight in pieces:
        for token in tokenizer(text, add_special_tokens=False).input_ids:
            ids.append(token)
            mults.append(weight)
    ids.append(tokenizer.eos_token_id)
    mults.append(1.0)
    ids += [pad] * (77 - len(ids))
    mults += [1.0] * (77 - len(mults))
    with torch.no_grad():
        out = encoder(torch.tensor([ids]), output_hidden_states=True)
    z = out.hidden_states[-2] if penultimate else out.last_hidden_state
    original_mean = z.mean()
    z = z * torch.tensor(mults).reshape(1, 77, 1)
    return z * (original_mean / z.mean()), out[0]


def test_sd1_weighted_conditioning_matches_the_formula(sd15_pipe):
    tok, enc = sd15_pipe.tokenizer, sd15_pipe.text_encoder
    pad = tok.pad_token_id
    inputs = prepare_prompt_inputs(sd15_pipe, "sd1", "a (red:1.5) [bicycle] BREAK on a ((hill))",
                                   "(blurry)", "cpu")
    first, _ = _a1111_chunk(tok, enc, [("a ", 1.0), ("red", 1.5), (" ", 1.0),
                                       ("bicycle", 1 / 1.1)], pad)
    second, _ = _a1111_chunk(tok, enc, [("on a ", 1.0), ("hill", 1.1 * 1.1)], pad)
    expected = torch.cat([first, second], dim=1)
    assert inputs.chunks == 2
    assert torch.allclose(inputs.kwargs["prompt_embeds"], expected, atol=1e-6)
    # The negative prompt: weighted too, and padded with an empty chunk (weights 1: unchanged).
    neg, _ = _a1111_chunk(tok, enc, [("blurry", 1.1)], pad)
    empty, _ = _a1111_chunk(tok, enc, [], pad)
    assert torch.allclose(inputs.kwargs["negative_prompt_embeds"],
                          torch.cat([neg, empty], dim=1), atol=1e-6)
    # Escaped brackets are literal text, with weight 1: exactly what diffusers encodes.
    escaped = prepare_prompt_inputs(sd15_pipe, "sd1", r"a \(red\) bicycle", "", "cpu")
    theirs, _ = sd15_pipe.encode_prompt("a (red) bicycle", "cpu", 1, False)
    assert torch.equal(escaped.kwargs["prompt_embeds"], theirs)


def test_sdxl_weights_both_encoders_and_pools_the_first_chunk(sdxl_pipe):
    p = sdxl_pipe
    inputs = prepare_prompt_inputs(p, "sdxl", "a (red:1.3) cube BREAK blue sky", "", "cpu")
    halves = []
    pooled = None
    for tok, enc in ((p.tokenizer, p.text_encoder), (p.tokenizer_2, p.text_encoder_2)):
        pad = tok.pad_token_id
        a, pool = _a1111_chunk(tok, enc, [("a ", 1.0), ("red", 1.3), (" cube", 1.0)], pad,
                               penultimate=True)
        b, _ = _a1111_chunk(tok, enc, [("blue sky", 1.0)], pad, penultimate=True)
        halves.append(torch.cat([a, b], dim=1))
        pooled = pool
    assert torch.allclose(inputs.kwargs["prompt_embeds"], torch.cat(halves, dim=-1), atol=1e-6)
    assert torch.equal(inputs.kwargs["pooled_prompt_embeds"], pooled)
    assert inputs.kwargs["negative_prompt_embeds"].shape == (1, 154, 96)


def test_no_syntax_goes_to_diffusers_as_text(sd15_pipe, sdxl_pipe):
    for pipe, family in ((sd15_pipe, "sd1"), (sdxl_pipe, "sdxl")):
        inputs = prepare_prompt_inputs(pipe, family, "a cat, 4k: sharp", "ugly", "cpu", steps=20)
        assert inputs.kwargs == {"prompt": "a cat, 4k: sharp", "negative_prompt": "ugly"}
        assert inputs.schedule is None


# -- prompt editing through the batch loop -----------------------------------------------------

def _unet_conditionings(pipe):
    seen = []

    def hook(module, args, kwargs):
        seen.append(kwargs["encoder_hidden_states"].clone())

    return seen, pipe.unet.register_forward_pre_hook(hook, with_kwargs=True)


def test_prompt_editing_swaps_the_conditioning_at_a1111_steps(tiny_sd15_dir):
    settings = Settings(device="cpu", precision="fp32", preview_mode="off")
    service = Txt2ImgService(lambda: settings, default_paths)
    req = Txt2ImgRequest(model=str(tiny_sd15_dir), prompt="a [cat:dog:1] [x|y]",
                         negative_prompt="", steps=3, width=64, height=64, cfg=7.0,
                         scheduler="euler")
    pipe = service.cache.get(*_entry_args(req, settings))
    seen, handle = _unet_conditionings(pipe)
    try:
        service.run(req, Sink(), CancelToken())
    finally:
        handle.remove()
    assert len(seen) == 3
    expect = {t: prepare_prompt_inputs(pipe, "sd1", t, "", "cpu").kwargs for t in
              ("a cat x", "a dog y", "a dog x")}

    def enc(text):
        kw = expect[text]
        if "prompt_embeds" in kw:
            return kw["prompt_embeds"]
        return pipe.encode_prompt(text, "cpu", 1, False)[0]

    # A1111: step index i uses the first entry whose last step ≥ i. cat until step 1 (so for
    # steps 0 and 1), alternation x/y by step number 1, 2, 3 → x, x, y.
    for step, text in ((0, "a cat x"), (1, "a cat x"), (2, "a dog y")):
        assert torch.equal(seen[step][1:], enc(text)), step
    assert all(torch.equal(s[:1], seen[0][:1]) for s in seen)  # the negative never changes


def _entry_args(req, settings):
    from studio.core.devices import resolve_dtype
    from studio.library.models import resolve_model
    from studio.pipelines.diffusion.batch import job_device

    paths = default_paths()
    device = job_device(settings)
    return resolve_model(req.model, settings, paths), device, resolve_dtype(settings.precision,
                                                                            device)


def test_syntax_is_stored_verbatim_and_reused(tiny_sd15_dir):
    from studio.media.metadata import read_image_metadata, to_request

    prompt = r"a (red:1.3) [cat:dog:0.5] [x|y] \(literal\) BREAK ((sky))"
    negative = "[blurry], (bad:0.8)"
    settings = Settings(device="cpu", precision="fp32", preview_mode="off")
    req = Txt2ImgRequest(model=str(tiny_sd15_dir), prompt=prompt, negative_prompt=negative,
                         steps=2, width=64, height=64, scheduler="euler")
    (result,) = Txt2ImgService(lambda: settings, default_paths).run(req, Sink(), CancelToken())
    reused = to_request(read_image_metadata(result.path), str(tiny_sd15_dir))
    assert reused is not None
    assert (reused.prompt, reused.negative_prompt) == (prompt, negative)
