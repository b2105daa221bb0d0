#!/usr/bin/env bash
# Fails when checked-in generated code differs from what `make generate` produces, and says which
# files. It compares against the working tree (not git), so it works on uncommitted changes too;
# when it fails, the tree holds the regenerated files, ready to commit.
set -euo pipefail
cd "$(dirname "$0")/.."

generated=(internal/db/sqlc internal/generated internal/apis)
before=$(mktemp -d)
trap 'rm -rf "$before"' EXIT
for p in "${generated[@]}"; do
  mkdir -p "$before/$(dirname "$p")"
  cp -a "$p" "$before/$p"
done

make --no-print-directory generate >/dev/null

stale=0
for p in "${generated[@]}"; do
  if ! diff -r "$before/$p" "$p" >"$before/diff.txt" 2>&1; then
    cat "$before/diff.txt" | head -50 >&2
    stale=1
  fi
done
if [ "$stale" -ne 0 ]; then
  echo "generated code is stale: it has been regenerated in the working tree; review and commit it" >&2
  exit 1
fi

unformatted=$(gofmt -l $(git ls-files '*.go') 2>/dev/null || true)
if [ -n "$unformatted" ]; then
  echo "gofmt wants changes in:" >&2
  echo "$unformatted" >&2
  exit 1
fi
echo "generated code and formatting are up to date"
