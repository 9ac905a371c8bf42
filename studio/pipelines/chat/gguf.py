"""GGUF chat models through llama-cpp-python (the optional ``gguf`` extra), on the GPU worker.

The same job path as a transformers model: :class:`~studio.pipelines.chat.local.LocalChatBackend`
resolves the spec, and for a ``.gguf`` file loads a ``llama_cpp.Llama`` through a model cache of
its own (:func:`load_gguf_model`) and answers with :func:`generate_gguf`. The prompt is built by
:mod:`~studio.pipelines.chat.prompting` as for any local model — the conversation fitted to the
context, oldest turns left out and counted — over :class:`GGUFTokenizer`, which renders the chat
template stored in the file with llama-cpp's own ``Jinja2ChatFormatter`` (as
``Llama.create_chat_completion`` does) and tokenizes with the model's vocabulary. Tokens come
from ``Llama.generate`` one at a time: each is reported as it is sampled, and Stop ends the
reply right after the token on screen. Temperature, top-p, top-k, repetition penalty and the
seed are llama.cpp's samplers (temperature 0: greedy; no min-p, which Studio does not offer).

llama_cpp is imported only here, inside the functions, so the rest of Studio runs without it.
"""

from __future__ import annotations

import codecs
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from studio.core.jobs import CancelToken, UserFacingError, describe_error
from studio.library.chat_models import VISION_HINT, ChatModelEntry
from studio.library.gguf_models import missing_extra_note
from studio.pipelines.chat.loading import FALLBACK_TEMPLATE, FALLBACK_WARNING, LoadedChatModel
from studio.pipelines.chat.types import ChatChunk, ChatReply, ChatRequest, TokenLogprob

log = logging.getLogger(__name__)


class GGUFTokenizer:
    """What the prompt builder asks of a tokenizer, over llama.cpp's: the GGUF's chat template
    (``apply_chat_template``) and ids for a text (``tokenizer(text)["input_ids"]``)."""

    def __init__(self, llm: Any, template: str) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.llm = llm
        model = llm._model  # the vocabulary's own spelling of BOS/EOS, as Llama itself uses
        bos, eos = llm.token_bos(), llm.token_eos()
        self.chat_template = template
        self.formatter = Jinja2ChatFormatter(
            template=template, bos_token=model.token_get_text(bos) if bos >= 0 else "",
            eos_token=model.token_get_text(eos) if eos >= 0 else "", stop_token_ids=[eos])

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True,
                            tokenize: bool = False, continue_final_message: bool = False) -> str:
        """The conversation in the GGUF's template; ``continue_final_message`` leaves the last
        message (a reply's beginning) open, cut right after its text as transformers does."""
        self.formatter.add_generation_prompt = add_generation_prompt
        text = self.formatter(messages=cast(Any, messages)).prompt
        if continue_final_message:
            final = str(messages[-1]["content"]).strip()
            end = text.rfind(final) if final else -1
            if end < 0:
                raise ValueError("the template does not write the reply's beginning as given")
            text = text[:end + len(final)]
        return text

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        if add_special_tokens:  # a raw text (Complete mode): as llama.cpp reads a prompt
            ids = self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
        else:  # a rendered template: its special tokens are tokens; it wrote BOS itself
            ids = self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        return {"input_ids": list(ids)}


def gpu_layers(device: str) -> int:
    """Every layer on the GPU when the installed llama.cpp was built for one (CUDA, Metal) and
    Studio runs on it; none otherwise."""
    import llama_cpp

    return -1 if device != "cpu" and llama_cpp.llama_supports_gpu_offload() else 0


def estimate_bytes(path: Path, _options: object) -> int:
    """A GGUF's weights take what its file does (they are read as stored, quantized)."""
    return Path(path).stat().st_size


def load_gguf_model(entry: ChatModelEntry, device: str,
                    options: tuple[int, int]) -> LoadedChatModel:
    """``llama_cpp.Llama`` for ``entry`` (what the model cache calls); ``options`` are the
    context in tokens and the layers put on the GPU (part of the cache's key)."""
    missing = missing_extra_note(entry.name)
    if missing:
        raise UserFacingError(missing)
    import llama_cpp

    try:
        llm = llama_cpp.Llama(str(entry.path), n_ctx=options[0], n_gpu_layers=options[1],
                              verbose=False)
    except (ValueError, RuntimeError, OSError) as exc:
        raise UserFacingError(
            f"{entry.name} cannot be loaded by the installed llama.cpp (llama-cpp-python "
            f"{llama_cpp.__version__}): either its architecture ({entry.architecture}) is newer "
            "than this llama.cpp knows — 'pip install -U llama-cpp-python' updates it — or the "
            f"file is damaged, then download it again. ({describe_error(exc)[:160]})") from exc
    template = str(llm.metadata.get("tokenizer.chat_template") or "")
    warnings: list[str] = []
    if not template:
        template = FALLBACK_TEMPLATE
        warnings.append(FALLBACK_WARNING.format(name=entry.name))
    log.info("loaded GGUF model %s (%s, context %d, %s GPU layers)", entry.name,
             entry.quantized, llm.n_ctx(), options[1])
    return LoadedChatModel(llm, GGUFTokenizer(llm, template), llm.n_ctx(), device, entry.name,
                           warnings, gguf=True)


def refuse(loaded: LoadedChatModel, what: str) -> None:
    """A job a GGUF model cannot do through llama.cpp here, refused with a sentence."""
    if loaded.gguf:
        raise UserFacingError(f"{what} come from transformers models only; {loaded.name} is a "
                              "GGUF model (llama.cpp). Choose a model folder for this.")


class _Logprobs:
    """A sampled token's log-probability and the top alternatives, from the logits llama.cpp
    sampled it from (the context's last row, still there when ``Llama.generate`` hands the
    token over): the log-softmax of the raw logits, before temperature or top-k/top-p."""

    def __init__(self, llm: Any, top: int) -> None:
        self.llm = llm
        self.top = top
        self.n_vocab = llm.n_vocab()

    def _text(self, token: int) -> str:
        return self.llm.detokenize([token]).decode("utf-8", errors="replace")

    def token(self, token: int) -> TokenLogprob:
        import llama_cpp
        import numpy as np

        row = llama_cpp.llama_get_logits_ith(self.llm._ctx.ctx, -1)
        logits = np.ctypeslib.as_array(row, shape=(self.n_vocab,)).astype(np.float64)
        shifted = logits - logits.max()
        logp = shifted - np.log(np.exp(shifted).sum())
        best: list[int] = np.argsort(-logp, kind="stable")[:self.top].tolist() if self.top else []
        return TokenLogprob(self._text(token), float(logp[token]),
                            [(self._text(int(i)), float(logp[i])) for i in best], int(token))


def _sampling(request: ChatRequest) -> dict[str, Any]:
    if request.temperature <= 0:  # greedy, as transformers' do_sample=False
        return dict(temp=0.0, top_k=1, top_p=1.0, min_p=0.0,
                    repeat_penalty=request.repetition_penalty)
    return dict(temp=request.temperature, top_k=request.top_k, top_p=request.top_p, min_p=0.0,
                repeat_penalty=request.repetition_penalty)


def generate_gguf(loaded: LoadedChatModel, request: ChatRequest, cancel: CancelToken,
                  on_chunk: Callable[[ChatChunk], None]) -> ChatReply:
    """One reply from a GGUF model, ``on_chunk`` called for every token (see the module)."""
    import llama_cpp

    from studio.pipelines.chat.prompting import complete_prompt, fit_conversation

    if not request.complete and any(m.get("images") for m in request.messages):
        raise UserFacingError(f"{loaded.name} reads text only, so it cannot see the image. "
                              f"{VISION_HINT}")
    started = time.perf_counter()
    if request.complete:
        prompt = complete_prompt(loaded.tokenizer, request.prompt_text(),
                                 loaded.context_length, request.max_new_tokens)
        warnings = list(prompt.warnings)
    else:
        prompt = fit_conversation(loaded.tokenizer, request.messages, loaded.context_length,
                                  request.max_new_tokens)
        warnings = list(loaded.warnings) + prompt.warnings
    llm = loaded.model
    llm.set_seed(request.seed if request.seed is not None else random.randrange(2**31))
    vocab = llm._model.vocab
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pieces: list[str] = []
    n, first = 0, 0.0
    probe = _Logprobs(llm, request.logprobs) if request.logprobs is not None else None
    logprobs: list[TokenLogprob] = []

    def chunk(text: str, finish: str | None = None, error: str = "",
              scored: list[TokenLogprob] | None = None) -> ChatChunk:
        return ChatChunk(text=text, completion_tokens=n, prompt_tokens=len(prompt.input_ids),
                         finish_reason=finish, error=error,
                         dropped_messages=prompt.dropped_messages, warnings=warnings,
                         conversation_tokens=prompt.conversation_tokens, logprobs=scored or [])

    finish, error = "length", ""
    tokens = llm.generate(prompt.input_ids, reset=True, **_sampling(request))
    try:
        for token in tokens:
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                finish = "stop"
                break
            n += 1
            if n == 1:
                first = time.perf_counter() - started
            scored = [probe.token(token)] if probe is not None else None
            logprobs.extend(scored or [])
            text = decoder.decode(llm.detokenize([token]))
            pieces.append(text)
            on_chunk(chunk(text, scored=scored))
            if cancel.cancelled:
                finish = "cancelled"
                break
            if n >= prompt.max_new_tokens:
                break
    except Exception as exc:  # noqa: BLE001 - the text so far is kept (errors are data)
        if n == 0:
            raise UserFacingError(f"{loaded.name} could not answer: "
                                  f"{describe_error(exc)}") from exc
        finish, error = "error", describe_error(exc)
    finally:
        tokens.close()
    tail = decoder.decode(b"", final=True)
    pieces.append(tail)
    on_chunk(chunk(tail, finish, error))
    return ChatReply(text="".join(pieces), completion_tokens=n,
                     prompt_tokens=len(prompt.input_ids), finish_reason=finish,
                     seconds=time.perf_counter() - started, time_to_first_token=first,
                     dropped_messages=prompt.dropped_messages, warnings=warnings,
                     conversation_tokens=prompt.conversation_tokens, logprobs=logprobs)

