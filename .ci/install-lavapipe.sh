#!/usr/bin/env bash
# Installs Mesa's lavapipe (a software Vulkan driver) when no Vulkan ICD is present.
# Prefers Mesa 25 from Debian's bookworm-backports; falls back to the plain suite.
set -u
have_icd() {
  for f in /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json; do
    [ -e "$f" ] && return 0
  done
  return 1
}
if have_icd && [ "${DLSVM_FORCE_MESA_INSTALL:-0}" != 1 ]; then
  echo "install-lavapipe: a Vulkan driver is already installed"; exit 0
fi
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
# Add bookworm-backports with the same URIs as the existing Debian source.
if [ -r /etc/os-release ] && grep -q 'VERSION_CODENAME=bookworm' /etc/os-release; then
  uri=$(grep -h -E '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
        | grep -E 'debian/?( |$)' | grep -v security | head -n1 | sed -E 's/^URIs: *//; s/^deb +(\[[^]]*\] +)?//; s/ .*//')
  [ -n "$uri" ] || uri="http://deb.debian.org/debian"
  if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$uri" \
      | $SUDO tee /etc/apt/sources.list.d/dlsvm-backports.sources >/dev/null
  fi
fi
$SUDO apt-get update -qq || true
if DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers; then
  echo "install-lavapipe: installed mesa-vulkan-drivers from bookworm-backports"
elif DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mesa-vulkan-drivers; then
  echo "install-lavapipe: installed mesa-vulkan-drivers from the default suite"
else
  echo "install-lavapipe: could not install mesa-vulkan-drivers" >&2; exit 1
fi
