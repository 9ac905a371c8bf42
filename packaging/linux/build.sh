#!/usr/bin/env bash
# Build Studio for Linux: the PyInstaller onedir build, checked with its own `studio self-test`,
# packed as dist/Studio-<version>-linux-<arch>-<flavour>.tar.gz and as
# dist/Studio-<version>-<arch>-<flavour>.AppImage (checked by running its self-test too).
#
#   packaging/linux/build.sh [--flavour cpu|cuda] [--install-torch] [--no-install]
#                            [--skip-self-test] [--no-appimage]
#
#   --flavour cpu|cuda  which torch the bundle carries (default cpu). The build refuses to go on
#                       when the installed torch is not that flavour, so a "cpu" archive never
#                       ships 3 GB of CUDA libraries by accident, nor "cuda" a CPU-only torch.
#   --install-torch     first install the matching torch (the locked version): CPU from download.pytorch.org/whl/cpu,
#                       CUDA from PyPI (PyPI's Linux torch is the CUDA build). STUDIO_TORCH_INDEX
#                       sets another index URL, e.g. download.pytorch.org/whl/cu126 for older GPUs.
#   --no-install        use the environment as it is (no `pip install -e .[packaging]`); its
#                       versions must still be the locked ones (tools/lock.py --check-env).
#   --no-appimage       only the .tar.gz.
#
# The AppImage is made by packaging/linux/make_appimage.sh: appimagetool when it is on PATH,
# else mksquashfs (squashfs-tools) and the AppImage type-2 runtime (APPIMAGE_RUNTIME, or
# downloaded once into build/). Without either, the .tar.gz is still made and the AppDir is left
# ready in build/.
#
# Run it in a virtual environment made for the build (python3 -m venv .build-venv). PYTHON picks
# the interpreter (default: python3). Needs ~5 GB free for the CPU flavour, ~25 GB for CUDA.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
FLAVOUR=cpu INSTALL_TORCH=0 INSTALL=1 SELF_TEST=1 APPIMAGE=1
while [ $# -gt 0 ]; do
  case "$1" in
    --flavour) FLAVOUR="$2"; shift ;;
    --flavour=*) FLAVOUR="${1#*=}" ;;
    --install-torch) INSTALL_TORCH=1 ;;
    --no-install) INSTALL=0 ;;
    --skip-self-test) SELF_TEST=0 ;;
    --no-appimage) APPIMAGE=0 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
case "$FLAVOUR" in
  cpu) INDEX="${STUDIO_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}" ;;
  cuda) INDEX="${STUDIO_TORCH_INDEX:-}" ;;  # empty: PyPI
  *) echo "build.sh: --flavour must be cpu or cuda" >&2; exit 2 ;;
esac

VERSION="$("$PYTHON" -c 'import re,sys; print(re.search(r"__version__ = \"([^\"]+)\"", open("studio/__init__.py").read()).group(1))')"
ARCH="$(uname -m)"
DIST="$ROOT/dist"
WORK="$ROOT/build/pyinstaller-$FLAVOUR"
BUNDLE_PARENT="$ROOT/build/onedir-$FLAVOUR"
BUNDLE="$BUNDLE_PARENT/Studio"
NAME="Studio-$VERSION-linux-$ARCH-$FLAVOUR"
mkdir -p "$DIST"

# Versions come from the lock (constraints.txt), so an upstream release cannot change what an
# installer carries; the index only picks torch's flavour.
if [ "$INSTALL_TORCH" = 1 ]; then
  if [ -n "$INDEX" ]; then
    "$PYTHON" -m pip install -c constraints.txt torch --index-url "$INDEX"
  else
    "$PYTHON" -m pip install -c constraints.txt torch
  fi
fi
if [ "$INSTALL" = 1 ]; then
  "$PYTHON" -m pip install -c constraints.txt -e ".[packaging]"
fi
"$PYTHON" tools/lock.py --check-env
# The flavour check: torch.version.cuda is None exactly in a CPU-only build.
"$PYTHON" - "$FLAVOUR" <<'EOF'
import sys
import torch
flavour, cuda = sys.argv[1], torch.version.cuda
if (flavour == "cpu") != (cuda is None):
    sys.exit(f"build.sh: the installed torch {torch.__version__} is not the {flavour} flavour "
             "(use --install-torch, or a fresh virtual environment)")
print(f"torch {torch.__version__} ({'CUDA ' + cuda if cuda else 'CPU only'})")
EOF

echo "== PyInstaller ($FLAVOUR) =="
rm -rf "$BUNDLE_PARENT"
"$PYTHON" -m PyInstaller --noconfirm --clean --log-level WARN \
  --workpath "$WORK" --distpath "$BUNDLE_PARENT" packaging/studio.spec

# Qt's xcb plugin (X11 windows) needs these; PyInstaller bundles them only when the build
# machine has them. A bundle without them needs them on every user's machine instead.
MISSING_XCB=()
for lib in libxcb-cursor.so.0 libxcb-icccm.so.4 libxcb-keysyms.so.1 libxkbcommon-x11.so.0; do
  [ -e "$BUNDLE/_internal/$lib" ] || MISSING_XCB+=("$lib")
done
if [ ${#MISSING_XCB[@]} -gt 0 ]; then
  echo "build.sh: warning: the bundle lacks ${MISSING_XCB[*]} (not installed on this machine):" \
       "users will need them installed to open the window. Debian/Ubuntu: apt install" \
       "libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxkbcommon-x11-0, then rebuild." >&2
fi

# Desktop integration files, next to the executable (the tarball) and in the AppDir.
ICON_PNG="$WORK/studio/studio.png"
cp "$ICON_PNG" "$BUNDLE/studio.png"
cat > "$BUNDLE/studio.desktop" <<EOF
[Desktop Entry]
Type=Application
Name=Studio
GenericName=Generative AI studio
Comment=Make images, chat with local models and watch models learn, on your own machine
Exec=studio
Icon=studio
Terminal=false
Categories=Graphics;2DGraphics;RasterGraphics;
Keywords=AI;image;generation;diffusion;chat;LLM;GAN;training;
StartupWMClass=studio
EOF
# The .tar.gz's way into the applications menu (the AppImage's is the user's AppImage tool).
cp packaging/linux/install-desktop-entry.sh "$BUNDLE/install-desktop-entry.sh"

if [ "$SELF_TEST" = 1 ]; then
  echo "== self-test of the bundle =="
  # Offline on purpose: an installed app must work with no network at all.
  env -u PYTHONPATH QT_QPA_PLATFORM=offscreen HF_HUB_OFFLINE=1 "$BUNDLE/studio" self-test
fi

echo "== $NAME.tar.gz =="
tar -C "$BUNDLE_PARENT" -czf "$DIST/$NAME.tar.gz" Studio

if [ "$APPIMAGE" = 1 ]; then
  APPDIR="$ROOT/build/AppDir-$FLAVOUR"
  rm -rf "$APPDIR"
  mkdir -p "$APPDIR/usr/lib"
  cp -a "$BUNDLE" "$APPDIR/usr/lib/studio"
  cp "$BUNDLE/studio.desktop" "$APPDIR/studio.desktop"
  cp "$ICON_PNG" "$APPDIR/studio.png"
  ln -sf studio.png "$APPDIR/.DirIcon"
  cat > "$APPDIR/AppRun" <<'EOF'
#!/bin/sh
# The AppImage runs the onedir build inside it; arguments pass through (AppImage self-test).
HERE="$(dirname "$(readlink -f "$0")")"
exec "$HERE/usr/lib/studio/studio" "$@"
EOF
  chmod +x "$APPDIR/AppRun"
  APPIMAGE_FILE="$DIST/Studio-$VERSION-$ARCH-$FLAVOUR.AppImage"
  rm -f "$APPIMAGE_FILE"
  bash "$ROOT/packaging/linux/make_appimage.sh" "$APPDIR" "$APPIMAGE_FILE" \
    "$ROOT/build/appimage-runtime-$ARCH"
  if [ "$SELF_TEST" = 1 ] && [ -f "$APPIMAGE_FILE" ]; then
    echo "== the AppImage starts the bundle =="
    # The onedir inside was checked whole above; this checks the AppImage around it (runtime,
    # squashfs, AppRun). Without FUSE the runtime is told to extract to a folder instead (any
    # value of APPIMAGE_EXTRACT_AND_RUN does that).
    EXTRACT=()
    if [ ! -e /dev/fuse ] || ! command -v fusermount3 fusermount >/dev/null 2>&1; then
      EXTRACT=(APPIMAGE_EXTRACT_AND_RUN=1)
    fi
    env -u PYTHONPATH "${EXTRACT[@]}" QT_QPA_PLATFORM=offscreen HF_HUB_OFFLINE=1 \
      "$APPIMAGE_FILE" self-test --only imports --only assets --only train
  fi
fi

echo "== sizes =="
du -sh "$BUNDLE" "$DIST/$NAME.tar.gz" 2>/dev/null || true
ls -l "$DIST"/Studio-"$VERSION"-* 2>/dev/null || true
