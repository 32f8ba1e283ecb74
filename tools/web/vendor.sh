#!/usr/bin/env bash
# Vendors the page's two browser libraries from npm into src/Api/wwwroot/lib (committed, so the
# host fetches nothing at run time): Chart.js 4 (UMD) and the SignalR browser client.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm init -y >/dev/null && npm install --no-audit --no-fund --loglevel=error chart.js@4 @microsoft/signalr@8)
cp "$tmp/node_modules/chart.js/dist/chart.umd.min.js" "$root/src/Api/wwwroot/lib/chart.umd.min.js"
cp "$tmp/node_modules/@microsoft/signalr/dist/browser/signalr.min.js" "$root/src/Api/wwwroot/lib/signalr.min.js"
echo "vendored: chart.js $(node -p "require('$tmp/node_modules/chart.js/package.json').version"), @microsoft/signalr $(node -p "require('$tmp/node_modules/@microsoft/signalr/package.json').version")"
