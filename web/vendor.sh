#!/usr/bin/env bash
# Copies the third-party files the pages use from their npm packages into web/vendor/, with
# their licenses beside them. The versions are the ones pinned in tests/browser/package.json
# and package-lock.json; tests/browser.rs checks that the committed copies are exactly those.
# The copies are committed, so `--web web` works without npm; run this after changing a pin.
#
# Usage: web/vendor.sh   (installs the pinned packages under target/browser first, if needed)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
modules="$root/target/browser/node_modules"
"$root/tests/browser/setup.sh" "$root/target/browser"

xterm="$root/web/vendor/xterm"
rm -rf "$xterm"
mkdir -p "$xterm"
# The ES module build (the pages are modules) and its stylesheet; not the source maps.
cp "$modules/@xterm/xterm/lib/xterm.mjs" "$modules/@xterm/xterm/css/xterm.css" \
    "$modules/@xterm/xterm/LICENSE" "$xterm/"
version="$(node -p "require('$modules/@xterm/xterm/package.json').version")"
printf '@xterm/xterm %s from npm (MIT, see LICENSE): lib/xterm.mjs, css/xterm.css.\nCopied by web/vendor.sh; do not edit.\n' \
    "$version" >"$xterm/VERSION"
echo "vendored @xterm/xterm $version into web/vendor/xterm"
