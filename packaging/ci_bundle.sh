#!/usr/bin/env bash
# CI's installer check (called by .ci/run after the tests): build the Linux CPU bundle with
# PyInstaller and run the frozen app's own `studio self-test` — but only when the packaging inputs
# changed since the last bundle that built and passed on this machine, since the build takes
# several minutes. The inputs: the spec and build scripts (packaging/), the dependencies, their
# lock and the version (pyproject.toml, constraints.txt, tools/lock.py, studio/__init__.py), the
# shipped files (assets/), the self-test the bundle runs (studio/cli/self_test.py,
# studio/cli/self_checks.py) and .ci/run. Their
# hash is compared with the one saved in ${XDG_CACHE_HOME:-~/.cache}/studio-ci/bundle.sha (outside
# the clone, so fresh clones share it), which is written only after a build that passed.
#   STUDIO_CI_BUNDLE=1  build anyway;  STUDIO_CI_BUNDLE=0  skip.
#   STUDIO_CI_BUNDLE_BUILD  the build command (default: the Linux CPU build, which self-tests).
set -euo pipefail
cd "$(dirname "$0")/.."
inputs_hash() {
  find packaging assets pyproject.toml constraints.txt tools/lock.py studio/__init__.py \
    studio/cli/self_test.py studio/cli/self_checks.py .ci/run -type f \
    ! -path '*/__pycache__/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum |
    cut -d' ' -f1
}
MARKER="${XDG_CACHE_HOME:-$HOME/.cache}/studio-ci/bundle.sha"
BUILD="${STUDIO_CI_BUNDLE_BUILD:-packaging/linux/build.sh --flavour cpu}"
HASH="$(inputs_hash)"
if [ "${STUDIO_CI_BUNDLE:-}" = 0 ]; then
  echo "ci: bundle check skipped (STUDIO_CI_BUNDLE=0)"
elif [ "${STUDIO_CI_BUNDLE:-}" = 1 ] || [ "$(cat "$MARKER" 2>/dev/null)" != "$HASH" ]; then
  echo "ci: packaging inputs changed (or STUDIO_CI_BUNDLE=1): building the Linux CPU bundle"
  SECONDS=0
  bash -c "$BUILD"  # set -e: a failed build or self-test fails CI and leaves the marker alone
  echo "ci: bundle built and self-tested in ${SECONDS}s"
  mkdir -p "$(dirname "$MARKER")"
  echo "$HASH" > "$MARKER"
else
  echo "ci: packaging inputs unchanged since the last good bundle ($MARKER): skipped"
fi
