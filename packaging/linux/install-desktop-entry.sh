#!/bin/sh
# Put Studio in the applications menu (this user only; no root): run it from the unpacked
# Studio folder of the .tar.gz, wherever that folder lives.
#
#   ./install-desktop-entry.sh              add the menu entry and the icon
#   ./install-desktop-entry.sh --uninstall  remove them again (the Studio folder stays)
#
# It writes $XDG_DATA_HOME/applications/studio.desktop (default ~/.local/share), a copy of the
# studio.desktop beside it with Exec and Icon pointing into this folder, and the icon into the
# hicolor theme. Move the folder later and run it again.
set -eu
HERE="$(cd "$(dirname "$0")" && pwd)"
DATA="${XDG_DATA_HOME:-$HOME/.local/share}"
ENTRY="$DATA/applications/studio.desktop"
ICON="$DATA/icons/hicolor/256x256/apps/studio.png"
refresh() {  # menus pick the change up by themselves; these only make it immediate
  command -v update-desktop-database >/dev/null 2>&1 &&
    update-desktop-database "$DATA/applications" >/dev/null 2>&1 || true
  command -v gtk-update-icon-cache >/dev/null 2>&1 &&
    gtk-update-icon-cache -q -t "$DATA/icons/hicolor" >/dev/null 2>&1 || true
}
case "${1:-}" in
  --uninstall)
    rm -f "$ENTRY" "$ICON"
    refresh
    echo "Studio is no longer in the applications menu (this folder was left as it is)."
    exit 0 ;;
  "") ;;
  *) echo "usage: $0 [--uninstall]" >&2; exit 2 ;;
esac
if [ ! -x "$HERE/studio" ] || [ ! -f "$HERE/studio.desktop" ]; then
  echo "$0: run this from the Studio folder (studio and studio.desktop are not beside it)" >&2
  exit 1
fi
case "$HERE" in
  *[\"\`\$\\]*)
    echo "$0: the folder's path has a quote, \$ or backslash, which a menu entry cannot hold:" \
         "move the Studio folder (e.g. to ~/Applications/Studio) and run this again" >&2
    exit 1 ;;
esac
mkdir -p "$(dirname "$ENTRY")" "$(dirname "$ICON")"
cp "$HERE/studio.png" "$ICON"
# Exec quoted, since the folder may have spaces; & and | escaped for sed.
SAFE="$(printf '%s' "$HERE" | sed 's/[&|]/\\&/g')"
sed -e "s|^Exec=.*|Exec=\"$SAFE/studio\"\\nTryExec=$SAFE/studio|" "$HERE/studio.desktop" \
  > "$ENTRY.part"
mv "$ENTRY.part" "$ENTRY"
chmod 644 "$ENTRY"
refresh
echo "Studio is in the applications menu ($ENTRY); it starts $HERE/studio."
