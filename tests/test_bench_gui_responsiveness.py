"""bench/gui_responsiveness.py's window measurements run against today's window and engine.

They reach into the window (the Generate panel, the engine's GPU lane) and no test ran them: after
#13's engine one of them asked the engine for ``alive``, which only a lane has, and the script
ended with an AttributeError after its first two measurements. Here they run with the tests'
tiny model; what they measure (times) is not asserted, only that they measure it."""

from __future__ import annotations

import pytest

from bench import gui_responsiveness as bench


@pytest.fixture
def tiny_model(tmp_path):
    from tests.fixtures.tiny_models import build_tiny_sd15

    return build_tiny_sd15(tmp_path / "tiny-sd15")


def test_cancel_and_close_measure_a_cancelled_job_and_a_stopped_worker(qapp, tmp_path,
                                                                       tiny_model):
    result = bench.measure_cancel_and_close(tmp_path / "home", tiny_model)
    assert set(result) == {"cancel_s", "close_s", "step_s"}
    assert all(value > 0 for value in result.values())


def test_stall_is_measured_over_a_whole_generate_job(qapp, tmp_path, tiny_model):
    result = bench.measure_stall(tmp_path / "home", tiny_model)
    assert result["ticks"] > 0 and result["max_ms"] >= result["p99_ms"] > 0
    assert result["job_s"] > 0
