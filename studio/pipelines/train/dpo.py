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
    check_loss,
)
from studio.pipelines.train.registry import lesson_text
from studio.pipelines.train.text_lessons import check_width_heads

PREFERENCES = ASSETS_DIR / "preferences" / "studio-polite.jsonl"
KEYS = ("prompt", "chosen", "rejected")
EOS = "<|endoftext|>"
#: prompts whose answers are shown before (the reference) and after (the policy) training
SHOWN = 3
ANSWER_TOKENS = 40
MAX_PAIRS = 5000
MAX_CHARS = 2000

EXPLANATION = """\
**What you see.** A small GPT learns from pairs of answers to the same prompt: one a person
preferred (*chosen*), one they did not (*rejected*). DPO needs no reward model: it raises the
log-probability of the chosen answer and lowers the rejected one's, each measured *relative to a
frozen copy of the starting model* (the reference). β·(that log-ratio) is the answer's *implicit
reward*. The plot shows the DPO loss, the reward margin (chosen minus rejected reward) and the
reward accuracy (the share of pairs where the chosen answer's reward is higher). Below: the
answers of the model before training and now, to the same prompts.

**What to try.** Change β while it runs: a small β (0.05) lets the policy drift far from the
reference; a large β (1–5) keeps it close and makes the loss react sharply to small margins.
Raise the learning rate and watch the margins grow faster — and the answers fall apart if it is
too high. Load your own `.jsonl` (one `{"prompt", "chosen", "rejected"}` object a line).

**What is normal.** The loss starts at log 2 ≈ 0.69 (policy = reference, margin 0, accuracy
around half) and falls; within a few hundred steps (a minute or two on two cores) the accuracy
reaches 1.0 and the margins keep growing. The answers move towards the chosen style.
"""


def _info() -> LessonInfo:
    return LessonInfo(
        **lesson_text("dpo"), explanation=EXPLANATION,
        series=("loss", "margin", "accuracy", "chosen_reward", "rejected_reward"),
        log_scale=False,
        series_labels={"loss": "DPO loss", "margin": "reward margin",
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


def completion_logps(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Each row's completion log-probability, summed over its tokens (TRL's ``logps``)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   use_cache=False).logits[:, :-1].float()
    targets = batch["input_ids"][:, 1:]
    per_token = torch.gather(logits.log_softmax(-1), 2, targets.unsqueeze(-1)).squeeze(-1)
    return (per_token * batch["completion_mask"][:, 1:]).sum(1)


def dpo_terms(policy: nn.Module, reference: nn.Module, batch: dict[str, torch.Tensor],
              beta: float) -> dict[str, torch.Tensor]:
    """The sigmoid DPO loss of one collated batch and its rewards (as TRL computes them)."""
    logps = completion_logps(policy, batch)
    with torch.no_grad():
        ref = completion_logps(reference, batch)
    chosen, rejected = logps.chunk(2)
    ref_chosen, ref_rejected = ref.chunk(2)
    chosen_ratio, rejected_ratio = chosen - ref_chosen, rejected - ref_rejected
    loss = (-F.logsigmoid(beta * (chosen_ratio - rejected_ratio))).mean()
    return {"loss": loss, "chosen_reward": beta * chosen_ratio.detach(),
            "rejected_reward": beta * rejected_ratio.detach()}


class DPOLesson(Trainer):
    """DPO on a tiny GPT-2 with a frozen reference copy; one step = one batch of pairs."""

    info = _info()
    params = (
        ParamSpec("beta", 0.1, "float", minimum=0.001, maximum=10.0, live=True, label="β",
                  log_scale=True,
                  help="How strongly the policy is held near the reference (DPO's β)."),
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
        self._optimizer = torch.optim.AdamW(self.model.parameters(), lr=float(cfg["lr"]),
                                            weight_decay=0.0)
        self._gens = {"train": tl.seeded_generator(seed, 2)}
        self.history: list[tuple[int, float, float, float]] = []
        self.before = [self.answer(self.reference, row["prompt"])
                       for row in self.pairs[:SHOWN]]
        self._snap_key: int | None = None
        self._snap: dict[str, Any] = {}

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

    def step(self, part: str | None = None) -> dict[str, float]:
        batch = self.batch()
        self.model.train()
        terms = dpo_terms(self.model, self.reference, batch, float(self.config["beta"]))
        self._optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.step_count += 1
        value = float(terms["loss"].detach())
        check_loss(value, self.step_count)
        self._optimizer.step()
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
        rows = [{"prompt": row["prompt"], "chosen": row["chosen"], "rejected": row["rejected"],
                 "before": before, "after": self.answer(self.model, row["prompt"])}
                for row, before in zip(self.pairs[:SHOWN], self.before, strict=True)]
        history = np.asarray(self.history, dtype=np.float64).reshape(-1, 4)
        self._snap = {"step": self.step_count, "answers": rows, "pairs": len(self.pairs),
                      "data_note": f"{len(self.pairs)} preference pairs from {self.source.name}",
                      "history": history,
                      "parameters": sum(p.numel() for p in self.model.parameters())}
        self._snap_key = self.step_count
        return self._snap

    def export_model(self, folder: Path) -> list[Path]:
        """The policy as it is now, as a model folder Chat loads (the GPT lesson's writer)."""
        from studio.pipelines.train.text_lessons import write_gpt

        return write_gpt(folder, tl.tensor_state(self.model), self.config,
                         self.tokenizer.to_str())

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
        self._optimizer = torch.optim.AdamW(self.model.parameters(), lr=float(self.config["lr"]),
                                            weight_decay=0.0)
        self._optimizer.load_state_dict(state["optimizer"])
        tl.load_generator_states(self._gens, state["generators"])
        self.history = [(int(s), float(a), float(b), float(c))
                        for s, a, b, c in state["history"].tolist()]
        self.before = [self.answer(self.reference, row["prompt"])
                       for row in self.pairs[:SHOWN]]
        self._snap_key = None
