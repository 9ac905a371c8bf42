"""A cancel reaches inside one denoising step and inside prompt encoding (issue 20, item 4).

diffusers looks for an interrupt between steps only; Studio's forward pre-hooks on the UNet's
blocks and the text encoder's layers stop a job in the block after the cancel, and change no
pixel when nobody cancels.
"""

from __future__ import annotations

import numpy as np
import pytest

from studio.core.jobs import CancelToken, JobCancelled, JobState, running_cancel_token, running_job
from studio.core.lanes import JobRunner
from studio.pipelines.diffusion.interrupt import watch_for_cancel
from tests.fixtures.torch_threads import one_torch_thread  # noqa: F401


@pytest.fixture(scope="module")
def pipe(tiny_sd15_dir):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(tiny_sd15_dir, safety_checker=None)


def draw(pipe):
    import torch

    return pipe("a red square", num_inference_steps=2, width=64, height=64, output_type="np",
                generator=torch.Generator("cpu").manual_seed(3)).images


def test_the_worker_lane_names_the_running_jobs_token():
    seen = []
    runner = JobRunner({"look": lambda request, progress, cancel: seen.append(
        running_cancel_token() is cancel)})
    job = runner.submit("look", None)
    assert runner.wait(job, 60) and job.state is JobState.DONE
    runner.shutdown(timeout=60)
    assert seen == [True] and running_cancel_token() is None


def test_watched_blocks_change_no_pixel_and_stop_in_the_block_after_a_cancel(pipe):
    before = draw(pipe)
    watch_for_cancel(pipe)
    watch_for_cancel(pipe)  # a cached pipeline is watched once, however often it is loaded
    hooks = pipe.unet.down_blocks[0]._forward_pre_hooks
    assert len(hooks) == 1
    token = CancelToken()
    with running_job(token):
        assert np.array_equal(draw(pipe), before)

    # the user cancels while the first down block of the first step runs
    ups = []
    late = [pipe.unet.down_blocks[0].register_forward_hook(lambda *a: token.cancel()),
            pipe.unet.up_blocks[0].register_forward_pre_hook(lambda *a: ups.append(1))]
    try:
        with running_job(token), pytest.raises(JobCancelled):
            draw(pipe)
    finally:
        for handle in late:
            handle.remove()
    assert ups == []  # the step did not run to its end


def test_a_cancel_stops_prompt_encoding(pipe):
    watch_for_cancel(pipe)
    token = CancelToken()
    token.cancel()
    with running_job(token), pytest.raises(JobCancelled):
        pipe.encode_prompt("a very long prompt " * 40, "cpu", 1, False)
    # outside a job nothing is checked
    pipe.encode_prompt("a prompt", "cpu", 1, False)
