"""The ``dpo`` lesson: a small language model learns from preferences (prompt, chosen, rejected).

Direct Preference Optimization (Rafailov et al., 2023) as TRL implements it: batches are built by
TRL's :class:`~trl.trainer.dpo_trainer.DataCollatorForPreference` (chosen rows first, then the
rejected ones), each completion's log-probability is summed over its tokens under the policy and
under a frozen copy of the starting model (the reference), and the loss is TRL's ``sigmoid`` DPO
loss ``-log σ(β · ((log π_c − log ref_c) − (log π_r − log ref_r)))``. The lesson steps one batch at
a time (so it pauses, steps and resumes like every lesson) and β is a live knob; the loss of a
batch equals TRL's ``DPOTrainer.compute_loss`` (tests/test_train_dpo.py).

The policy is a tiny GPT-2 (``transformers``' real class) Studio builds on byte-level tokens; the
preferences are Studio's own set (``assets/preferences/``) or the student's ``.jsonl``.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from studio import ASSETS_DIR
from studio.pipelines.train import torch_lessons as tl
from studio.pipelines.train.base import (
    InvalidParameter,
    LessonInfo,
    ParamSpec,
    Trainer,
)
from studio.pipelines.train.registry import lesson_text
from studio.pipelines.train.text_lessons import check_width_heads

PREFERENCES = ASSETS_DIR / "preferences" / "studio-polite.jsonl"
KEYS = ("prompt", "chosen", "rejected")
EOS = "<|endoftext|>"
#: how the lesson writes a conversation (a prompt and a new line, an answer and end-of-text), so
#: Chat asks the exported model the way it was trained
CHAT_TEMPLATE = ("{% for message in messages %}{{ message['content'] }}"
                 "{% if message['role'] == 'assistant' %}{{ eos_token }}{% else %}{{ '\\n' }}"
                 "{% endif %}{% endfor %}")
#: prompts whose answers are shown before (the reference) and after (the policy) training
SHOWN = 3
ANSWER_TOKENS = 40
#: steps between two writings of the answers shown (writing three answers costs a dozen steps)
ANSWER_EVERY = 10
MAX_PAIRS = 5000
MAX_CHARS = 2000

EXPLANATION = """\
**What you see.** A small GPT learns from pairs of answers to the same prompt: one a person
preferred (*chosen*), one they did not (*rejected*). As in RLHF it first learns to answer at all:
a short supervised *warm-up* on both answers of every pair (the warm-up loss), so it answers some
prompts politely and some rudely. That model is frozen as the *reference*, and DPO starts: it
needs no reward model, it raises the log-probability of the chosen answer and lowers the rejected
one's, each measured relative to the reference. β·(that log-ratio) is the answer's *implicit
reward*. The plot shows the DPO loss, the reward margin (chosen minus rejected reward) and the
reward accuracy (the share of pairs where the chosen answer's reward is higher). Below: the
answers of the reference and of the model now, to the same prompts.

**What to try.** Set the chosen-answer weight to 0 (pure DPO) and watch: the accuracy still
reaches 1.0, yet the answers fall apart — DPO only asks that the chosen answer beat the rejected
one, and a tiny model can get there by making both unlikely. Change β while it runs: a small β
(0.05) lets the policy drift far from the reference; a large β (1–5) keeps it close. Set the
warm-up to 0 to see DPO start from an untrained model. Load your own `.jsonl` (one `{"prompt",
"chosen", "rejected"}` object a line).

**What is normal.** The warm-up loss falls below 0.5 in its 300 steps (under half a minute on two
cores). DPO's loss then starts at log 2 ≈ 0.69 (policy = reference, margin 0, accuracy around
half) and falls; within about 150 steps the accuracy reaches 1.0, the margin keeps growing and the
rude answers of the reference turn into the chosen ones.
"""


def _info() -> LessonInfo:
    return LessonInfo(
        **lesson_text("dpo"), explanation=EXPLANATION,
        series=("sft_loss", "loss", "margin", "accuracy", "chosen_reward", "rejected_reward"),
        log_scale=False,
        series_labels={"sft_loss": "warm-up loss (next token)", "loss": "DPO loss", "margin": "reward margin",
                       "accuracy": "reward accuracy", "chosen_reward": "chosen reward",
                       "rejected_reward": "rejected reward"})


def load_preferences(path: Path) -> list[dict[str, str]]:
    """The (prompt, chosen, rejected) rows of a ``.jsonl`` file, each checked; a bad line is
    refused with a sentence naming the line and what is wrong."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InvalidParameter(f"{path} is not a file: choose a .jsonl preference file.")
    rows: list[dict[str, str]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InvalidParameter(f"{path.name} is not UTF-8 text: save it as UTF-8 .jsonl.") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidParameter(f"{path.name} line {number} is not JSON ({exc.msg}): write one "
                                   '{"prompt": …, "chosen": …, "rejected": …} object a line.'
                                   ) from None
        if not isinstance(row, dict):
            raise InvalidParameter(f"{path.name} line {number} is not a JSON object: write one "
                                   '{"prompt": …, "chosen": …, "rejected": …} object a line.')
        for key in KEYS:
            if key not in row:
                raise InvalidParameter(f"{path.name} line {number} has no {key!r} key: each line "
                                       f"needs {', '.join(map(repr, KEYS))}.")
            if not isinstance(row[key], str) or not row[key].strip():
                raise InvalidParameter(f"{path.name} line {number}: {key!r} must be non-empty "
                                       "text.")
            if len(row[key]) > MAX_CHARS:
                raise InvalidParameter(f"{path.name} line {number}: {key!r} is longer than "
                                       f"{MAX_CHARS} characters; shorten it.")
        if row["chosen"] == row["rejected"]:
            raise InvalidParameter(f"{path.name} line {number}: 'chosen' and 'rejected' are the "
                                   "same text; a preference needs two different answers.")
        rows.append({k: str(row[k]) for k in KEYS})
        if len(rows) > MAX_PAIRS:
            raise InvalidParameter(f"{path.name} has more than {MAX_PAIRS} pairs; use a smaller "
                                   "file for this lesson.")
    if len(rows) < 2:
        raise InvalidParameter(f"{path.name} has {len(rows)} preference pair(s); the lesson needs "
                               "at least 2.")
    return rows


def byte_tokenizer() -> Any:
    """A byte-level tokenizer (256 byte tokens, no merges, and an end-of-text token): every text
    encodes, and the GPT export writes it as Chat's tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)}
    vocab[EOS] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([EOS])
    return tok


def _token_logps(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The log-probability of every next token of every row (prompt and padding included)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   use_cache=False).logits[:, :-1].float()
    targets = batch["input_ids"][:, 1:]
    return torch.gather(logits.log_softmax(-1), 2, targets.unsqueeze(-1)).squeeze(-1)


def completion_logps(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Each row's completion log-probability, summed over its tokens (TRL's ``logps``)."""
    return (_token_logps(model, batch) * batch["completion_mask"][:, 1:]).sum(1)


def sft_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The warm-up's supervised loss: the mean next-token cross-entropy over the answers' tokens
    of every row (chosen and rejected alike), the prompts not counted."""
    mask = batch["completion_mask"][:, 1:].float()
    return -(_token_logps(model, batch) * mask).sum() / mask.sum().clamp(min=1)


def dpo_terms(policy: nn.Module, reference: nn.Module, batch: dict[str, torch.Tensor],
              beta: float, rpo_alpha: float = 0.0) -> dict[str, torch.Tensor]:
    """The sigmoid DPO loss of one collated batch and its rewards (as TRL computes them); with
    ``rpo_alpha`` > 0, plus that weight times the next-token loss of the chosen answers (TRL's
    ``loss_type=["sigmoid", "sft"]`` with ``loss_weights=[1, rpo_alpha]``: RPO, Pang et al. 2024),
    which keeps the chosen answers likely while the margin grows."""
    per_token = _token_logps(policy, batch)
    mask = batch["completion_mask"][:, 1:]
    logps = (per_token * mask).sum(1)
    with torch.no_grad():
        ref = completion_logps(reference, batch)
    chosen, rejected = logps.chunk(2)
    ref_chosen, ref_rejected = ref.chunk(2)
    chosen_ratio, rejected_ratio = chosen - ref_chosen, rejected - ref_rejected
    loss = (-F.logsigmoid(beta * (chosen_ratio - rejected_ratio))).mean()
    terms = {"chosen_reward": beta * chosen_ratio.detach(),
             "rejected_reward": beta * rejected_ratio.detach()}
    if rpo_alpha:
        half = len(chosen)
        nll = -(per_token[:half] * mask[:half]).sum() / mask[:half].sum().clamp(min=1)
        terms["nll"] = nll.detach()
        loss = loss + rpo_alpha * nll
    return {"loss": loss, **terms}


class DPOLesson(Trainer):
    """DPO on a tiny GPT-2 with a frozen reference copy; one step = one batch of pairs."""

    info = _info()
    params = (
        ParamSpec("sft_steps", 300, "int", minimum=0, maximum=10000, label="Warm-up steps",
                  help="Supervised steps on both answers of every pair before DPO starts: the "
                       "model first learns to answer (politely and rudely alike), then learns "
                       "which answer people prefer. 0 = DPO on the untrained model."),
        ParamSpec("beta", 0.1, "float", minimum=0.001, maximum=10.0, live=True, label="β",
                  log_scale=True,
                  help="How strongly the policy is held near the reference (DPO's β)."),
        ParamSpec("rpo_alpha", 1.0, "float", minimum=0.0, maximum=10.0, live=True,
                  label="Chosen-answer weight",
                  help="Adds this weight × the next-token loss of the chosen answers to the DPO "
                       "loss (TRL's \"sft\" loss term, as in RPO). 0 = pure DPO: the margin "
                       "still grows, but the chosen answers may become unlikely too."),
        tl.lr_spec(1e-3),
        ParamSpec("batch_size", 4, "int", minimum=1, maximum=64, label="Pairs per step"),
        ParamSpec("width", 64, "int", minimum=16, maximum=512, label="Width",
                  help="Size of the token vectors (a multiple of the heads)."),
        ParamSpec("layers", 2, "int", minimum=1, maximum=8, label="Layers"),
        ParamSpec("heads", 4, "int", minimum=1, maximum=16, label="Heads"),
        ParamSpec("context", 256, "int", minimum=32, maximum=1024, label="Context",
                  help="Longest prompt + answer, in bytes; longer ones are cut."),
        ParamSpec("preferences", "", "file", label="Preference file (.jsonl)",
                  help="One {\"prompt\", \"chosen\", \"rejected\"} object a line; empty = "
                       "Studio's own set."),
    )

    def __init__(self, config: dict[str, Any] | None = None, seed: int = 0,
                 step_count: int = 0) -> None:
        super().__init__(config=self.validate_config(config), seed=seed, step_count=step_count)
        from transformers import GPT2LMHeadModel
        from trl.trainer.dpo_trainer import DataCollatorForPreference

        cfg = self.config
        self.source = Path(str(cfg["preferences"]) or PREFERENCES)
        self.pairs = load_preferences(self.source)
        self.tokenizer = byte_tokenizer()
        self.eos_id = self.tokenizer.token_to_id(EOS)
        self.examples = [self.encode(row) for row in self.pairs]
        self.collator = DataCollatorForPreference(pad_token_id=self.eos_id,
                                                  max_length=int(cfg["context"]))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(tl.seeded_generator(seed, 1).initial_seed())
            self.model = GPT2LMHeadModel(self.gpt_config())
        self.reference = copy.deepcopy(self.model).eval().requires_grad_(False)
        self._optimizer = self._new_optimizer()
        self._gens = {"train": tl.seeded_generator(seed, 2)}
        self.history: list[tuple[int, float, float, float]] = []
        self.before = [self.answer(self.reference, row["prompt"])
                       for row in self.pairs[:SHOWN]]
        self._snap_key: int | None = None
        self._snap: dict[str, Any] = {}
        self._answers: tuple[int, list[str], list[dict[str, str]]] | None = None

    @classmethod
    def validate_config(cls, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        return check_width_heads(super().validate_config(overrides))

    def gpt_config(self) -> Any:
        from studio.pipelines.train.text_lessons import gpt2_config

        return gpt2_config(self.config, self.tokenizer.get_vocab_size())

    def encode(self, row: dict[str, str]) -> dict[str, list[int]]:
        """A pair as TRL's collator takes it: the prompt (with a new line) and each answer ending
        in the end-of-text token."""
        ids = self.tokenizer.encode
        return {"prompt_ids": ids(row["prompt"] + "\n").ids,
                "chosen_ids": ids(row["chosen"]).ids + [self.eos_id],
                "rejected_ids": ids(row["rejected"]).ids + [self.eos_id]}

    def batch(self) -> dict[str, torch.Tensor]:
        """The next batch of pairs, drawn from the run's own generator."""
        n = int(self.config["batch_size"])
        picks = torch.randint(0, len(self.examples), (n,), generator=self._gens["train"])
        return self.collator([self.examples[int(i)] for i in picks])

    @property
    def warming_up(self) -> bool:
        """True during the supervised warm-up (the first ``sft_steps`` steps)."""
        return self.step_count < int(self.config["sft_steps"])

    def _warm_up_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One supervised step; after the last one the model as it is becomes the reference (the
        SFT model of RLHF) and DPO starts from it with a fresh optimizer."""
        value = tl.clipped_step(self, self._optimizer, sft_loss(self.model, batch),
                                self.model.parameters())
        if not self.warming_up:
            self._start_preferences()
        return {"step": self.step_count, "sft_loss": value}

    def _start_preferences(self) -> None:
        self.reference = copy.deepcopy(self.model).eval().requires_grad_(False)
        self._optimizer = self._new_optimizer()
        self.before = [self.answer(self.reference, row["prompt"])
                       for row in self.pairs[:SHOWN]]

    def _new_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.model.parameters(), lr=float(self.config["lr"]),
                                 weight_decay=0.0)

    def step(self, part: str | None = None) -> dict[str, float]:
        batch = self.batch()
        self.model.train()
        if self.warming_up:
            return self._warm_up_step(batch)
        terms = dpo_terms(self.model, self.reference, batch, float(self.config["beta"]),
                          float(self.config["rpo_alpha"]))
        value = tl.clipped_step(self, self._optimizer, terms["loss"], self.model.parameters())
        chosen, rejected = terms["chosen_reward"], terms["rejected_reward"]
        metrics = {"step": self.step_count, "loss": value,
                   "margin": float((chosen - rejected).mean()),
                   "accuracy": float((chosen > rejected).float().mean()),
                   "chosen_reward": float(chosen.mean()),
                   "rejected_reward": float(rejected.mean())}
        self.history.append((self.step_count, value, metrics["margin"], metrics["accuracy"]))
        return metrics

    def on_param_changed(self, name: str) -> None:
        if name == "lr":
            tl.set_lr(self._optimizer, float(self.config["lr"]))

    @torch.no_grad()
    def answer(self, model: nn.Module, prompt: str) -> str:
        """``model``'s greedy answer to ``prompt`` (up to ANSWER_TOKENS tokens)."""
        model.eval()
        ids = self.tokenizer.encode(prompt + "\n").ids
        context = int(self.config["context"])
        out: list[int] = []
        for _ in range(ANSWER_TOKENS):
            window = torch.tensor([(ids + out)[-context:]])
            nxt = int(model(input_ids=window, use_cache=False).logits[0, -1].argmax())
            if nxt == self.eos_id:
                break
            out.append(nxt)
        return self.tokenizer.decode(out)

    def snapshot(self) -> dict[str, Any]:
        if self._snap_key == self.step_count:
            return self._snap
        rows, answered = self._rows()
        history = np.asarray(self.history, dtype=np.float64).reshape(-1, 4)
        warm = int(self.config["sft_steps"])
        phase = (f"Warm-up, step {self.step_count} of {warm}: the model learns to answer from "
                 "both answers of every pair; DPO starts after it. Before = the untrained model."
                 if self.warming_up else
                 "DPO" + (f" since step {warm}: before = the model after its warm-up (the "
                          "reference)." if warm else ": before = the untrained model (the "
                                                     "reference)."))
        if answered != self.step_count:
            phase += f" The answers are from step {answered}."
        self._snap = {"step": self.step_count, "answers": rows, "pairs": len(self.pairs),
                      "phase": phase, "answers_step": answered,
                      "data_note": f"{len(self.pairs)} preference pairs from {self.source.name}",
                      "history": history,
                      "parameters": sum(p.numel() for p in self.model.parameters())}
        self._snap_key = self.step_count
        return self._snap

    def _rows(self) -> tuple[list[dict[str, str]], int]:
        """The answers shown and the step they are from: written again every ANSWER_EVERY
        steps, when the reference changes (the warm-up ends) or after a reset, so that the
        window's snapshots do not cost the lesson most of its speed."""
        cached = self._answers
        if (cached is None or cached[1] is not self.before
                or not 0 <= self.step_count - cached[0] < ANSWER_EVERY):
            rows = [{"prompt": row["prompt"], "chosen": row["chosen"],
                     "rejected": row["rejected"], "before": before,
                     "after": self.answer(self.model, row["prompt"])}
                    for row, before in zip(self.pairs[:SHOWN], self.before, strict=True)]
            cached = self._answers = (self.step_count, self.before, rows)
        return cached[2], cached[0]

    def export_model(self, folder: Path) -> list[Path]:
        """The policy as it is now, as a model folder Chat loads (the GPT lesson's writer), with
        the lesson's prompt format as its chat template and end-of-text as where replies stop."""
        from studio.pipelines.train.text_lessons import write_gpt

        return write_gpt(folder, tl.tensor_state(self.model), self.config,
                         self.tokenizer.to_str(), chat_template=CHAT_TEMPLATE, eos_token=EOS)

    def state_dict(self) -> dict[str, Any]:
        return {"config": dict(self.config), "seed": self.seed, "step_count": self.step_count,
                "model": tl.tensor_state(self.model),
                "reference": tl.tensor_state(self.reference),
                "optimizer": tl.optimizer_state(self._optimizer),
                "generators": tl.generator_states(self._gens),
                "history": torch.tensor(self.history, dtype=torch.float64).reshape(-1, 4)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.config = self.validate_config(state["config"])
        self.step_count = int(state["step_count"])
        self.model.load_state_dict(state["model"])
        self.reference.load_state_dict(state["reference"])
        self._optimizer = self._new_optimizer()
        self._optimizer.load_state_dict(state["optimizer"])
        tl.load_generator_states(self._gens, state["generators"])
        self.history = [(int(s), float(a), float(b), float(c))
                        for s, a, b, c in state["history"].tolist()]
        self.before = [self.answer(self.reference, row["prompt"])
                       for row in self.pairs[:SHOWN]]
        self._snap_key = None
        self._answers = None
