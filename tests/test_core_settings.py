"""Settings: defaults, round trip, migration, corrupt files, STUDIO_HOME."""

from __future__ import annotations

import json

from studio.core.config import SCHEMA_VERSION, Settings, default_paths, load_settings, save_settings


def test_studio_home_moves_every_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path))
    p = default_paths()
    for folder in (p.config_dir, p.data_dir, p.models_dir, p.outputs_dir, p.runs_dir):
        assert tmp_path in folder.parents
    assert p.settings_file.parent == p.config_dir


def test_missing_file_gives_defaults(tmp_path):
    loaded = load_settings(tmp_path / "settings.json")
    assert loaded.settings == Settings()
    assert loaded.notice == ""


def test_round_trip(tmp_path):
    path = tmp_path / "cfg" / "settings.json"
    s = Settings(device="cpu", precision="bf16", theme="light", extra_model_dirs=["/a", "/b"],
                 preview_mode="off", output_dir=str(tmp_path / "out"))
    save_settings(s, path)
    assert json.loads(path.read_text())["schema_version"] == SCHEMA_VERSION
    assert load_settings(path).settings == s
    # Atomic write leaves no temp files behind.
    assert [f.name for f in path.parent.iterdir()] == ["settings.json"]


def test_corrupt_file_is_backed_up_and_defaults_used(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text("{ this is not json", encoding="utf-8")
    loaded = load_settings(path)
    assert loaded.settings == Settings()
    assert "could not be read" in loaded.notice
    backups = list(tmp_path.glob("settings.corrupt-*.json"))
    assert len(backups) == 1 and backups[0].read_text() == "{ this is not json"
    assert not path.exists()


def test_wrong_types_are_treated_as_corrupt(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(["a", "list"]), encoding="utf-8")
    assert load_settings(path).notice


def test_out_of_range_values_fall_back_to_defaults(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"schema_version": SCHEMA_VERSION, "device": "tpu",
                                "theme": "neon", "precision": "fp16"}))
    s = load_settings(path).settings
    assert (s.device, s.theme, s.precision) == ("auto", "dark", "fp16")


def test_v1_settings_are_migrated(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"schema_version": 1, "previews": False,
                                "extra_model_dirs": "/x:/y", "unknown_key": 3}))
    loaded = load_settings(path)
    assert loaded.notice == ""
    assert loaded.settings.preview_mode == "off"
    assert loaded.settings.extra_model_dirs == ["/x", "/y"]
    assert loaded.settings.schema_version == SCHEMA_VERSION


def test_user_overrides_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    s = Settings(output_dir=str(tmp_path / "pics"), models_dir=str(tmp_path / "m"))
    p = s.resolved_paths()
    assert p.outputs_dir == tmp_path / "pics"
    assert p.models_dir == tmp_path / "m"
    assert p.settings_file == tmp_path / "home" / "config" / "settings.json"
