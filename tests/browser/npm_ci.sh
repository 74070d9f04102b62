#!/bin/sh
# Installs the browser tests' npm packages (package.json, package-lock.json: playwright-core at
# an exact version) into DEST/node_modules with `npm ci`, unless the locked set is there already.
# playwright-core drives Debian's /usr/bin/chromium: no browser is ever downloaded.
# Usage: npm_ci.sh SOURCE_DIR DEST_DIR
set -eu
src=$1
dest=$2
mkdir -p "$dest"
if [ -f "$dest/node_modules/.package-lock.json" ] && cmp -s "$src/package-lock.json" "$dest/package-lock.json"; then
  exit 0
fi
cp "$src/package.json" "$src/package-lock.json" "$dest/"
cd "$dest"
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --ignore-scripts --no-audit --no-fund
