#!/usr/bin/env bash
# Makes a minimal Debian base image with python3 for the image test, on machines that can run a
# Docker engine but cannot pull python:3.11-slim. Needs root, debootstrap and a running dockerd.
#
#   tests/image/build-base.sh [TAG]            # default TAG: cutover-test-base:bookworm
#
# The packages come from the apt mirror this machine is configured with. The machine's CA bundle
# and a pip.conf pointing at it go into the image, so that `pip` inside the build trusts whatever
# this machine trusts (e.g. a TLS-intercepting egress proxy). That is why this is a test base and
# not something to publish.
set -euo pipefail

tag=${1:-cutover-test-base:bookworm}
suite=${SUITE:-bookworm}

if [ -z "${MIRROR:-}" ]; then
  # First Debian (not -security) archive URI from either sources format.
  shopt -s nullglob
  sources=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources)
  shopt -u nullglob
  MIRROR=$(cat "${sources[@]}" 2>/dev/null \
    | sed -nE 's#^(URIs:[[:space:]]*|deb[[:space:]]+(\[[^]]*\][[:space:]]+)?)(https?://[^[:space:]]+/debian)/?([[:space:]].*)?$#\3#p' \
    | grep -v -- '-security' | head -n1 || true)
  MIRROR=${MIRROR:-http://deb.debian.org/debian}
fi

rootfs=${ROOTFS:-}
if [ -z "$rootfs" ]; then
  rootfs=$(mktemp -d)
  trap 'rm -rf "$rootfs"' EXIT
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$suite" "$rootfs" "$MIRROR"
fi

if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
fi
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > "$rootfs/etc/pip.conf"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

tar -C "$rootfs" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' \
  - "$tag" >/dev/null
echo "$tag"
