"""The ``lora-chat`` lesson: fine-tune a chat model with LoRA (``peft``) on question/answer pairs.

The base model is a chat model from the library (its name as Chat lists it, or its folder), or,
when the student names none, a tiny Llama Studio builds with the real ``transformers`` class
(random weights seeded by the run, a byte-level BPE tokenizer trained on the instruction set and
a ChatML template): it writes nonsense before training and the set's answers after. ``peft``
injects LoRA matrices of rank *r* into the attention projections; only they train (the
trainable-parameter count against the total is shown), scaled by alpha / r. The loss is the
cross-entropy on the answer tokens only (the question is masked with -100). Every
``sample_every`` steps the model answers the same prompts greedily, with the adapter on (after)
and off (before), so the two columns compare the same questions.

:func:`write_lora_chat` exports the adapter (``adapter/``, peft's format) and the merged model
(a ``transformers`` folder Chat loads) from the lesson's state alone. No Qt here; torch, peft and
transformers are imported with the module (the registry imports lessons lazily).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from studio.core.wording import count_of
from studio.pipelines.train import torch_lessons as tl
from studio.pipelines.train.base import InvalidParameter, LessonInfo, ParamSpec, Trainer
from studio.pipelines.train.chat_data import (
    SOURCE_NAMES,
    SOURCES,
    Example,
    InstructionSet,
    chat_model_folder,
    instruction_file_problem,
    load_instructions,
)
from studio.pipelines.train.registry import lesson_text
from studio.pipelines.train.text_data import new_bpe

MAX_TOKENS = 256  # a training example (question + answer) is cut to this many tokens
PROMPTS_SHOWN = 3  # the set's first questions, asked before and after
TINY_VOCAB = 512
HEAD_SCALE = 30.0  # the tiny model's output weights are widened this much (see tiny_model)
TINY_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
TINY_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")

EXPLANATION = """\
**What you see.** LoRA (low-rank adaptation) freezes every weight of a chat model and learns,
beside each attention projection W, two thin matrices B·A of rank *r*: the layer becomes
W + (alpha / r)·B·A. B starts at zero, so before training the model is exactly the base model.
Only A and B train — the count of trainable parameters against the total shows how few. The loss
is the cross-entropy on the answer tokens of the instruction set (the question is given, not
learned). Every *Answer every* steps the model answers the same questions greedily: left, the
base model (adapter off); right, with the adapter.

**What to try.** Lower the rank to 1 and raise it to 32: the trainable count changes, the loss
curve barely. Raise alpha (or the learning rate) and the answers change sooner, until the loss
jumps. Ask your own question (Your question) while it trains. Use your own `.jsonl` file of
questions and answers. Name a chat model from your library (Chat model) to teach a real model
your answers; pause and use **Runs → Export model to Chat…** (or `studio train lora-chat
--steps 200 --export NAME`), then chat with it.

**What is normal.** With Studio's tiny model (random weights, confidently wrong) the loss starts
near 15 and the answers are nonsense; by step 150 (seconds on 2 busy cores) the loss is under 1
and the set's answers come back word for word, while a question it never saw gets one of them
("What is the capital of Spain?" → "The capital of Italy is Rome.") — a tiny model memorises, it
does not understand. A real chat model answers sensibly from
the start and picks up the set's wording within tens of steps.
"""


class LoraChatLesson(Trainer):
    """LoRA adapters (``peft``) trained on a chat model's answers."""

    info = LessonInfo(**lesson_text("lora-chat"),
                      explanation=EXPLANATION,
                      log_scale=False, series_labels={"loss": "Loss on the answers"})
    params = (
        tl.lr_spec(3e-3),
        ParamSpec("rank", 8, "int", minimum=1, maximum=256, label="Rank (r)",
                  help="Rank of the LoRA matrices: more rank, more trainable parameters."),
        ParamSpec("alpha", 16, "int", minimum=1, maximum=1024, label="Alpha",
                  help="The adapter's update is scaled by alpha / rank."),
        ParamSpec("batch_size", 8, "int", minimum=1, maximum=256, label="Batch size",
                  help="Examples per update."),
        ParamSpec("sample_every", 25, "int", minimum=1, maximum=100_000, live=True,
                  label="Answer every", help="Steps between the before/after answers."),
        ParamSpec("answer_tokens", 32, "int", minimum=1, maximum=512, live=True,
                  label="Answer length", help="Most tokens an answer may have."),
        ParamSpec("question", "What is the capital of Spain?", "text", maximum=400, live=True,
                  label="Your question", help="Asked with the set's questions, before and "
                                              "after."),
        ParamSpec("model", "", "folder", label="Chat model",
                  help="A chat model's name as Chat lists it, or its folder; empty: a tiny "
                       "Llama Studio builds (random weights)."),
        ParamSpec("dataset", "studio", "choice", choices=SOURCES, label="Instructions",
                  choice_labels=SOURCE_NAMES,
                  help="Questions and answers to learn: Studio's 42 (public domain) or your own "
                       ".jsonl file."),
        ParamSpec("data_file", "", "file", label="Instruction file",
                  help='Your .jsonl file: one {"prompt": …, "response": …} per line (or '
                       '{"messages": [...]}).'),
    )

    @classmethod
    def validate_config(cls, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        config = super().validate_config(overrides)
        if config["dataset"] == "file":
            problem = instruction_file_problem(config["data_file"])
            if problem:
                raise InvalidParameter(problem)
        if str(config["model"]).strip():
            chat_model_folder(str(config["model"]))
        return config

    def __init__(self, config: dict[str, Any] | None = None, seed: int = 0,
                 step_count: int = 0) -> None:
        super().__init__(config=self.validate_config(config), seed=seed, step_count=step_count)
        self.data: InstructionSet = load_instructions(self.config["dataset"],
                                                      self.config["data_file"])
        self.base_name, base, self.tokenizer, self._tiny = self._base()
        self.model = with_lora(base, self.config)
        self._gens = {"train": tl.seeded_generator(seed, 2)}
        self._optimizer = self._new_optimizer()
        self._prompts = [e.chat() for e in self.data.examples[:PROMPTS_SHOWN]]
        self.answers: dict[str, Any] = {}
        self._before: dict[str, str] = {}
        self._snap_key: tuple | None = None
        self._snap: dict[str, Any] = {}

    def _base(self) -> tuple[str, Any, Any, dict[str, Any] | None]:
        """(name, model, tokenizer, the tiny model's state or None for a library model)."""
        spec = str(self.config["model"]).strip()
        if spec:
            folder = chat_model_folder(spec)
            model, tokenizer = load_base(folder)
            return folder.name, model, tokenizer, None
        tokenizer = tiny_tokenizer(self.data)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(tl.seeded_generator(self.seed, 1).initial_seed())
            model = tiny_model(tokenizer)
        tiny = {"weights": tl.tensor_state(model), "tokenizer": tokenizer.backend_tokenizer.to_str()}
        return "Studio's tiny Llama (random weights)", model, tokenizer, tiny

    def _new_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad],
                                 lr=float(self.config["lr"]), weight_decay=0.0)

    def on_param_changed(self, name: str) -> None:
        if name == "lr":
            tl.set_lr(self._optimizer, float(self.config["lr"]))

    # -- training --------------------------------------------------------------------------------
    def step(self, part: str | None = None) -> dict[str, float]:
        n = min(int(self.config["batch_size"]), len(self.data.examples))
        order = torch.randperm(len(self.data.examples), generator=self._gens["train"])[:n]
        batch = encode_batch(self.tokenizer, [self.data.examples[int(i)] for i in order])
        self.model.train()
        value = tl.clipped_step(self, self._optimizer, self.model(**batch).loss,
                                [p for p in self.model.parameters() if p.requires_grad])
        if self.step_count % int(self.config["sample_every"]) == 0:
            self.answers = {"step": self.step_count, "after": self._answer_all()}
        return {"step": self.step_count, "loss": value}

    def questions(self) -> list[list[dict[str, str]]]:
        typed = str(self.config["question"]).strip()
        return self._prompts + ([[{"role": "user", "content": typed}]] if typed else [])

    def _answer_all(self) -> list[str]:
        return [answer(self.model, self.tokenizer, q, int(self.config["answer_tokens"]))
                for q in self.questions()]

    def _before_answers(self) -> list[str]:
        """The base model's answers (adapter off), computed once per question and length."""
        out = []
        with self.model.disable_adapter():
            for q in self.questions():
                key = f"{int(self.config['answer_tokens'])}|{q[-1]['content']}"
                if key not in self._before:
                    self._before[key] = answer(self.model, self.tokenizer, q,
                                               int(self.config["answer_tokens"]))
                out.append(self._before[key])
        return out

    def trainable_parameters(self) -> tuple[int, int]:
        """(trainable, total) parameters of the model with its adapter."""
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        return trainable, sum(p.numel() for p in self.model.parameters())

    def snapshot(self) -> dict[str, Any]:
        key = (self.step_count, str(self.config["question"]), int(self.config["answer_tokens"]),
               self.answers.get("step"))
        if key == self._snap_key:
            return self._snap
        trainable, total = self.trainable_parameters()
        questions = self.questions()
        after = list(self.answers.get("after", []))
        if len(after) != len(questions):  # a new question, or none yet: answer now
            after = self._answer_all()
            self.answers = {"step": self.step_count, "after": after}
        snap = {
            "step": self.step_count, "model": self.base_name, "data_note": self.data.describe(),
            "trainable": trainable, "total": total,
            "parameters_note": (f"{count_of(trainable, 'trainable parameter')} of {total:,} "
                                f"({100 * trainable / max(total, 1):.2f} %)"),
            "questions": [q[-1]["content"] for q in questions],
            "before": self._before_answers(), "after": after,
            "answered_at": int(self.answers.get("step", self.step_count)),
        }
        self._snap_key, self._snap = key, snap
        return snap

    # -- state and export ------------------------------------------------------------------------
    def adapter_state(self) -> dict[str, torch.Tensor]:
        from peft.utils import get_peft_model_state_dict

        return {k: v.detach().clone() for k, v in get_peft_model_state_dict(self.model).items()}

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "config": dict(self.config), "seed": self.seed, "step_count": self.step_count,
            "adapter": self.adapter_state(), "optimizer": tl.optimizer_state(self._optimizer),
            "generators": tl.generator_states(self._gens),
            "answers": {"step": int(self.answers.get("step", 0)),
                        "after": list(self.answers.get("after", []))}}
        if self._tiny is not None:  # a run's checkpoint alone is enough to export it
            state["tiny"] = self._tiny
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from peft.utils import set_peft_model_state_dict

        self.config = self.validate_config(state["config"])
        self.step_count = int(state["step_count"])
        set_peft_model_state_dict(self.model, state["adapter"])
        self._optimizer = self._new_optimizer()
        self._optimizer.load_state_dict(state["optimizer"])
        tl.load_generator_states(self._gens, state["generators"])
        saved = state.get("answers") or {}
        self.answers = ({"step": int(saved["step"]), "after": [str(a) for a in saved["after"]]}
                        if saved.get("after") else {})
        self._snap_key = None

    def export_model(self, folder: Path) -> list[Path]:
        """The model as it is now: the merged model Chat loads, and the adapter in ``adapter/``
        (:func:`write_lora_chat`)."""
        return write_lora_chat(folder, self.state_dict())


# -- the pieces -----------------------------------------------------------------------------------
def load_base(folder: Path) -> tuple[Any, Any]:
    """A library chat model and its tokenizer, in float32 on the CPU (it trains there)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True,
                                                  trust_remote_code=False)
        model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True,
                                                     trust_remote_code=False,
                                                     dtype=torch.float32)
    except (OSError, ValueError, TypeError) as exc:
        raise InvalidParameter(f"{folder.name} cannot be loaded: "
                               f"{str(exc).splitlines()[0][:200]}") from None
    if not getattr(tokenizer, "chat_template", None):
        raise InvalidParameter(f"{folder.name} has no chat template, so questions cannot be "
                               "put to it as a chat; choose a chat (instruct) model.")
    return model, tokenizer


def tiny_tokenizer(data: InstructionSet) -> Any:
    """A byte-level BPE (``tokenizers``) trained on the set's text, with ChatML specials."""
    text = "\n".join(c for e in data.examples for _, c in (*e.messages, ("", e.answer)))
    return _fast(new_bpe(TINY_VOCAB, text, TINY_SPECIALS))


def _fast(raw: Any) -> Any:
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", bos_token=None, unk_token=None,
                                   model_max_length=MAX_TOKENS)
    fast.chat_template = TINY_TEMPLATE
    return fast


def tiny_model(tokenizer: Any) -> Any:
    """A small ``LlamaForCausalLM`` for ``tokenizer`` (random weights from the torch seed)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=MAX_TOKENS, eos_token_id=eos, pad_token_id=pad,
                         bos_token_id=None, tie_word_embeddings=False,
                         architectures=["LlamaForCausalLM"])
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        # The final RMSNorm gives hidden states of unit size and the output head is frozen:
        # with its small initial weights no adapter could make a confident prediction. A wider
        # head makes the random model a sharp (if wrong) predictor, as a trained one is.
        model.lm_head.weight.mul_(HEAD_SCALE)
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = pad
    return model


def lora_config(config: dict[str, Any]) -> Any:
    """LoRA on every linear layer but the output head (peft's "all-linear", as QLoRA does)."""
    from peft import LoraConfig

    return LoraConfig(r=int(config["rank"]), lora_alpha=int(config["alpha"]),
                      target_modules="all-linear", lora_dropout=0.0, bias="none",
                      task_type="CAUSAL_LM")


def with_lora(base: Any, config: dict[str, Any]) -> Any:
    """``base`` wrapped by peft with fresh LoRA matrices (B = 0: the output is the base's)."""
    from peft import get_peft_model

    for p in base.parameters():
        p.requires_grad_(False)
    with torch.random.fork_rng(devices=[]):  # A's init must not move the global RNG either
        torch.manual_seed(0)
        return get_peft_model(base, lora_config(config))


def prompt_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if isinstance(ids, dict) or hasattr(ids, "input_ids"):
        ids = ids["input_ids"]
    return list(ids)


def encode_batch(tokenizer: Any, examples: list[Example]) -> dict[str, torch.Tensor]:
    """Input ids, attention mask and labels (-100 on the question and the padding)."""
    rows: list[tuple[list[int], list[int]]] = []
    eos = tokenizer.eos_token_id
    for e in examples:
        prompt = prompt_ids(tokenizer, e.chat())
        reply = tokenizer.encode(e.answer, add_special_tokens=False)
        reply = reply + ([eos] if eos is not None else [])
        ids = (prompt + reply)[:MAX_TOKENS]
        labels = ([-100] * len(prompt) + reply)[:MAX_TOKENS]
        rows.append((ids, labels))
    width = max(len(ids) for ids, _ in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos or 0)
    input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in rows])
    labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in rows])
    mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in rows])
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


@torch.no_grad()
def answer(model: Any, tokenizer: Any, messages: list[dict[str, str]], max_tokens: int) -> str:
    """The greedy answer of ``model`` to ``messages`` (special tokens left out)."""
    model.eval()
    ids = torch.tensor([prompt_ids(tokenizer, messages)])
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                         max_new_tokens=max_tokens, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()


def write_lora_chat(folder: Path, state: dict[str, Any]) -> list[Path]:
    """A trained ``lora-chat`` run (its state) written as a model folder: the merged model
    (config, safetensors weights, tokenizer with its chat template) that Chat loads, and the
    adapter alone in ``adapter/`` (peft's ``adapter_config.json`` and
    ``adapter_model.safetensors``, for use on the same base model). Returns the top files."""
    from peft.utils import set_peft_model_state_dict
    from tokenizers import Tokenizer

    config = state["config"]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        if "tiny" in state:
            tokenizer = _fast(Tokenizer.from_str(state["tiny"]["tokenizer"]))
            base = tiny_model(tokenizer)
            base.load_state_dict(state["tiny"]["weights"])
        else:
            base, tokenizer = load_base(chat_model_folder(str(config["model"])))
        model = with_lora(base, config)
    set_peft_model_state_dict(model, state["adapter"])
    model.save_pretrained(str(folder / "adapter"), safe_serialization=True)
    merged = model.merge_and_unload()
    merged.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    return sorted(p for p in folder.iterdir() if p.is_file())
