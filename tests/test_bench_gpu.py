"""bench/gpu.py, the prepared GPU check (#15, #18): its families are every text-to-image family
at its published size (checked on the meta device, no memory), and its --dry-run — the same code
on the CPU with the tiny fixtures — runs Studio's txt2img path against plain diffusers, the
planner's estimates, NF4 and the LoRA trainer against the bare loop, and writes its JSON."""

from __future__ import annotations

import json

import pytest

from bench.gpu import main
from bench.gpu_families import SPECS, real_parameter_counts, spec_for
from studio.library.families import FAMILIES

B = 1e9
#: published parameter counts of the real models (billions)
PUBLISHED = {
    ("sd1", "unet"): 0.86, ("sd2", "unet"): 0.865, ("sdxl", "unet"): 2.57,
    ("sdxl", "text_encoder_2"): 0.695, ("sd3", "transformer"): 2.24,
    ("sd3", "text_encoder_3"): 4.76, ("flux", "transformer"): 11.9,
    ("flux", "text_encoder_2"): 4.76, ("chroma", "transformer"): 8.9,
    ("flux2", "transformer"): 3.88, ("flux2", "text_encoder"): 4.02,
    ("qwen-image", "transformer"): 20.4, ("qwen-image", "text_encoder"): 8.29,
    ("z-image", "transformer"): 6.15, ("z-image", "text_encoder"): 4.02,
}


def test_every_text_to_image_family_has_a_real_size_spec():
    assert {s.key for s in SPECS} == {k for k, f in FAMILIES.items() if not f.edit}


def test_the_real_sizes_are_the_published_ones(tmp_path):
    for (family, part), billions in PUBLISHED.items():
        spec = spec_for(family)
        assert spec is not None
        count = real_parameter_counts(spec, tmp_path)[part]
        assert count == pytest.approx(billions * B, rel=0.01), (family, part, count)


def test_the_dry_run_runs_studio_and_diffusers_and_the_trainer(studio_home, tmp_path, capsys):
    out = tmp_path / "gpu.json"
    assert main(["--dry-run", "--only", "sd1,flux", "--settings", "full,model,nf4",
                 "--out", str(out)]) == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["dry_run"] and data["device"] == "cpu"
    rows = {(r["family"], r["setting"]): r for r in data["families"]}
    for family in ("sd1", "flux"):
        full = rows[(family, "full")]
        assert full["studio_it_s"] > 0 and full["raw_it_s"] > 0 and full["ratio"] > 0
        assert full["peak_gb"] is None  # no VRAM on the CPU
        assert full["estimate_gb"] >= full["weights_gb"] > 0
        assert "needs ~" in full["planner_said"]
        assert rows[(family, "model")]["skipped"].startswith("offload needs CUDA")
        nf4 = rows[(family, "nf4")]
        if "skipped" in nf4:
            assert "bitsandbytes" in nf4["skipped"]
        else:  # the denoiser in 4 bits: less weight than full
            assert nf4["weights_gb"] < full["weights_gb"] and nf4["studio_it_s"] > 0
    lora = {r["family"]: r for r in data["lora"]}
    assert set(lora) == {"sd1", "flux"}
    assert lora["sd1"]["studio_steps_s"] > 0 and lora["sd1"]["bare_steps_s"] > 0
    assert lora["sd1"]["estimate_gb"] > 0
    # FLUX.1's trainer is timed against its bare loop by bench/lora_train.py, and says so here
    assert "bench/lora_train.py --family flux" in lora["flux"]["skipped"]
    table = capsys.readouterr().out
    assert "Studio's txt2img vs plain diffusers" in table and "LoRA training on cpu" in table
