#!/usr/bin/env bash
# Check the Windows installer script (studio.iss) on Linux, with Wine: compile it with Inno Setup's
# own compiler, install silently, upgrade over a stale library, uninstall, and check what each
# step left on the (Wine) disk, the Start menu and the registry.
#
#   packaging/windows/check_with_wine.sh [ONEDIR]
#
# ONEDIR is a Windows onedir build (build\onedir-cpu\Studio from build.ps1); without it a stand-in
# is used (Wine's notepad.exe and cmd.exe as Studio.exe and studio-cli.exe, and an _internal
# folder), which checks the installer, not the app. Needs Wine with 32-bit support (ISCC.exe is
# a 32-bit program; Debian: dpkg --add-architecture i386, apt install wine wine32:i386), Xvfb
# (the silent setup still makes hidden windows) and Inno Setup 6: ISCC=/path/to/ISCC.exe, or npm,
# with which the npm package "innosetup" (Inno Setup's compiler files) is installed into build/.
# PYTHON (default python3) draws the icon: it needs PySide6 and Pillow (Studio's environment).
# Exit status: 0 all checks passed, 1 some failed (named), 2 a tool is missing (nothing checked).
#
# What it cannot check: the per-user install (the default when a user double-clicks), because
# Wine 8 cannot resolve {autopf} for a non-administrator (FOLDERID_UserProgramFiles); the same
# script installs into Program Files here (/ALLUSERS). Signing is not checked either.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
WORK="$ROOT/build/wine-check"  # logs, the installers made, the npm copy of Inno Setup
ONEDIR="${1:-}"
VERSION="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$ROOT/studio/__init__.py")"
FAILED=()
check() {  # check "what" command...: record a failure instead of stopping at the first one
  local what="$1"; shift
  if "$@"; then echo "✓ $what"; else echo "✗ $what"; FAILED+=("$what"); fi
}
for tool in wine Xvfb; do
  command -v "$tool" >/dev/null || { echo "check_with_wine.sh: $tool is not installed" >&2; exit 2; }
done
if [ -n "${ISCC:-}" ] && [ ! -f "$ISCC" ]; then
  echo "check_with_wine.sh: ISCC=$ISCC does not exist" >&2
  exit 2
fi
ISCC="${ISCC:-$WORK/innosetup/node_modules/innosetup/bin/ISCC.exe}"
if [ ! -f "$ISCC" ]; then
  command -v npm >/dev/null || { echo "check_with_wine.sh: set ISCC, or install npm" >&2; exit 2; }
  npm install --silent --prefix "$WORK/innosetup" innosetup@6 >/dev/null || {
    echo "check_with_wine.sh: could not install Inno Setup from npm (offline?); set ISCC" >&2
    exit 2; }
fi

# The Wine prefix lives outside the repository: its z: drive is a link to /, which tools that
# walk the tree following links (setuptools' file finder) would follow into the whole disk.
WINEPREFIX="$(mktemp -d "${TMPDIR:-/tmp}/studio-wine-check.XXXXXX")"
export WINEPREFIX WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
rm -rf "$WORK/out" "$WORK/stand-in" "$WORK/prefix"
mkdir -p "$WORK/out"
# A private X display for the hidden windows of the silent setup.
DISPLAY_NUMBER=$((100 + RANDOM % 800))
Xvfb ":$DISPLAY_NUMBER" -screen 0 1024x768x24 >/dev/null 2>&1 &
XVFB=$!
trap 'kill $XVFB 2>/dev/null || true; wineserver -k 2>/dev/null || true; rm -rf "$WINEPREFIX"' EXIT
export DISPLAY=":$DISPLAY_NUMBER"
wineboot -i >/dev/null 2>&1
C="$WINEPREFIX/drive_c"
if [ -z "$ONEDIR" ]; then
  ONEDIR="$WORK/stand-in/Studio"
  mkdir -p "$ONEDIR/_internal/assets"
  cp "$C/windows/system32/notepad.exe" "$ONEDIR/Studio.exe"
  cp "$C/windows/system32/cmd.exe" "$ONEDIR/studio-cli.exe"
  echo "stand-in" > "$ONEDIR/_internal/assets/README.txt"
fi
ICON="$WORK/studio.ico"
"${PYTHON:-python3}" -c "import sys; sys.path.insert(0, sys.argv[1]); \
from make_icon import render_icon; from pathlib import Path; render_icon(Path(sys.argv[2]), 256)" \
  "$ROOT/packaging" "$ICON" || {
  echo "check_with_wine.sh: drawing the icon needs PySide6 and Pillow: set PYTHON to the" \
       "python of Studio's environment" >&2
  exit 2; }

compile() {  # compile VERSION: Studio-Setup-VERSION.exe into $WORK/out, as build.ps1 does
  wine "$ISCC" /Q "/DAppVersion=$1" "/DSourceDir=$(winepath -w "$ONEDIR")" \
    "/DOutputDir=$(winepath -w "$WORK/out")" "/DIconFile=$(winepath -w "$ICON")" \
    "$(winepath -w "$ROOT/packaging/windows/studio.iss")"
}
setup() {  # setup EXE LOG: a silent install for all users
  wine "$1" /VERYSILENT /ALLUSERS /SUPPRESSMSGBOXES /NORESTART "/LOG=$(winepath -w "$2")"
}
APP="$C/Program Files/Studio"
MENU="$C/ProgramData/Microsoft/Windows/Start Menu/Programs/Studio"
KEY='Software\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\{6F1C2B1E-8D0A-4C7E-9C55-3B7D1E2A4F10}_is1'
uninstall_key() {  # the "Apps & features" entry's values, read from Wine's registry file (Wine 8's
  # reg.exe does not find keys with braces); wineserver -w waits until the registry is saved.
  wineserver -w
  SECTION="[$KEY]" awk 'index($0, ENVIRON["SECTION"]) == 1 { on = 1; next } /^\[/ { on = 0 } on' \
    "$WINEPREFIX/system.reg"
}
registered() { uninstall_key | grep -qx "\"DisplayVersion\"=\"$1\""; }

echo "== Inno Setup: $(basename "$ISCC") =="
check "compiles to Studio-Setup-$VERSION.exe" compile "$VERSION"
echo "== install =="
check "installs silently" setup "$WORK/out/Studio-Setup-$VERSION.exe" "$WORK/install.log"
check "Studio.exe and studio-cli.exe in Program Files" \
  test -f "$APP/Studio.exe" -a -f "$APP/studio-cli.exe" -a -d "$APP/_internal"
check "Start menu: Studio, Studio self-test, Uninstall Studio" \
  test -f "$MENU/Studio.lnk" -a -f "$MENU/Studio self-test.lnk" -a -f "$MENU/Uninstall Studio.lnk"
check "registered as Studio $VERSION (Apps & features)" registered "$VERSION"
check "the self-test entry runs studio-cli.exe self-test in a console that stays open" \
  "${PYTHON:-python3}" -c 'import sys; sys.exit(sys.argv[2].encode("utf-16-le")
    not in open(sys.argv[1], "rb").read())' "$MENU/Studio self-test.lnk" \
  '/k ""C:\Program Files\Studio\studio-cli.exe" self-test"'
echo "== upgrade over a stale library =="
PLANTED=0  # a stale library in the installed app (nothing to plant it in if the install failed)
echo stale > "$APP/_internal/stale-old-library.dll" 2>/dev/null && PLANTED=1
check "compiles a later version" compile "$VERSION.1"
check "upgrades silently" setup "$WORK/out/Studio-Setup-$VERSION.1.exe" "$WORK/upgrade.log"
check "the old version's libraries are gone" \
  test "$PLANTED" = 1 -a ! -e "$APP/_internal/stale-old-library.dll"
check "one registration, now $VERSION.1" registered "$VERSION.1"
echo "== uninstall =="
USER_DATA="$C/users/$(whoami)/AppData/Local/Studio"
mkdir -p "$USER_DATA" && echo '{}' > "$USER_DATA/settings.json"
check "uninstalls silently" wine "$APP/unins000.exe" /VERYSILENT /SUPPRESSMSGBOXES \
  "/LOG=$(winepath -w "$WORK/uninstall.log")"
sleep 2  # the uninstaller removes itself from a copy that runs on after it exits
check "the program folder is gone" test ! -e "$APP"
check "the Start menu entries are gone" test ! -e "$MENU"
check "no longer registered" test -z "$(uninstall_key)"
check "the user's settings stay" test -f "$USER_DATA/settings.json"

if [ ${#FAILED[@]} -gt 0 ]; then
  echo "check_with_wine.sh: failed: ${FAILED[*]} (logs in $WORK)" >&2
  exit 1
fi
echo "all installer checks passed (logs in $WORK)"
