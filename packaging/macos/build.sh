#!/usr/bin/env bash
# Build Studio for macOS: Studio.app (the spec's BUNDLE), checked with its own self-test, signed
# and notarized when a certificate is configured, in dist/Studio-<version>-macos-<arch>.dmg.
#
#   packaging/macos/build.sh [--install-torch] [--no-install] [--skip-self-test]
#
# macOS has one flavour: the PyPI torch (Apple Silicon: MPS; Intel: CPU). --install-torch
# installs it from PyPI first.
#
# Signing (optional; without it the app runs after right-click → Open):
#   STUDIO_SIGN_IDENTITY   "Developer ID Application: Name (TEAMID)" — codesign the app (hardened
#                          runtime, packaging/macos/entitlements.plist) and the .dmg.
#   STUDIO_NOTARY_PROFILE  a notarytool keychain profile (xcrun notarytool store-credentials) —
#                          submit the .dmg to Apple, wait, and staple the ticket.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
INSTALL_TORCH=0 INSTALL=1 SELF_TEST=1
while [ $# -gt 0 ]; do
  case "$1" in
    --install-torch) INSTALL_TORCH=1 ;;
    --no-install) INSTALL=0 ;;
    --skip-self-test) SELF_TEST=0 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

VERSION="$("$PYTHON" -c 'import re; print(re.search(r"__version__ = \"([^\"]+)\"", open("studio/__init__.py").read()).group(1))')"
ARCH="$(uname -m)"
WORK="$ROOT/build/pyinstaller-macos"
OUT="$ROOT/build/onedir-macos"
APP="$OUT/Studio.app"
DMG="$ROOT/dist/Studio-$VERSION-macos-$ARCH.dmg"
mkdir -p "$ROOT/dist"

# Versions come from the lock (constraints.txt): an upstream release cannot change the app.
[ "$INSTALL_TORCH" = 1 ] && "$PYTHON" -m pip install -c constraints.txt torch
[ "$INSTALL" = 1 ] && "$PYTHON" -m pip install -c constraints.txt -e ".[packaging]"
"$PYTHON" tools/lock.py --check-env

echo "== PyInstaller =="
rm -rf "$OUT"
"$PYTHON" -m PyInstaller --noconfirm --clean --log-level WARN \
  --workpath "$WORK" --distpath "$OUT" packaging/studio.spec

if [ "$SELF_TEST" = 1 ]; then
  echo "== self-test of the app =="
  QT_QPA_PLATFORM=offscreen HF_HUB_OFFLINE=1 "$APP/Contents/MacOS/Studio" self-test
fi

if [ -n "${STUDIO_SIGN_IDENTITY:-}" ]; then
  echo "== codesign =="
  # Inside out: every library and executable first, then the bundle, with the hardened runtime
  # notarization requires and the entitlements torch's JIT and Python's ctypes need.
  find "$APP/Contents" -type f \( -name "*.dylib" -o -name "*.so" -o -perm -u+x \) -print0 |
    xargs -0 codesign --force --timestamp --options runtime \
      --entitlements packaging/macos/entitlements.plist --sign "$STUDIO_SIGN_IDENTITY"
  codesign --force --timestamp --options runtime \
    --entitlements packaging/macos/entitlements.plist --sign "$STUDIO_SIGN_IDENTITY" "$APP"
  codesign --verify --deep --strict --verbose=2 "$APP"
fi

echo "== $(basename "$DMG") =="
STAGE="$ROOT/build/dmg-stage"
rm -rf "$STAGE" "$DMG"
mkdir -p "$STAGE"
cp -R "$APP" "$STAGE/"
ln -s /Applications "$STAGE/Applications"  # drag Studio onto Applications to install
hdiutil create -volname "Studio $VERSION" -srcfolder "$STAGE" -fs HFS+ -format UDZO \
  -imagekey zlib-level=9 "$DMG"

if [ -n "${STUDIO_SIGN_IDENTITY:-}" ]; then
  codesign --force --timestamp --sign "$STUDIO_SIGN_IDENTITY" "$DMG"
fi
if [ -n "${STUDIO_NOTARY_PROFILE:-}" ]; then
  [ -n "${STUDIO_SIGN_IDENTITY:-}" ] || { echo "notarizing needs STUDIO_SIGN_IDENTITY too" >&2; exit 2; }
  echo "== notarize =="
  xcrun notarytool submit "$DMG" --keychain-profile "$STUDIO_NOTARY_PROFILE" --wait
  xcrun stapler staple "$DMG"
  spctl --assess --type open --context context:primary-signature --verbose "$DMG"
fi

echo "== sizes =="
du -sh "$APP" "$DMG"
