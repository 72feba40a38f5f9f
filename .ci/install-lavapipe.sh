#!/usr/bin/env bash
# Installs Mesa's software Vulkan driver (lavapipe) on a Debian machine without a GPU, new enough for both
# WebGPU providers: Deno's built-in WebGPU (wgpu) accepts Debian 12's Mesa 22.3, but Dawn (npm "webgpu",
# used under Deno and Bun) rejects it and needs Mesa >= 25, which Debian ships in <codename>-backports.
# Reuses the machine's configured Debian mirror (no host names here). Idempotent; needs root.
set -euo pipefail
want_major=25
installed="$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true)"
if [ -n "$installed" ] && [ "${installed%%.*}" -ge "$want_major" ] 2>/dev/null; then exit 0; fi
. /etc/os-release
codename="${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}"
backports=/etc/apt/sources.list.d/flex-backports.sources
if [ ! -f "$backports" ]; then
  main=/etc/apt/sources.list.d/debian.sources
  [ -f "$main" ] || { echo "install-lavapipe: no $main; add ${codename}-backports by hand" >&2; exit 1; }
  # the first deb822 stanza (the main archive), re-pointed at the backports suite
  awk 'BEGIN { RS = ""; ORS = "\n" } NR == 1 { print; exit }' "$main" \
    | sed -e '/^#/d' -e "s/^Suites:.*/Suites: ${codename}-backports/" > "$backports"
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq -t "${codename}-backports" mesa-vulkan-drivers >/dev/null
echo "lavapipe: mesa $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers) installed"
