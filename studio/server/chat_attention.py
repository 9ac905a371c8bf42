"""``"studio": {"attention": true}`` on ``/v1/chat/completions`` and ``/v1/completions``: the
last layer's attention when a local model wrote each token of its reply — what the Chat
window's "Where it looked" shows for one token — as ``studio_attention`` in the answer (the
whole answer's top level; streamed, an event of its own before ``[DONE]``).

It is one more job after the reply (``AttentionRequest`` with ``generated``: one eager-attention
pass over the prompt and the reply), so a reply asked without it costs nothing more. Shape::

    "studio_attention": {"layer": -1, "heads": H, "prompt_tokens": P,
                         "tokens": ["…", …],          # the prompt's tokens, then the reply's
                         "rows": [[w, …], …],         # row i: reply token i's weights over
                         "left_out": 0}               # tokens[:P + i], averaged over heads

``left_out``: prompt tokens before the model's context that were not read (the rows then start
later in ``tokens``). An answer too large to send, or a pass that failed, gives ``{"error":
sentence}`` instead, and the reply itself still comes.
"""

from __future__ import annotations

from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from fastapi import Request

from studio.core.jobs import JobState
from studio.server.catalog import ServedModel
from studio.server.schemas import ApiError
from studio.server.streaming import JobEvents

if TYPE_CHECKING:
    from studio.pipelines.chat.types import TokenLogprob

#: the most weights one answer carries (reply tokens × tokens read): about 40 MB of JSON
MAX_ATTENTION_WEIGHTS = 2_000_000
FIELD = "studio_attention"


def check(served: ServedModel, attention: bool) -> None:
    """A 400 for attention asked of a model on another server (its weights are not here)."""
    from studio.pipelines.chat.remote import is_remote_spec

    if attention and is_remote_spec(served.spec):
        raise ApiError(400, f"Attention is shown for local chat models only; {served.id} runs on "  # plural-ok
                            "another server.", "studio.attention", "attention_unsupported")


async def attention_of(job_events: JobEvents, request: Request, served: ServedModel,
                       prompt_ids: list[int], tokens: list[TokenLogprob]) -> dict[str, Any]:
    """``studio_attention`` for a reply whose scored ``tokens`` (with ids) followed
    ``prompt_ids``."""
    from studio.pipelines.chat.types import AttentionRequest

    ids = [int(t.id) for t in tokens]
    if not ids:
        return {"error": "The reply has no tokens to show the attention of."}
    if not prompt_ids or any(i < 0 for i in ids):
        return {"error": "The model did not report the token ids its attention needs."}
    weights = len(ids) * (len(prompt_ids) + len(ids))
    if weights > MAX_ATTENTION_WEIGHTS:
        return {"error": f"The attention of this reply is {weights:,} weights, over the "
                         f"{MAX_ATTENTION_WEIGHTS:,} one answer carries: ask for fewer tokens "
                         "or a shorter prompt."}
    job = None
    job_request = AttentionRequest(model=served.spec, input_ids=list(prompt_ids) + ids,
                                   generated=len(ids))
    async with aclosing(job_events(request, job_request, "attention")) as stream:
        async for what, item in stream:
            if what == "end":
                job = item
    if job is None or job.state is not JobState.DONE or job.result is None:
        return {"error": (job.error if job is not None and job.error else
                          "The attention could not be read.")}
    seen = job.result
    return {"layer": -1, "heads": seen.heads, "prompt_tokens": len(prompt_ids) - seen.left_out,
            "tokens": seen.tokens, "rows": seen.rows, "left_out": seen.left_out}
