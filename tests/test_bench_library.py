"""bench/library.py runs, with tiny arguments, and measures what it says it measures."""

from __future__ import annotations

import os

import pytest

from bench import library


def test_synthetic_hub_cache_is_read_by_huggingface_hub_and_by_the_library(tmp_path, capsys):
    result = library.run_scan_bench(10, 1, tmp_path)
    assert result["made"] == {kind: 2 for kind in library.REPO_KINDS}
    # huggingface_hub sees every repo, with no warning about the layout…
    assert result["hub_repos"] == 10 and result["warnings"] == 0
    assert result["size_on_disk"] > 10e9  # real header byte ranges over sparse data
    assert sum(os.stat(p).st_blocks for p in (tmp_path / "hf-home").rglob("*")
               if p.is_file()) * 512 < 50e6  # …which takes (almost) no disk
    # …and so does the library: each repo once, the pipelines and chat models recognised.
    assert result["listed"] == 10 and sum(result["kinds"].values()) == 10
    assert result["kinds"]["image"] >= 2 and result["kinds"]["chat"] == 2
    assert "unknown" not in result["kinds"], "a repo of loose files listed as unknown"
    assert result["hub_scans"] >= 1 and result["studio_s"] > 0 and result["raw_s"] > 0
    library.print_scan(result, 1)
    assert "ratio studio/raw" in capsys.readouterr().out


def test_headers_are_real_safetensors(tmp_path):
    from studio.library.classify import classify_file
    from studio.library.detect import detect_single_file

    arch = library.Architectures()
    for name, shapes, expect in (("sd15", arch.single_file["sd15"], "sd1"),
                                 ("sdxl", arch.single_file["sdxl"], "sdxl")):
        head, data = library.safetensors_header(shapes)
        path = tmp_path / f"{name}.safetensors"
        with open(path, "wb") as fh:
            fh.write(head)
            fh.truncate(len(head) + data)
        assert detect_single_file(path).family == expect
    head, data = library.safetensors_header(arch.lora)
    lora = tmp_path / "lora.safetensors"
    lora.write_bytes(head + bytes(data))
    kind = classify_file(lora)
    assert (kind.kind, kind.family, kind.format) == ("lora", "sd1", "kohya")
    assert len(arch.diffusers["sdxl"]["unet"]) > 1500 and len(arch.chat) > 250  # real sizes


def test_switch_back_reads_a_model_still_in_memory_never_again(tmp_path, capsys):
    result = library.run_switch_bench("tiny", 0.0, 1, tmp_path)
    assert [row["model"] for row in result["rows"]] == ["A", "B", "A"]
    # The automatic budget holds two tiny pipelines: the third generation loads nothing.
    assert [row["loaded"] for row in result["rows"]] == [1, 1, 0]
    assert result["rows"][2]["load_s"] < result["rows"][0]["load_s"]
    assert result["raw_load_s"] > 0 and result["raw_total_s"] > result["raw_load_s"]
    library.print_switch(result)
    assert "A was NOT reloaded" in capsys.readouterr().out


def test_command_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        library.main(["--help"])
    assert exit_.value.code == 0 and "--budget-gb" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        library.main(["--models", "2"])  # fewer than one repo of each kind
