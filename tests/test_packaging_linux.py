"""The Linux installer's parts that run without a full build: the AppImage assembly
(packaging/linux/make_appimage.sh) and the faces data set an installer ships."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MAKE_APPIMAGE = ROOT / "packaging" / "linux" / "make_appimage.sh"
needs_squashfs = pytest.mark.skipif(
    not (shutil.which("mksquashfs") and shutil.which("unsquashfs")),
    reason="squashfs-tools is not installed")


def _appdir(tmp_path: Path) -> Path:
    appdir = tmp_path / "AppDir"
    (appdir / "usr" / "lib" / "studio").mkdir(parents=True)
    (appdir / "usr" / "lib" / "studio" / "studio").write_text("#!/bin/sh\necho studio \"$@\"\n")
    (appdir / "AppRun").write_text("#!/bin/sh\nexec \"$(dirname \"$0\")/usr/lib/studio/studio\" "
                                   "\"$@\"\n")
    for path in (appdir / "AppRun", appdir / "usr" / "lib" / "studio" / "studio"):
        path.chmod(0o755)
    (appdir / "studio.desktop").write_text("[Desktop Entry]\nType=Application\nName=Studio\n")
    return appdir


def _make(tmp_path: Path, out: Path, runtime: Path | None, cache: str = "") -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=os.environ["PATH"])
    env.pop("APPIMAGE_RUNTIME", None)
    if runtime is not None:
        env["APPIMAGE_RUNTIME"] = str(runtime)
    # no appimagetool here, even if the machine has one: the script's own assembly is tested
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep)
                                  if not (Path(p) / "appimagetool").exists())
    return subprocess.run(["bash", str(MAKE_APPIMAGE), str(_appdir(tmp_path)), str(out), cache],
                          env=env, capture_output=True, text=True, timeout=300)


@needs_squashfs
def test_an_appimage_is_the_runtime_followed_by_the_appdir_as_squashfs(tmp_path):
    # A stand-in runtime: an ELF file with the type-2 magic ("AI" 2 at offset 8), as the real
    # runtime (github.com/AppImage/type2-runtime) has. What follows it must be the AppDir.
    runtime = bytearray(Path("/bin/true").read_bytes())
    runtime[8:11] = b"AI\x02"
    (tmp_path / "runtime").write_bytes(bytes(runtime))
    out = tmp_path / "Studio.AppImage"
    proc = _make(tmp_path, out, tmp_path / "runtime")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = out.read_bytes()
    assert data[:len(runtime)] == bytes(runtime) and data[len(runtime):][:4] == b"hsqs"
    assert os.access(out, os.X_OK)
    listing = subprocess.run(["unsquashfs", "-o", str(len(runtime)), "-lls", str(out)],
                             capture_output=True, text=True, timeout=300)
    assert listing.returncode == 0, listing.stderr
    names = {line.split()[-1] for line in listing.stdout.splitlines() if "squashfs-root" in line}
    assert {"squashfs-root/AppRun", "squashfs-root/studio.desktop",
            "squashfs-root/usr/lib/studio/studio"} <= names
    assert all(" root/root " in line for line in listing.stdout.splitlines()
               if "squashfs-root/" in line)  # -root-owned: not the builder's user


@needs_squashfs
def test_without_a_runtime_it_says_what_to_do_and_makes_nothing(tmp_path):
    not_a_runtime = tmp_path / "runtime-x86_64"
    not_a_runtime.write_text("<html>404</html>")  # e.g. a proxy's error page saved by curl
    out = tmp_path / "Studio.AppImage"
    proc = _make(tmp_path, out, not_a_runtime)
    assert proc.returncode == 0
    assert "no AppImage type-2 runtime" in proc.stdout and "APPIMAGE_RUNTIME" in proc.stdout
    assert "AppDir is ready" in proc.stdout and not out.exists()


# -- the faces data set in a frozen app ---------------------------------------------------------
@pytest.fixture
def frozen_app(tmp_path, monkeypatch):
    """A frozen app's layout: assets/ and datasets/ side by side (sys._MEIPASS)."""
    import studio
    from studio.pipelines.train import image_sets

    (tmp_path / "assets").mkdir()
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(studio, "ASSETS_DIR", tmp_path / "assets")
    # scikit-image is not in a bundle: only the shipped file can make faces available
    real_find_spec = image_sets.importlib.util.find_spec
    monkeypatch.setattr(image_sets.importlib.util, "find_spec",
                        lambda name, *a: None if name == "skimage" else real_find_spec(name, *a))
    image_sets._load.cache_clear()
    yield tmp_path
    image_sets._load.cache_clear()


def test_a_frozen_app_trains_on_the_faces_file_it_ships(frozen_app):
    from studio.pipelines.train import image_sets

    assert not image_sets.faces_available()
    assert "faces" in image_sets.unavailable_datasets()
    shipped = frozen_app / "datasets" / "lfw_subset.npy"
    shipped.parent.mkdir()
    faces = np.random.default_rng(0).random((200, 25, 25))  # lfw_subset: 100 faces, 100 not
    np.save(shipped, faces)
    assert image_sets.faces_available() and image_sets.faces_file() == shipped
    assert image_sets.unavailable_datasets() == {}
    loaded = image_sets.load_image_set("faces")
    assert loaded.side == 25 and len(loaded.x_train) == 160  # 80 faces and their mirror images
    assert np.allclose(loaded.x_test[0], faces[:100][np.random.default_rng(0).permutation(100)[0]]
                       .reshape(-1), atol=1e-6)


def test_the_self_test_of_a_frozen_app_fails_without_the_faces_file(frozen_app):
    from studio.cli.self_checks import CheckFailed
    from studio.cli.self_checks_train import check_faces

    with pytest.raises(CheckFailed, match="faces data set"):
        check_faces()


def test_the_spec_ships_the_faces_file_where_the_frozen_app_looks():
    spec = (ROOT / "packaging" / "studio.spec").read_text(encoding="utf-8")
    assert 'datas.append((str(_faces_file()), "datasets"))' in spec
    assert '"lfw_subset.npy"' in spec
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    packaging_extra = next(line for line in pyproject.splitlines() if line.startswith("packaging"))
    assert "scikit-image" in packaging_extra


# -- the .tar.gz's menu entry -------------------------------------------------------------------
def _desktop_file_of_the_build() -> str:
    """The studio.desktop that packaging/linux/build.sh writes into the bundle."""
    build = (ROOT / "packaging" / "linux" / "build.sh").read_text(encoding="utf-8")
    return build.split('cat > "$BUNDLE/studio.desktop" <<EOF\n', 1)[1].split("\nEOF\n", 1)[0] + "\n"


def _install_entry(folder: Path, data: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, XDG_DATA_HOME=str(data))
    return subprocess.run(["sh", str(folder / "install-desktop-entry.sh"), *args], env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_tarball_puts_studio_in_the_applications_menu_and_takes_it_out(tmp_path):
    folder = tmp_path / "My Apps & Tools" / "Studio"  # spaces and & in the path
    folder.mkdir(parents=True)
    shutil.copy(ROOT / "packaging" / "linux" / "install-desktop-entry.sh", folder)
    (folder / "studio").write_text("#!/bin/sh\n")
    (folder / "studio").chmod(0o755)
    (folder / "studio.desktop").write_text(_desktop_file_of_the_build())
    (folder / "studio.png").write_bytes(b"\x89PNG fake")
    data = tmp_path / "data"
    proc = _install_entry(folder, data)
    assert proc.returncode == 0, proc.stderr
    entry = data / "applications" / "studio.desktop"
    lines = entry.read_text().splitlines()
    assert f'Exec="{folder}/studio"' in lines and f"TryExec={folder}/studio" in lines
    assert "Icon=studio" in lines and "Name=Studio" in lines
    assert (data / "icons" / "hicolor" / "256x256" / "apps" / "studio.png").read_bytes() == \
        b"\x89PNG fake"
    if shutil.which("desktop-file-validate"):
        check = subprocess.run(["desktop-file-validate", str(entry)], capture_output=True,
                               text=True)
        assert check.returncode == 0 and not check.stdout.strip(), check.stdout + check.stderr
    assert _install_entry(folder, data, "--uninstall").returncode == 0
    assert not entry.exists()
    assert not (data / "icons" / "hicolor" / "256x256" / "apps" / "studio.png").exists()
    assert folder.joinpath("studio").exists()  # the program itself stays


def test_the_menu_entry_script_refuses_a_folder_without_studio(tmp_path):
    shutil.copy(ROOT / "packaging" / "linux" / "install-desktop-entry.sh", tmp_path)
    proc = _install_entry(tmp_path, tmp_path / "data")
    assert proc.returncode == 1 and "run this from the Studio folder" in proc.stderr
    assert not (tmp_path / "data" / "applications").exists()


def test_a_bundle_carries_only_the_bitsandbytes_libraries_its_torch_can_load(tmp_path):
    """A CPU bundle kept ~120 MB of bitsandbytes' CUDA kernels that can never load beside the
    CPU torch; the spec now leaves out every backend's library but the CPU's and its torch's."""
    import sys

    sys.path.insert(0, str(ROOT / "packaging"))
    try:
        from native_libs import torch_backend, unusable_accelerator_lib
    finally:
        sys.path.remove(str(ROOT / "packaging"))
    version = tmp_path / "version.py"
    builds = {"cpu": "cuda: Optional[str] = None\nhip: Optional[str] = None\n",
              "cuda": "cuda: Optional[str] = '12.8'\nhip: Optional[str] = None\n",
              "rocm": "cuda: Optional[str] = None\nhip: Optional[str] = '6.4.43484'\n"}
    for backend, text in builds.items():
        version.write_text(f"__version__ = '2.13.0'\n{text}", encoding="utf-8")
        assert torch_backend(version) == backend
    assert torch_backend() in ("cpu", "cuda", "rocm", "xpu")  # this machine's torch
    libs = ["bitsandbytes/libbitsandbytes_cpu.so", "bitsandbytes/libbitsandbytes_cuda128.so",
            "bitsandbytes/libbitsandbytes_rocm64.so", "bitsandbytes\\libbitsandbytes_cuda121.dll",
            "bitsandbytes/libbitsandbytes_xpu2025.so"]
    kept = {backend: [lib for lib in libs if not unusable_accelerator_lib(lib, backend)]
            for backend in ("cpu", "cuda", "rocm")}
    assert kept["cpu"] == ["bitsandbytes/libbitsandbytes_cpu.so"]
    assert kept["cuda"] == ["bitsandbytes/libbitsandbytes_cpu.so",
                            "bitsandbytes/libbitsandbytes_cuda128.so",
                            "bitsandbytes\\libbitsandbytes_cuda121.dll"]
    assert kept["rocm"] == ["bitsandbytes/libbitsandbytes_cpu.so",
                            "bitsandbytes/libbitsandbytes_rocm64.so"]
    assert not unusable_accelerator_lib("torch/lib/libtorch_cuda.so", "cpu")  # bitsandbytes' only
    spec = (ROOT / "packaging" / "studio.spec").read_text(encoding="utf-8")
    assert "if unusable_accelerator_lib(path, TORCH_BACKEND):" in spec
