"""The local chat backend: transformers ``generate`` on the GPU worker, streamed token by token.

One hook does the streaming and the stopping: a ``StoppingCriteria`` that ``generate`` calls
after every new token. It decodes the token, hands the new text to ``on_chunk`` and answers
"stop" when the cancel token is set — so Stop pressed while token N is shown ends generation
right after token N, with no helper thread and no run-ahead. The call itself is plain
``model.generate``, so a greedy reply equals plain transformers token for token.

Token probabilities (``request.logprobs``) come from a forward hook on the model that keeps the
last position's raw logits of each forward pass — the distribution the next token was chosen
from — so ``generate`` runs unchanged; without ``logprobs`` no hook is attached at all.

:meth:`LocalChatBackend.generate` is that synchronous core (the job handler uses it);
:meth:`LocalChatBackend.stream` wraps it in an iterator for callers that want one (``studio
serve``, the benchmark), running the core on a helper thread.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from studio.core.config import Paths, Settings
from studio.core.jobs import (
    CancelToken,
    JobCancelled,
    UserFacingError,
    checked,
    describe_error,
)
from studio.pipelines.chat import gguf  # no llama_cpp at import: only its functions need it
from studio.pipelines.chat.types import (
    AttentionMap,
    AttentionRequest,
    ChatChunk,
    ChatReply,
    ChatRequest,
    Embeddings,
    EmbedRequest,
    TokenLogprob,
)
from studio.pipelines.model_cache import ModelCache

if TYPE_CHECKING:
    from transformers import StoppingCriteria

    from studio.library.chat_models import ChatModelEntry
    from studio.pipelines.chat.loading import LoadedChatModel

ChunkCallback = Callable[[ChatChunk], None]


class _EitherCancel:
    """Cancelled when the caller's token is, or when the consumer of a stream went away."""

    def __init__(self, outer: CancelToken) -> None:
        self.outer = outer
        self.inner = CancelToken()

    @property
    def cancelled(self) -> bool:
        return self.outer.cancelled or self.inner.cancelled


class _Decoder:
    """Incremental detokenizer: new text per token, holding back incomplete UTF-8 sequences."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.cache: list[int] = []
        self.printed = 0

    def push(self, token: int) -> str:
        self.cache.append(token)
        text = self.tokenizer.decode(self.cache, skip_special_tokens=True)
        if text.endswith("\ufffd") or len(text) < self.printed:
            return ""  # the rest of a multi-byte character is still to come
        new = text[self.printed:]
        self.printed = len(text)
        if text.endswith("\n"):  # restart the window so decoding stays cheap on long replies
            self.cache, self.printed = [], 0
        return new

    def flush(self) -> str:
        text = self.tokenizer.decode(self.cache, skip_special_tokens=True)
        return text[self.printed:] if len(text) > self.printed else ""


def _seeded(seed: int | None, device: str) -> contextlib.AbstractContextManager:
    """Seed torch for one reply without disturbing the global random state afterwards."""
    if seed is None:
        return contextlib.nullcontext()
    import torch

    devices = [torch.cuda.current_device()] if device.startswith("cuda") else []

    @contextlib.contextmanager
    def scope():
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield

    return scope()


def _watcher(loaded: LoadedChatModel, prompt_len: int, on_token: Callable[[int], None],
             cancel: CancelToken) -> StoppingCriteria:
    import torch
    from transformers import StoppingCriteria

    class TokenWatch(StoppingCriteria):
        """Reports each new token and stops generation once the user cancelled."""

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            if input_ids.shape[1] > prompt_len:
                on_token(int(input_ids[0, -1]))
            return torch.full((input_ids.shape[0],), cancel.cancelled, dtype=torch.bool,
                              device=input_ids.device)

    return TokenWatch()


class _LogitsProbe:
    """Keeps the raw next-token logits of the model's latest forward pass (a forward hook), and
    turns them into a :class:`TokenLogprob` for the token chosen from them."""

    def __init__(self, model: Any, tokenizer: Any, top: int) -> None:
        self.tokenizer = tokenizer
        self.top = top
        self.logits: Any = None
        self._handle = model.register_forward_hook(self._keep)

    def _keep(self, module: Any, args: Any, output: Any) -> None:
        logits = output.logits if hasattr(output, "logits") else output[0]
        self.logits = logits[0, -1]

    def token(self, token: int) -> TokenLogprob:
        import torch

        logp = torch.log_softmax(self.logits.float(), dim=-1)
        top: list[tuple[str, float]] = []
        if self.top:
            values, ids = torch.topk(logp, min(self.top, logp.shape[-1]))
            top = [(self.tokenizer.decode([i]), v)
                   for v, i in zip(values.tolist(), ids.tolist(), strict=True)]
        return TokenLogprob(self.tokenizer.decode([token]), float(logp[token]), top, token)

    def close(self) -> None:
        self._handle.remove()


class LocalChatBackend:
    """Chat with a transformers model on this machine (:class:`ChatBackend`)."""

    def __init__(self, settings_getter: Callable[[], Settings],
                 paths_getter: Callable[[], Paths], cache: ModelCache | None = None) -> None:
        from studio.pipelines.chat.loading import load_chat_model

        self._settings = settings_getter
        self._paths = paths_getter
        self.cache = cache if cache is not None else ModelCache(
            loader=load_chat_model, kind="chat", settings_getter=settings_getter)
        self._lock = threading.Lock()  # one generation at a time: the model is not re-entrant
        self._gguf_cache: ModelCache | None = None  # GGUF files (llama.cpp), built on first use

    # -- ChatBackend -------------------------------------------------------------------------
    def list_models(self) -> list[str]:
        from studio.library.chat_models import find_chat_models

        return [e.spec for e in find_chat_models(self._settings(), self._paths())]

    def stream(self, request: ChatRequest, cancel: CancelToken) -> Iterator[ChatChunk]:
        """Chunks as they are generated; the last has ``finish_reason``. Setup errors raise."""
        either = _EitherCancel(cancel)
        chunks: queue.Queue = queue.Queue()
        done = object()

        def work() -> None:
            try:
                self.generate(request, either, chunks.put)  # type: ignore[arg-type]
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                chunks.put(exc)
            finally:
                chunks.put(done)

        thread = threading.Thread(target=work, name="studio-chat-stream", daemon=True)
        thread.start()
        try:
            while (item := chunks.get()) is not done:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            either.inner.cancel()  # the consumer stopped reading: stop generating too
            thread.join()

    # -- the synchronous core ----------------------------------------------------------------
    def load(self, model: str) -> Any:
        """The loaded model for a spec (from the cache when it is the last one used)."""
        from studio.core.devices import resolve_device, resolve_dtype
        from studio.library.chat_models import resolve_chat_model
        from studio.pipelines.chat.loading import LoadOptions

        settings, paths = self._settings(), self._paths()
        entry = resolve_chat_model(model, settings, paths)
        try:
            device = resolve_device(settings.device)
        except (RuntimeError, ValueError) as exc:
            raise UserFacingError(str(exc)) from exc
        if entry.gguf:
            return self._load_gguf(entry, device)
        options = LoadOptions(resolve_dtype(settings.precision, device), settings.load_in)
        return self.cache.get(entry, device, options)

    def _load_gguf(self, entry: ChatModelEntry, device: str) -> Any:
        """A GGUF file through llama.cpp (:mod:`studio.pipelines.chat.gguf`), on its own cache."""
        if self._gguf_cache is None:
            self._gguf_cache = ModelCache(loader=gguf.load_gguf_model, kind="chat",
                                          settings_getter=self._settings,
                                          estimator=gguf.estimate_bytes)
        missing = gguf.missing_extra_note(entry.name)
        if missing:  # said before anything is evicted to make room for it
            raise UserFacingError(missing)
        return self._gguf_cache.get(entry, device, (entry.context_length, gguf.gpu_layers(device)))

    def generate(self, request: ChatRequest, cancel: CancelToken,
                 on_chunk: ChunkCallback | None = None) -> ChatReply:
        """Generate one reply, calling ``on_chunk`` for every token; returns the whole reply.

        Errors before the first token raise; an error while generating ends with an "error"
        chunk and reply that keep the text so far."""
        checked(request)
        with self._lock:
            return self._generate(request, cancel, on_chunk or (lambda _c: None))

    def embed(self, request: EmbedRequest, cancel: CancelToken) -> Embeddings:
        """Each text's last hidden state mean-pooled over its tokens (texts longer than the
        model's context are cut to it, and counted in ``truncated``)."""
        import torch

        checked(request)
        with self._lock:
            loaded = self.load(request.model)
            gguf.refuse(loaded, "Embeddings")
            vectors: list[list[float]] = []
            tokens = truncated = 0
            for text in request.texts:
                if cancel.cancelled:
                    raise JobCancelled()
                ids = loaded.tokenizer(text, add_special_tokens=True)["input_ids"]
                if len(ids) > loaded.context_length:
                    ids, truncated = ids[:loaded.context_length], truncated + 1
                tokens += len(ids)
                input_ids = torch.tensor([ids], device=loaded.model.device)
                with torch.inference_mode():
                    out = loaded.model(input_ids=input_ids, output_hidden_states=True,
                                       use_cache=False)
                vectors.append(out.hidden_states[-1][0].float().mean(dim=0).tolist())
        return Embeddings(vectors, tokens, truncated)

    def attention(self, request: AttentionRequest, cancel: CancelToken) -> AttentionMap:
        """The last layer's attention of the last position over ``request.input_ids``, averaged
        over heads. The model runs this one pass with transformers' eager attention (the fused
        kernels do not return the weights) and goes back to its own afterwards."""
        import torch

        checked(request)
        with self._lock:
            loaded = self.load(request.model)
            gguf.refuse(loaded, "Attention maps")
            model = loaded.model
            ids = request.input_ids[-loaded.context_length:]
            left_out = len(request.input_ids) - len(ids)
            if cancel.cancelled:
                raise JobCancelled()
            own = getattr(model.config, "_attn_implementation", None) or "eager"
            try:
                model.set_attn_implementation("eager")
                with torch.inference_mode():
                    out = model(input_ids=torch.tensor([ids], device=model.device),
                                output_attentions=True, use_cache=False)
            except (ValueError, NotImplementedError, AttributeError) as exc:
                raise UserFacingError(f"{loaded.name} cannot show its attention: "
                                      f"{describe_error(exc)}") from exc
            finally:
                if own != "eager":
                    model.set_attn_implementation(own)
            layer = out.attentions[-1][0].float()  # heads × positions × tokens read
            last = layer[:, -1, :]
            first = len(ids) - min(request.generated, len(ids) - 1) - 1
            rows = [layer[:, p, :p + 1].mean(dim=0).tolist() for p in range(first, len(ids) - 1)]
            tokens = [loaded.tokenizer.decode([i]) for i in ids]
        return AttentionMap(tokens, last.mean(dim=0).tolist(), int(last.shape[0]), left_out,
                            rows)

    def _generate(self, request: ChatRequest, cancel: CancelToken,
                  on_chunk: ChunkCallback) -> ChatReply:
        import torch

        from studio.pipelines.chat.prompting import complete_prompt, fit_conversation

        loaded = self.load(request.model)
        if loaded.gguf:
            return gguf.generate_gguf(loaded, request, cancel, on_chunk)
        started = time.perf_counter()  # after loading: timings describe generation alone
        extra: dict[str, Any] = {}
        if request.complete:  # the raw text continued: no template, no images
            prompt = complete_prompt(loaded.tokenizer, request.prompt_text(),
                                     loaded.context_length, request.max_new_tokens)
        elif loaded.processor is not None:
            prompt, extra = vision_prompt(loaded, request)
        elif any(m.get("images") for m in request.messages):
            from studio.library.chat_models import VISION_HINT

            raise UserFacingError(f"{loaded.name} reads text only, so it cannot see the "
                                  f"image. {VISION_HINT}")
        else:
            prompt = fit_conversation(loaded.tokenizer, request.messages,
                                      loaded.context_length, request.max_new_tokens,
                                      request.continue_reply)
        # no template in Complete mode: the model's template warning does not apply
        warnings = (list(prompt.warnings) if request.complete
                    else list(loaded.warnings) + prompt.warnings)
        decoder = _Decoder(loaded.tokenizer)
        pieces: list[str] = []
        state = {"n": 0, "first": 0.0, "last": -1}
        model = loaded.model
        probe = None if request.logprobs is None else _LogitsProbe(model, loaded.tokenizer,
                                                                   request.logprobs)
        logprobs: list[TokenLogprob] = []

        def chunk(text: str, finish: str | None = None, error: str = "",
                  token: list[TokenLogprob] | None = None) -> ChatChunk:
            return ChatChunk(text=text, completion_tokens=int(state["n"]),
                             prompt_tokens=len(prompt.input_ids), finish_reason=finish,
                             error=error, dropped_messages=prompt.dropped_messages,
                             warnings=warnings, conversation_tokens=prompt.conversation_tokens,
                             logprobs=token or [],
                             prompt_ids=list(prompt.input_ids) if probe is not None
                             and state["n"] == 1 and token else [])

        def on_token(token: int) -> None:
            state["n"] += 1
            state["last"] = token
            if state["n"] == 1:
                state["first"] = time.perf_counter() - started
            text = decoder.push(token)
            pieces.append(text)
            scored = [probe.token(token)] if probe is not None else None
            if scored:
                logprobs.extend(scored)
            on_chunk(chunk(text, token=scored))

        ids = torch.tensor([prompt.input_ids], dtype=torch.long, device=model.device)
        kwargs: dict[str, Any] = dict(
            input_ids=ids, attention_mask=torch.ones_like(ids), **extra,
            max_new_tokens=prompt.max_new_tokens,
            do_sample=request.temperature > 0, repetition_penalty=request.repetition_penalty,
            stopping_criteria=[_watcher(loaded, ids.shape[1], on_token, cancel)])
        if request.temperature > 0:
            kwargs.update(temperature=request.temperature, top_p=request.top_p,
                          top_k=request.top_k)
        if model.generation_config.pad_token_id is None:
            kwargs["pad_token_id"] = loaded.tokenizer.pad_token_id \
                if loaded.tokenizer.pad_token_id is not None else loaded.tokenizer.eos_token_id
        finish, error = "length", ""
        try:
            with torch.inference_mode(), _seeded(request.seed, str(model.device)):
                model.generate(**kwargs)
        except Exception as exc:  # noqa: BLE001 - the text so far is kept (errors are data)
            if state["n"] == 0:
                raise
            finish, error = "error", describe_error(exc)
        finally:
            if probe is not None:
                probe.close()
        tail = decoder.flush()
        pieces.append(tail)
        if finish != "error":
            eos = model.generation_config.eos_token_id
            eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
            if cancel.cancelled:
                finish = "cancelled"
            elif state["last"] in eos_ids or state["n"] < prompt.max_new_tokens:
                finish = "stop"
        on_chunk(chunk(tail, finish, error))
        return ChatReply(text="".join(pieces), completion_tokens=int(state["n"]),
                         prompt_tokens=len(prompt.input_ids), finish_reason=finish,
                         seconds=time.perf_counter() - started,
                         time_to_first_token=state["first"],
                         dropped_messages=prompt.dropped_messages, warnings=warnings,
                         conversation_tokens=prompt.conversation_tokens, logprobs=logprobs,
                         prompt_ids=list(prompt.input_ids) if probe is not None else [])


def vision_prompt(loaded: LoadedChatModel, request: ChatRequest) -> tuple[Any, dict[str, Any]]:
    """A vision-language model's prompt: every message as content parts (its images, then its
    text) through the processor's chat template, the images read and preprocessed by the
    processor. Returns the prompt and the image tensors ``generate`` takes besides the ids."""
    from PIL import Image

    from studio.core.wording import count_of
    from studio.pipelines.chat.prompting import PreparedPrompt, turn_options

    messages, images = [], []
    for m in request.messages:
        parts: list[dict[str, Any]] = []
        for path in m.get("images") or []:
            try:
                with Image.open(path) as im:
                    images.append(im.convert("RGB"))
            except (OSError, ValueError) as exc:
                raise UserFacingError(f"The image {path} cannot be read ({exc}); attach it "
                                      "again.") from exc
            parts.append({"type": "image"})
        parts.append({"type": "text", "text": m["content"]})
        messages.append({"role": m["role"], "content": parts})
    processor = loaded.processor
    template = getattr(processor, "chat_template", None) or loaded.tokenizer.chat_template
    text = processor.apply_chat_template(messages, tokenize=False, chat_template=template,
                                         **turn_options(request.continue_reply))
    inputs = processor(text=[text], images=images or None, return_tensors="pt")
    ids = inputs.pop("input_ids")[0].tolist()
    inputs.pop("attention_mask", None)
    ctx = loaded.context_length
    if len(ids) >= ctx:
        raise UserFacingError(f"The conversation with its images is too long for this model: "
                              f"{count_of(len(ids), 'token')}, but its context holds {ctx}. "
                              "Start a new chat.")
    new_tokens = min(request.max_new_tokens, ctx - len(ids))
    model = loaded.model
    extra = {k: (v.to(model.device, dtype=model.dtype) if v.is_floating_point()
                 else v.to(model.device)) if hasattr(v, "is_floating_point") else v
             for k, v in inputs.items()}
    return PreparedPrompt(ids, 0, new_tokens, [], len(ids)), extra
