"""Text lessons: ``tokenizer`` (byte-level BPE trained live), ``char-rnn`` (an LSTM on characters)
and ``gpt`` (a small GPT-2, a real ``transformers`` model, on BPE tokens of the same text).

The tokenizer lesson trains a BPE tokenizer with the ``tokenizers`` library up to its largest
vocabulary once, then grows the vocabulary a few merges per step: BPE training is greedy, so the
first N tokens are exactly what training to N gives (tests check it), and the student watches
the merges appear and the tokens per word fall without waiting for a training per step.

The two language models share one loop (:class:`LanguageModelLesson`): windows of ``context``
tokens drawn from the text with the lesson's own seeded generator, cross-entropy on the next
token, AdamW with gradient clipping, a validation loss on the held-out end of the text, and a
sample every ``sample_every`` steps at the chosen temperature (both editable mid-run). Weights
are initialised inside :func:`torch.random.fork_rng` from the seed, and the GPT has no dropout,
so a seed gives the same run on a CPU. The GPT also shows its attention maps (every layer and
head) for a sentence the student types, and its token embeddings projected to 2D (PCA).
:func:`export_gpt` writes the trained GPT as a ``transformers`` model folder that Chat loads.

No Qt here; torch and transformers are imported when the module is (the registry imports lessons
lazily).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from studio.core.wording import count_of
from studio.pipelines.train import torch_lessons as tl
from studio.pipelines.train.base import InvalidParameter, LessonInfo, ParamSpec, Trainer
from studio.pipelines.train.registry import lesson_text
from studio.pipelines.train.text_data import (
    BYTE_VOCAB,
    SOURCE_NAMES,
    SOURCES,
    Corpus,
    bpe_for,
    bpe_prefix,
    check_text,
    largest_bpe,
    load_text,
    merges,
    readable,
    token_ids,
)

EVAL_EVERY = 25  # steps between validation losses
EVAL_WINDOWS = 16  # validation windows (fixed: the same every time)
MERGES_SHOWN = 24  # latest merges in the tokenizer's list
TOKENS_SHOWN = 400  # at most this many tokens of the typed text are coloured
MEASURE_CHARS = 40_000  # the tokens-per-word of the tokenizer lesson are measured on this much
EMBEDDINGS_SHOWN = 256  # the most frequent tokens whose embeddings are projected
#: the chat template of an exported GPT: no roles, the text simply continues what was typed
COMPLETION_TEMPLATE = "{% for message in messages %}{{ message['content'] }}{% endfor %}"

TOKENIZER_EXPLANATION = """\
**What you see.** A tokenizer cuts text into the pieces a language model reads. Byte-level BPE
(the GPT-2 kind) starts with the 256 bytes as its vocabulary and learns *merges*, one at a time:
the most frequent neighbouring pair of tokens becomes a new token. Each step here adds the next
few merges. Left: tokens per word against the vocabulary size. Right: the latest merges (`Ġ` is a
space, `Ċ` a new line), and your text cut into tokens, one colour per token.

**What to try.** Type your own sentence (Your text); add a name or a rare word and see it split
into many pieces. Raise *Merges per step*. Under *Compare with*, type a chat model's name (as
Chat lists it) or pick its folder to cut your text with a real model's tokenizer (tens of
thousands of merges). Train it on your own text: its merges become the words of your text.

**What is normal.** At 256 tokens a word of Shakespeare takes about 5.5 tokens (its letters, a
space, its punctuation and line breaks); the first merges join a space with a letter ("Ġt",
"Ġa") and common pairs ("he", "ou"). By 512 tokens a word takes about 2.8, by 1,024 about 2.2
and by 2,048 about 1.8: common words are single tokens, punctuation and line breaks stay tokens
of their own. Growing to 2,048 takes {normal}.
"""

LM_EXPLANATION = """\
**What you see.** {model} learns to predict the next {unit} of a text. The loss is the
cross-entropy on the next token (train, and validation on the last 10 % of the text it never
trains on); a sample is written every *Sample every* steps at the chosen *temperature*.
{extra}
**What to try.** Change the temperature while it trains: 0.2 repeats the likeliest words, 1.5
invents spelling. Train the other language lesson ({other}) on the same text and compare
their samples at the same step. Use your own `.txt` file (a few hundred kB is plenty).

**What is normal.** The loss starts near ln(vocabulary) ({start}) and {normal}.
"""

GPT_EXTRA = """\
The attention maps show, for the sentence you type, where each token (row) looks among the
tokens before it (columns), for each layer and head; the embeddings plot places the most frequent
tokens by the first two principal components of their learned vectors.
When it writes words, pause and use **Runs → Export model to Chat…** (or `studio train gpt
--steps 400 --export NAME`): it goes into your library as a Hugging Face model (config,
safetensors weights, tokenizer) that Chat lists and `studio chat --model NAME` runs: it
continues what you type.
"""
#: measured with ``studio train … --steps N`` on a loaded 2-core machine (see the README)
TOKENIZER_NORMAL = "a few seconds"
CHAR_RNN_NORMAL = ('by step 100 (seconds) the samples have short words ("you", "not", '
                   '"your"), line breaks and speaker names in capitals; by step 400 (about two '
                   "minutes on 2 busy cores) most words are real, the rest sound English")
GPT_NORMAL = ('by step 200 (under a minute on 2 busy cores) the samples have real words ("the '
              'king", "thy love"), speaker names and verse lines; by step 400 (about two '
              "minutes) most words are real")


def _source_params(default_text: str) -> tuple[ParamSpec, ...]:
    return (
        ParamSpec("dataset", "shakespeare", "choice", choices=SOURCES, label="Text",
                  choice_labels=SOURCE_NAMES,
                  help="The text to learn from: Shakespeare (public domain, ships with Studio) "
                       "or your own plain-text file."),
        ParamSpec("text_file", "", "file", label="Text file",
                  help="Your own .txt file (UTF-8, a few pages at least)."),
        ParamSpec("sentence", default_text, "text", maximum=400, live=True, label="Your text",
                  help="A sentence to look at: its tokens, or its attention maps."),
    )


def _corpus(config: dict[str, Any]) -> Corpus:
    return load_text(config["dataset"], config["text_file"])


class TextLesson(Trainer):
    """The text source, checked up front."""

    @classmethod
    def validate_config(cls, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        config = super().validate_config(overrides)
        check_text(config["dataset"], config["text_file"])
        return config


# -- lesson 1: the tokenizer ----------------------------------------------------------------------
class TokenizerLesson(TextLesson):
    """Byte-level BPE, a few merges larger each step."""

    info = LessonInfo(
        **lesson_text("tokenizer"),
        explanation=TOKENIZER_EXPLANATION.format(normal=TOKENIZER_NORMAL),
        series=("loss",), series_labels={"loss": "Tokens per word"}, log_scale=False,
    )
    params = (
        ParamSpec("merges_per_step", 32, "int", minimum=1, maximum=4096, live=True,
                  label="Merges per step", help="New tokens each step adds to the vocabulary."),
        ParamSpec("max_vocab", 2048, "int", minimum=BYTE_VOCAB, maximum=65_536,
                  label="Largest vocabulary", help="The vocabulary stops growing here."),
        *_source_params("To be, or not to be: that is the question."),
        ParamSpec("compare", "", "folder", live=True, label="Compare with",
                  help="A chat model: its name in your library (as Chat lists it) or its "
                       "folder. Your text is also cut by its tokenizer."),
    )

    def __init__(self, config: dict[str, Any] | None = None, seed: int = 0,
                 step_count: int = 0) -> None:
        super().__init__(config=self.validate_config(config), seed=seed, step_count=step_count)
        self.corpus = _corpus(self.config)
        self.vocab_size = BYTE_VOCAB
        self.history: list[tuple[int, float]] = []
        self._compare: tuple[str, Any, str] | None = None  # (choice, tokenizer, sentence)
        self._retrain()
        self.history.append((self.vocab_size, self._tokens_per_word()))

    def _retrain(self) -> None:  # the first vocab_size tokens of the trained BPE
        full = largest_bpe(self.corpus, int(self.config["max_vocab"]))
        self.tokenizer = bpe_prefix(full, self.vocab_size)
        self.vocab_size = self.tokenizer.get_vocab_size()

    def _sample_text(self) -> str:
        text = self.corpus.text
        return text[-MEASURE_CHARS:] if len(text) > MEASURE_CHARS else text

    def _tokens_per_word(self, tokenizer: Any | None = None) -> float:
        text = self._sample_text()
        # the lesson's own (tokenizers) or a compared chat model's (transformers)
        tok: Any = tokenizer or self.tokenizer
        n = len(tok.encode(text).ids) if hasattr(tok, "get_vocab_size") \
            else len(tok(text, add_special_tokens=False)["input_ids"])
        return n / max(1, len(text.split()))

    def step(self, part: str | None = None) -> dict[str, float]:
        target = min(int(self.config["max_vocab"]),
                     self.vocab_size + int(self.config["merges_per_step"]))
        grown = target > self.vocab_size
        if grown:
            before = self.vocab_size
            self.vocab_size = target
            self._retrain()
            if self.vocab_size <= before:  # the text has no pair left to merge
                grown = False
        self.step_count += 1
        tpw = self._tokens_per_word() if grown or not self.history else self.history[-1][1]
        if grown:
            self.history.append((self.vocab_size, tpw))
        chars = len(self._sample_text())
        return {"step": self.step_count, "loss": tpw, "vocab": float(self.vocab_size),
                "chars_per_token": chars / max(1e-9, tpw * len(self._sample_text().split()))}

    def _compare_tokenizer(self) -> tuple[Any | None, str]:
        """(the compared tokenizer or None, a sentence about it); loaded once per choice."""
        spec = str(self.config["compare"]).strip()
        if not spec:
            return None, ""
        if self._compare is None or self._compare[0] != spec:
            self._compare = (spec, *_chat_tokenizer(spec))
        return self._compare[1], self._compare[2]

    def snapshot(self) -> dict[str, Any]:
        sentence = str(self.config["sentence"])
        enc = self.tokenizer.encode(sentence)
        pieces = [sentence[a:b] for a, b in enc.offsets[:TOKENS_SHOWN]]
        learned = merges(self.tokenizer)
        snap: dict[str, Any] = {
            "step": self.step_count, "vocab": self.vocab_size,
            "max_vocab": int(self.config["max_vocab"]), "data_note": self.corpus.describe(),
            "history": np.asarray(self.history, dtype=np.float64).reshape(-1, 2),
            "merges": [(len(learned) - i, a, b, readable(a + b))
                       for i, (a, b) in enumerate(reversed(learned[-MERGES_SHOWN:]))],
            "pieces": pieces, "ids": list(enc.ids[:TOKENS_SHOWN]),
            "compare_name": "", "compare_pieces": [], "compare_note": "",
            "compare_tpw": 0.0,
        }
        other, note = self._compare_tokenizer()
        snap["compare_note"] = note
        if other is not None:
            ids = other(sentence, add_special_tokens=False)["input_ids"][:TOKENS_SHOWN]
            snap["compare_name"] = Path(str(self.config["compare"]).strip()).name
            snap["compare_pieces"] = [other.decode([i]) for i in ids]
            snap["compare_vocab"] = len(other)
            snap["compare_tpw"] = self._tokens_per_word(other)
        return snap

    def state_dict(self) -> dict[str, Any]:
        return {"config": dict(self.config), "seed": self.seed, "step_count": self.step_count,
                "vocab_size": self.vocab_size,
                "history": np.asarray(self.history, dtype=np.float64).reshape(-1, 2)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.config = self.validate_config(state["config"])
        self.step_count = int(state["step_count"])
        self.vocab_size = int(state["vocab_size"])
        self.history = [(int(v), float(t)) for v, t in np.asarray(state["history"])]
        self._retrain()


def _chat_tokenizer(spec: str) -> tuple[Any | None, str]:
    """The tokenizer of the chat model ``spec`` names (a folder, or a name in the library as
    Chat lists it), or None and the reason."""
    from studio.library.chat_models import TOKENIZER_FILES
    from studio.pipelines.train.chat_data import chat_model_folder

    try:
        path = chat_model_folder(spec, need_config=False)
    except InvalidParameter as exc:
        return None, str(exc)
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        return None, (f"{spec} has no tokenizer files ({', '.join(TOKENIZER_FILES)}); choose a "
                      "chat model's folder or its name in your library.")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True,
                                             trust_remote_code=False), ""
    except (OSError, ValueError, TypeError) as exc:
        return None, f"The tokenizer of {spec} cannot be loaded: {str(exc)[:200]}"


# -- lesson 2: two language models ----------------------------------------------------------------
class CharLSTM(nn.Module):
    """Embedding → LSTM → linear to the vocabulary."""

    def __init__(self, vocab: int, width: int, layers: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.lstm = nn.LSTM(width, width, num_layers=layers, batch_first=True)
        self.head = nn.Linear(width, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(self.embed(ids))[0])


def _lm_params(vocab_default: int | None, width: tuple[int, int, str],
               layers: tuple[int, int, str]) -> tuple[ParamSpec, ...]:
    """The knobs both language models have; ``width`` is (default, minimum, help), ``layers``
    (default, maximum, help)."""
    vocab = () if vocab_default is None else (
        ParamSpec("vocab_size", vocab_default, "int", minimum=BYTE_VOCAB, maximum=8192,
                  label="Vocabulary", help="Tokens of its byte-level BPE tokenizer: 256 = one "
                                           "per character; more = whole words and pieces."),)
    return (
        tl.lr_spec(3e-3),
        ParamSpec("temperature", 0.8, "float", minimum=0.05, maximum=2.0, live=True,
                  label="Temperature", help="How adventurous the samples are: low repeats the "
                                            "likeliest tokens, high invents."),
        ParamSpec("sample_every", 50, "int", minimum=1, maximum=100_000, live=True,
                  label="Sample every", help="Steps between samples."),
        ParamSpec("sample_length", 200, "int", minimum=10, maximum=2000, live=True,
                  label="Sample length", help="Tokens in a sample."),
        ParamSpec("context", 64, "int", minimum=8, maximum=512, label="Context",
                  help="Tokens the model reads at once (one training window)."),
        ParamSpec("batch_size", 32, "int", minimum=1, maximum=512, label="Batch size",
                  help="Windows per update."),
        *vocab,
        ParamSpec("width", width[0], "int", minimum=width[1], maximum=1024, label="Width",
                  help=width[2]),
        ParamSpec("layers", layers[0], "int", minimum=1, maximum=layers[1], label="Layers",
                  help=layers[2]),
    )


def _lm_info(key: str, **words: str) -> LessonInfo:
    """A language lesson's info: its explanation filled with ``words``, both losses plotted."""
    return LessonInfo(**lesson_text(key), explanation=LM_EXPLANATION.format(**words),
                      series=("loss", "val_loss"), log_scale=False,
                      series_labels={"loss": "Train loss", "val_loss": "Validation loss"})


class LanguageModelLesson(TextLesson):
    """What the LSTM and the GPT share: data, the training loop, samples and state."""

    vocab_default = BYTE_VOCAB
    model: Any  # an nn.Module (the GPT: transformers' GPT2LMHeadModel)

    def __init__(self, config: dict[str, Any] | None = None, seed: int = 0,
                 step_count: int = 0) -> None:
        super().__init__(config=self.validate_config(config), seed=seed, step_count=step_count)
        cfg = self.config
        self.corpus = _corpus(cfg)
        self.vocab = int(cfg.get("vocab_size", self.vocab_default))
        self.tokenizer = bpe_for(self.corpus, self.vocab)
        train, val = token_ids(self.corpus, self.vocab)
        context = int(cfg["context"])
        if len(val) <= context + 1 or len(train) <= context + 1:
            raise InvalidParameter(
                f"{self.corpus.name} is too short for a context of {count_of(context, 'token')} "
                f"({count_of(len(train) + len(val), 'token')} in all); lower the context or add "
                "text.")
        self._train = torch.from_numpy(train)
        self._val = torch.from_numpy(val)
        self._gens = {"train": tl.seeded_generator(seed, 2), "sample": tl.seeded_generator(seed, 3)}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(tl.seeded_generator(seed, 1).initial_seed())
            self.model = self.build_model()
        self._optimizer = torch.optim.AdamW(self.model.parameters(), lr=float(cfg["lr"]),
                                            weight_decay=0.01)
        vg = tl.seeded_generator(seed, 4)
        starts = torch.randint(0, len(val) - context - 1, (EVAL_WINDOWS,), generator=vg)
        self._val_x = torch.stack([self._val[s:s + context] for s in starts])
        self._val_y = torch.stack([self._val[s + 1:s + context + 1] for s in starts])
        self.samples: list[tuple[int, float, str]] = []
        self._snap_key: tuple | None = None
        self._snap: dict[str, Any] = {}

    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def step(self, part: str | None = None) -> dict[str, float]:
        context, n = int(self.config["context"]), int(self.config["batch_size"])
        starts = torch.randint(0, len(self._train) - context - 1, (n,),
                               generator=self._gens["train"])
        offsets = torch.arange(context)
        x = self._train[starts[:, None] + offsets]
        y = self._train[starts[:, None] + offsets + 1]
        self.model.train()
        logits = self.logits(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        value = tl.clipped_step(self, self._optimizer, loss, self.model.parameters())
        metrics: dict[str, float] = {"step": self.step_count, "loss": value}
        if self.step_count == 1 or self.step_count % EVAL_EVERY == 0:
            metrics["val_loss"] = self.evaluate()
        if self.step_count % int(self.config["sample_every"]) == 0:
            self.samples.append((self.step_count, float(self.config["temperature"]),
                                 self.sample()))
        return metrics

    @torch.no_grad()
    def evaluate(self) -> float:
        self.model.eval()
        logits = self.logits(self._val_x)
        return float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                     self._val_y.reshape(-1)))

    @torch.no_grad()
    def sample(self, length: int | None = None) -> str:
        """A text the model writes from a new line, at the chosen temperature."""
        self.model.eval()
        length = int(length or self.config["sample_length"])
        context = int(self.config["context"])
        temperature = float(self.config["temperature"])
        start = self.tokenizer.encode("\n").ids or [0]
        ids = list(start)
        for _ in range(length):
            window = torch.tensor([ids[-context:]])
            probs = torch.softmax(self.logits(window)[0, -1].float() / temperature, -1)
            ids.append(int(torch.multinomial(probs, 1, generator=self._gens["sample"])))
        return self.tokenizer.decode(ids[len(start):])

    def on_param_changed(self, name: str) -> None:
        if name == "lr":
            tl.set_lr(self._optimizer, float(self.config["lr"]))

    def snapshot(self) -> dict[str, Any]:
        key = (self.step_count, str(self.config["sentence"]), len(self.samples))
        if key == self._snap_key:
            return self._snap
        snap: dict[str, Any] = {
            "step": self.step_count, "vocab": self.vocab, "data_note": self.corpus.describe(),
            "samples": list(self.samples[-8:]),
            "parameters": sum(p.numel() for p in self.model.parameters()),
        }
        snap.update(self.extra_snapshot())
        self._snap_key, self._snap = key, snap
        return snap

    def extra_snapshot(self) -> dict[str, Any]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"config": dict(self.config), "seed": self.seed, "step_count": self.step_count,
                "model": tl.tensor_state(self.model),
                "optimizer": tl.optimizer_state(self._optimizer),
                "generators": tl.generator_states(self._gens),
                "samples": [[s, t, text] for s, t, text in self.samples]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.config = self.validate_config(state["config"])
        self.step_count = int(state["step_count"])
        self.model.load_state_dict(state["model"])
        self._optimizer = torch.optim.AdamW(self.model.parameters(), lr=float(self.config["lr"]),
                                            weight_decay=0.01)
        self._optimizer.load_state_dict(state["optimizer"])
        tl.load_generator_states(self._gens, state["generators"])
        self.samples = [(int(s), float(t), str(text)) for s, t, text in state["samples"]]
        self._snap_key = None


class CharRNNTrainer(LanguageModelLesson):
    """An LSTM reading one character (byte) at a time."""

    info = _lm_info(
        "char-rnn", model="An LSTM (a recurrent network: it reads one character at a time and "
                          "carries a memory along)",
        unit="character", extra="", other="gpt", start=f"{math.log(BYTE_VOCAB):.1f}",
        normal=CHAR_RNN_NORMAL)
    params = (
        *_lm_params(None, (256, 8, "Units of the LSTM (and size of the character embeddings)."),
                    (1, 4, "Stacked LSTM layers.")),
        *_source_params("To be, or not to be: that is the question."),
    )

    def build_model(self) -> nn.Module:
        return CharLSTM(self.vocab, int(self.config["width"]), int(self.config["layers"]))

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(ids)


def check_width_heads(config: dict[str, Any]) -> dict[str, Any]:
    """A transformer's width splits evenly over its attention heads (GPT and DPO lessons)."""
    if int(config["width"]) % int(config["heads"]):
        raise InvalidParameter(f"Width {config['width']} must be a multiple of the "
                               f"{config['heads']} heads.")
    return config


class GPTTrainer(LanguageModelLesson):
    """A small GPT-2 (``transformers``' GPT2LMHeadModel) on byte-level BPE tokens."""

    vocab_default = 512
    info = _lm_info(
        "gpt", model="A small GPT (a transformer: every token attends to all the tokens before it)",
        unit="token", extra=GPT_EXTRA, other="char-rnn", start="6.2 at 512 tokens",
        normal=GPT_NORMAL)
    params = (
        *_lm_params(512, (128, 16, "Size of the token vectors (a multiple of the heads)."),
                    (2, 8, "Transformer blocks.")),
        ParamSpec("heads", 4, "int", minimum=1, maximum=16, label="Heads",
                  help="Attention heads per block."),
        ParamSpec("layer", 1, "int", minimum=1, maximum=8, live=True, label="Attention layer",
                  help="The layer whose attention maps are shown."),
        *_source_params("To be, or not to be: that is the question."),
    )

    @classmethod
    def validate_config(cls, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        return check_width_heads(super().validate_config(overrides))

    def build_model(self) -> nn.Module:
        from transformers import GPT2LMHeadModel

        return GPT2LMHeadModel(gpt2_config(self.config, self.vocab))

    def state_dict(self) -> dict[str, Any]:
        # the tokenizer too: a run's checkpoint alone is enough to export the model (Runs tab)
        return {**super().state_dict(), "tokenizer": self.tokenizer.to_str()}

    def export_model(self, folder: Path) -> list[Path]:
        """The GPT as it is now, as a model folder Chat loads (:func:`write_gpt`)."""
        return write_gpt(folder, tl.tensor_state(self.model), self.config,
                         self.tokenizer.to_str())

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=ids).logits

    @torch.no_grad()
    def extra_snapshot(self) -> dict[str, Any]:
        self.model.eval()
        sentence = str(self.config["sentence"]) or " "
        enc = self.tokenizer.encode(sentence)
        ids = enc.ids[:int(self.config["context"])] or [0]
        out = self.model(input_ids=torch.tensor([ids]), output_attentions=True)
        layer = min(int(self.config["layer"]), len(out.attentions)) - 1
        weights = self.model.transformer.wte.weight.detach().float()
        counts = np.bincount(self._train.numpy(), minlength=self.vocab)
        shown = np.argsort(-counts, kind="stable")[:EMBEDDINGS_SHOWN]
        vectors = weights[torch.from_numpy(shown)]
        vectors = vectors - vectors.mean(0)
        _, _, v = torch.linalg.svd(vectors, full_matrices=False)
        points = tl.to_numpy(vectors @ v[:2].T)
        vocab = {i: t for t, i in self.tokenizer.get_vocab().items()}
        return {
            "tokens": [sentence[a:b] for a, b in enc.offsets[:len(ids)]],
            "attention": tl.to_numpy(out.attentions[layer][0]),  # (heads, T, T)
            "layer": layer + 1, "layers": len(out.attentions),
            "embeddings": points,
            "embedding_labels": [readable(vocab[int(i)]) for i in shown],
        }


def gpt2_config(config: dict[str, Any], vocab: int) -> Any:
    """The ``GPT2Config`` of the lesson's ``config`` (no dropout: a seed gives one run)."""
    from transformers import GPT2Config

    gpt = GPT2Config(vocab_size=int(vocab), n_positions=int(config["context"]),
                     n_embd=int(config["width"]), n_layer=int(config["layers"]),
                     n_head=int(config["heads"]), resid_pdrop=0.0, embd_pdrop=0.0,
                     attn_pdrop=0.0, bos_token_id=None, eos_token_id=None,
                     architectures=["GPT2LMHeadModel"])
    gpt._attn_implementation = "eager"  # it returns the attention maps the view draws
    return gpt


def write_gpt(folder: Path, weights: dict[str, Any], config: dict[str, Any],
              tokenizer_json: str, chat_template: str = COMPLETION_TEMPLATE,
              eos_token: str | None = None) -> list[Path]:
    """A trained GPT (its state dict, the lesson's config and its tokenizer as JSON) written as a
    ``transformers`` model folder: config, safetensors weights, generation config and tokenizer
    files with ``chat_template`` (by default one that simply continues the text typed) and, when
    the model was trained to end its answers with ``eos_token``, that token as where a reply
    stops. Returns the files."""
    from tokenizers import Tokenizer
    from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer.from_str(tokenizer_json)
    with torch.random.fork_rng(devices=[]):  # the weights are overwritten: keep the global RNG
        model = GPT2LMHeadModel(gpt2_config(config, tokenizer.get_vocab_size()))
    model.load_state_dict(weights)
    if eos_token is not None:
        model.generation_config.eos_token_id = tokenizer.token_to_id(eos_token)
        model.generation_config.pad_token_id = model.generation_config.eos_token_id
    model.save_pretrained(str(folder), safe_serialization=True)
    tok = PreTrainedTokenizerFast(tokenizer_object=tokenizer,
                                  model_max_length=int(config["context"]),
                                  **({"eos_token": eos_token, "pad_token": eos_token}
                                     if eos_token is not None else {}))
    tok.chat_template = chat_template
    tok.save_pretrained(str(folder))
    return sorted(p for p in folder.iterdir() if p.is_file())
