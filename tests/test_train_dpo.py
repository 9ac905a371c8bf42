"""The ``dpo`` lesson: its loss on a batch is TRL's DPOTrainer loss (pure DPO and with the
chosen-answer term), the warm-up's loss is transformers' own next-token loss and its model becomes
the reference, a run resumes exactly, a bad preference file gets a sentence naming the line and
the key, and the policy exports into Chat."""

from __future__ import annotations

import json

import pytest
import torch

from studio.pipelines.train.base import InvalidParameter
from studio.pipelines.train.dpo import DPOLesson, dpo_terms, sft_loss
from tests.fixtures.resume import assert_resumes_exactly
from tests.fixtures.torch_threads import one_torch_thread  # noqa: F401

TINY = {"width": 16, "heads": 2, "layers": 1, "context": 64, "batch_size": 2, "sft_steps": 0}


def tiny(seed=0, **overrides):
    return DPOLesson({**TINY, **overrides}, seed=seed)


@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_lesson_loss_equals_trl_dpo_trainer_loss(tmp_path, alpha):
    from datasets import Dataset
    from transformers import PreTrainedTokenizerFast
    from trl import DPOConfig, DPOTrainer

    lesson = tiny(beta=0.3, rpo_alpha=alpha)
    lesson.step()  # the policy moves away from the reference: the loss is no longer log 2
    batch = lesson.batch()
    ours = dpo_terms(lesson.model, lesson.reference, batch, 0.3, alpha)["loss"]
    tok = PreTrainedTokenizerFast(tokenizer_object=lesson.tokenizer, eos_token="<|endoftext|>",
                                  pad_token="<|endoftext|>")
    losses = {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, alpha]} if alpha else {}
    args = DPOConfig(output_dir=str(tmp_path), beta=0.3, report_to=[], use_cpu=True,
                     per_device_train_batch_size=2, max_length=64, bf16=False, fp16=False,
                     **losses)
    try:
        trainer = DPOTrainer(model=lesson.model, ref_model=lesson.reference, args=args,
                             train_dataset=Dataset.from_list(lesson.pairs), processing_class=tok)
        lesson.model.train()
        theirs = trainer.compute_loss(lesson.model, batch)
    finally:
        # The Trainer leaves accelerate's process-wide state behind; the lessons that run next
        # in this process build their own Accelerator and would be refused another one.
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(True)
    # TRL sums log-probs through its fused LM head: the same sums in another order
    torch.testing.assert_close(ours, theirs, rtol=1e-3, atol=1e-4)


def test_the_warm_up_is_next_token_training_and_its_model_becomes_the_reference():
    lesson = tiny(sft_steps=2)
    batch = lesson.batch()
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    theirs = lesson.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                          labels=labels).loss
    torch.testing.assert_close(sft_loss(lesson.model, batch), theirs)
    assert "Warm-up, step 0 of 2" in lesson.snapshot()["phase"]
    assert set(lesson.step()) == {"step", "sft_loss"}
    lesson.step()  # the last warm-up step: the model is frozen as the reference
    for name, value in lesson.model.state_dict().items():
        assert torch.equal(value, lesson.reference.state_dict()[name]), name
    assert lesson.before == [lesson.answer(lesson.model, row["prompt"])
                             for row in lesson.pairs[:3]]
    assert "loss" in lesson.step() and "DPO since step 2" in lesson.snapshot()["phase"]


@pytest.mark.parametrize("sft_steps", [0, 1, 3])  # in DPO, just after the warm-up, inside it
def test_resume_equals_an_uninterrupted_run(sft_steps):
    def run(trainer, n):
        return [trainer.step() for _ in range(n)]

    paused, _ = assert_resumes_exactly(lambda seed: tiny(seed, sft_steps=sft_steps), run)
    paused.set_param("beta", 0.5)  # a live knob
    assert paused.config["beta"] == 0.5


@pytest.mark.parametrize(("line", "words"), [
    ('{"prompt": "a", "chosen": "b"}', "line 2 has no 'rejected' key"),
    ("not json", "line 2 is not JSON"),
    ('{"prompt": "a", "chosen": "b", "rejected": "b"}', "line 2: 'chosen' and 'rejected'"),
])
def test_a_bad_preference_file_names_the_line_and_the_key(tmp_path, line, words):
    path = tmp_path / "mine.jsonl"
    good = json.dumps({"prompt": "p", "chosen": "yes", "rejected": "no"})
    path.write_text(good + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(InvalidParameter, match=words):
        tiny(preferences=str(path))


def test_studio_train_dpo_exports_a_model_chat_uses(capsys):
    from studio.cli import _main
    from studio.core.config import default_paths

    args = ["train", "dpo", "--steps", "2"]
    for key, value in TINY.items():
        args += ["--set", f"{key}={value}"]
    assert _main(args + ["--export", "polite"]) == 0
    assert "Exported polite: Chat lists it" in capsys.readouterr().err
    assert (default_paths().models_dir / "chat" / "polite" / "model.safetensors").is_file()
    assert _main(["chat", "--model", "polite", "--prompt", "Say hello.", "--temperature", "0",
                  "--max-new-tokens", "4"]) == 0
    # Chat asks the model as the lesson trained it: the prompt and a new line; a reply ends at
    # end-of-text
    from transformers import AutoTokenizer, GenerationConfig

    folder = default_paths().models_dir / "chat" / "polite"
    tok = AutoTokenizer.from_pretrained(folder)
    assert tok.apply_chat_template([{"role": "user", "content": "Say hello."}], tokenize=False,
                                   add_generation_prompt=True) == "Say hello.\n"
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    assert tok.eos_token_id == eos == GenerationConfig.from_pretrained(folder).eos_token_id


def test_the_answers_shown_are_written_every_few_steps_and_when_dpo_starts():
    from studio.pipelines.train.dpo import ANSWER_EVERY

    lesson = tiny(sft_steps=3)
    assert lesson.snapshot()["answers_step"] == 0
    lesson.step()
    snap = lesson.snapshot()
    assert snap["answers_step"] == 0 and "The answers are from step 0." in snap["phase"]
    for _ in range(2):
        lesson.step()  # the warm-up ends: a new reference, so the answers are written again
    assert lesson.snapshot()["answers_step"] == 3
    for _ in range(ANSWER_EVERY):
        lesson.step()
    snap = lesson.snapshot()
    assert snap["answers_step"] == snap["step"] == 3 + ANSWER_EVERY
    assert [r["before"] for r in snap["answers"]] == lesson.before
