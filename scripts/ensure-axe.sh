#!/usr/bin/env bash
# Install axe-core from the npm registry into tests/.node (git-ignored) for the browser tests;
# installs Debian's npm first when it is missing (needs root and apt).
set -eu
cd "$(dirname "$0")/.."
if [ -f tests/.node/node_modules/axe-core/axe.min.js ]; then exit 0; fi
if ! command -v npm >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing Debian's npm for axe-core..." >&2
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
  else
    echo "npm is missing: the browser tests cannot run axe-core." >&2
    exit 0
  fi
fi
npm install --silent --no-audit --no-fund --prefix tests/.node "axe-core@>=4.10 <5"
