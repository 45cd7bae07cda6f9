#!/usr/bin/env bash
# Installs what the browser tests (tests/browser.rs) need, and only what is missing, so that a
# second run costs a few file checks:
#
# - from Debian: Chromium (driven by Playwright; Playwright's own browser builds cannot be
#   downloaded here and are never asked for), TigerVNC's Xvnc (an X server that is a VNC
#   server, for noVNC), xsetroot and xev (draw the desktop, see the keys and clicks reach X),
#   and inetutils' telnetd (a real telnet server for wstelnet.html);
# - from npm: the versions pinned in tests/browser/package-lock.json (playwright-core,
#   @novnc/novnc, @xterm/xterm), with `npm ci` into DIR/node_modules.
#
# Usage: tests/browser/setup.sh DIR   (tests/browser.rs passes target/browser)
# Fails loudly, naming what could not be installed; the test then fails, never skips.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
dir="${1:?usage: setup.sh DIR}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"

# Test binaries run in parallel and apt and npm both hold locks of their own: one setup at a
# time, the later ones finding everything in place.
exec 9>"$dir/.setup.lock"
flock -w 900 9 || { echo "setup.sh: another setup held $dir/.setup.lock for 15 minutes" >&2; exit 1; }

# Each binary and the Debian package that provides it.
apt_needs=(
    "chromium:chromium"
    "Xvnc:tigervnc-standalone-server"
    "xsetroot:x11-xserver-utils"
    "xev:x11-utils"
    "/usr/sbin/telnetd:inetutils-telnetd"
)
missing=()
for need in "${apt_needs[@]}"; do
    bin="${need%%:*}"
    package="${need#*:}"
    command -v "$bin" >/dev/null 2>&1 || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "setup.sh: installing from Debian: ${missing[*]}" >&2
    if ! { apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >"$dir/apt.log" 2>&1; }; then
        tail -n 30 "$dir/apt.log" >&2 || true
        echo "setup.sh: FAILED to install ${missing[*]} with apt-get (needs root and Debian's" \
            "packages); see $dir/apt.log" >&2
        exit 1
    fi
    for need in "${apt_needs[@]}"; do
        bin="${need%%:*}"
        command -v "$bin" >/dev/null 2>&1 || {
            echo "setup.sh: FAILED: $bin is still missing after installing ${need#*:}" >&2
            exit 1
        }
    done
fi

command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || {
    echo "setup.sh: FAILED: node and npm are needed (Debian's nodejs, 20 or newer)" >&2
    exit 1
}

# npm ci only when the lock file changed since the last install.
stamp="$dir/node_modules/.installed-lock"
if ! cmp -s "$here/package-lock.json" "$stamp"; then
    echo "setup.sh: npm ci (playwright-core, @novnc/novnc, @xterm/xterm) into $dir" >&2
    cp "$here/package.json" "$here/package-lock.json" "$dir/"
    # playwright-core downloads nothing by itself; the variable makes sure of it.
    if ! (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund \
        --loglevel=error >"$dir/npm.log" 2>&1); then
        tail -n 30 "$dir/npm.log" >&2 || true
        echo "setup.sh: FAILED: npm ci in $dir (the npm registry must be reachable); see" \
            "$dir/npm.log" >&2
        exit 1
    fi
    cp "$here/package-lock.json" "$stamp"
fi
echo "setup.sh: ready: $(chromium --version 2>/dev/null | head -n 1), node $(node --version)," \
    "playwright-core $(node -p "require('$dir/node_modules/playwright-core/package.json').version")" >&2
