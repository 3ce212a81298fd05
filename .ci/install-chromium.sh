#!/usr/bin/env bash
# Installs Debian's Chromium where none is present: tests/tint.rs compiles every shader with its
# WGSL compiler (Tint, what browsers run), in headless Chromium on SwiftShader (no GPU needed).
set -u
if command -v chromium >/dev/null 2>&1 || [ -n "${DLSVM_CHROMIUM:-}" ]; then
  echo "install-chromium: $(chromium --version 2>/dev/null || echo "$DLSVM_CHROMIUM") is already installed"; exit 0
fi
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
$SUDO apt-get update -qq || true
if DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium; then
  echo "install-chromium: installed $(chromium --version 2>/dev/null)"
else
  echo "install-chromium: could not install chromium" >&2; exit 1
fi
