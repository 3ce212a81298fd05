#!/usr/bin/env bash
# Builds the browser page into web/dist/ (static files: index.html, the wasm and its JS glue):
# serve the folder with any static server and open index.html in a browser with WebGPU.
# Installs what it needs where missing: the wasm32-unknown-unknown target (rustup) and
# wasm-bindgen-cli at exactly the version of wasm-bindgen in Cargo.lock (about 6 minutes once).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! rustc --print target-libdir --target wasm32-unknown-unknown >/dev/null 2>&1 \
  || [ ! -d "$(rustc --print target-libdir --target wasm32-unknown-unknown)" ]; then
  echo "web/build.sh: adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi
want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, "", $0); print; exit }' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)
if [ "$have" != "$want" ]; then
  echo "web/build.sh: installing wasm-bindgen-cli $want (found: ${have:-none}); this takes a few minutes once"
  cargo install wasm-bindgen-cli --version "=$want"
fi
cargo build --release --target wasm32-unknown-unknown -p dlsvm-web
rm -rf web/dist
wasm-bindgen --target web --no-typescript --out-dir web/dist \
  target/wasm32-unknown-unknown/release/dlsvm_web.wasm
cp web/index.html web/dist/
echo "web/build.sh: built web/dist ($(du -sh web/dist | cut -f1)); serve it, e.g." \
  "\`python3 -m http.server -d web/dist 8000\`, and open http://localhost:8000/"
