#!/usr/bin/env bash
# The Autobahn TestSuite's server cases against the proxy (the test in tests/autobahn.rs, which
# installs kosoku into target/autobahn-venv when it is missing), then its summary copied to
# docs/conformance.md. The full report: target/autobahn/index.html (and index.json).
set -euo pipefail
cd "$(dirname "$0")/../.."

cargo test --test autobahn -- --nocapture autobahn_server_cases

target_dir=$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
cp "$target_dir/autobahn/summary.md" docs/conformance.md
echo "docs/conformance.md written from $target_dir/autobahn/index.json"
