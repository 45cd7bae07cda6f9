#!/usr/bin/env bash
# noVNC's page load in Chromium, from navigation start to noVNC's RFB `connect` event, over
# HTTP/2 against HTTP/1.1 (`--http2 off`), both over TLS from `--web`, through a token, to a
# real Xvnc: the ignored test `novnc_page_load_h2_against_http1` in tests/browser.rs, which
# installs what it needs (tests/browser/setup.sh), checks that each side really used its
# protocol (Chromium's nextHopProtocol and the proxy's session lines) and prints the loads,
# the medians and their ratio (also in target/browser/pageload.json) for docs/performance.md.
#
#   benches/pageload.sh            10 loads each, taking turns
#   PAGELOAD_LOADS=20 benches/pageload.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --locked --test browser -- --ignored --nocapture novnc_page_load_h2_against_http1
