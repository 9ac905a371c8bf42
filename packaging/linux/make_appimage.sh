#!/usr/bin/env bash
# Make an AppImage of an AppDir (AppRun, a .desktop file, the icon, .DirIcon):
#
#   packaging/linux/make_appimage.sh APPDIR OUT.AppImage [RUNTIME_CACHE]
#
# With appimagetool on PATH, appimagetool makes it. Otherwise this does what appimagetool does:
# the AppDir as a squashfs image (zstd, 1 MiB blocks, files owned by root) written right behind
# the AppImage type-2 runtime, an ELF program that mounts the image it is followed by (FUSE) or
# unpacks it (--appimage-extract-and-run) and runs AppRun. The runtime is the file
# APPIMAGE_RUNTIME when set, else RUNTIME_CACHE, downloaded there once from the runtime's
# releases (github.com/AppImage/type2-runtime) when missing. ARCH picks the runtime (default:
# uname -m). Exit 0 with a message and no OUT when a tool or the runtime is missing (the caller
# still has the AppDir); exit non-zero when making the AppImage fails.
set -euo pipefail
APPDIR="$1" OUT="$2" CACHE="${3:-}"
ARCH="${ARCH:-$(uname -m)}"
rm -f "$OUT"
if command -v appimagetool >/dev/null 2>&1; then
  echo "== $(basename "$OUT") (appimagetool) =="
  ARCH="$ARCH" appimagetool --no-appstream "$APPDIR" "$OUT"
  exit 0
fi
if ! command -v mksquashfs >/dev/null 2>&1; then
  echo "neither appimagetool nor mksquashfs (squashfs-tools) is installed: no AppImage; the" \
       "AppDir is ready at $APPDIR (install squashfs-tools, or get appimagetool, and rerun)."
  exit 0
fi
RUNTIME="${APPIMAGE_RUNTIME:-$CACHE}"
if [ -z "${APPIMAGE_RUNTIME:-}" ] && [ -n "$CACHE" ] && [ ! -s "$CACHE" ]; then
  echo "== downloading the AppImage runtime for $ARCH =="
  mkdir -p "$(dirname "$CACHE")"
  if curl -fsSL --retry 2 --max-time 120 -o "$CACHE.part" \
      "https://github.com/AppImage/type2-runtime/releases/download/continuous/runtime-$ARCH"; then
    mv "$CACHE.part" "$CACHE"
  else
    rm -f "$CACHE.part"
  fi
fi
# A type-2 runtime is an ELF file with the bytes "AI" 0x02 at offset 8.
if [ -z "$RUNTIME" ] || [ ! -s "$RUNTIME" ] || [ "$(head -c 4 "$RUNTIME" | od -An -c | tr -d ' ')" != '177ELF' ] \
    || [ "$(od -An -c -j8 -N3 "$RUNTIME" | tr -d ' ')" != 'AI002' ]; then
  echo "no AppImage type-2 runtime (${RUNTIME:-none}; no network?): no AppImage; the AppDir is" \
       "ready at $APPDIR. Set APPIMAGE_RUNTIME to a runtime-$ARCH file, or put appimagetool on PATH."
  exit 0
fi
echo "== $(basename "$OUT") (mksquashfs behind $(basename "$RUNTIME")) =="
IMAGE="$(mktemp "${TMPDIR:-/tmp}/studio-appimage.XXXXXX")"
trap 'rm -f "$IMAGE"' EXIT
mksquashfs "$APPDIR" "$IMAGE" -root-owned -noappend -comp zstd -b 1M -quiet -no-progress \
  -processors "$(nproc)"
cat "$RUNTIME" "$IMAGE" > "$OUT"
chmod +x "$OUT"
