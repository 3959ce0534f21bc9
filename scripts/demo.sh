#!/usr/bin/env bash
# The main job on a fresh machine, after scripts/setup.sh: make a busybox base image locally
# (no registry or internet needed), build examples/hello/Dockerfile into an OCI image, list it,
# and run it. Store root: $TSBUILD_ROOT, else ./.demo-store.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${TSBUILD_ROOT:-$PWD/.demo-store}
tsbuild() { bin/tsbuild.js --root "$root" "$@"; }

if ! tsbuild inspect busybox:latest >/dev/null 2>&1; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/rootfs/bin" "$tmp/rootfs/etc" "$tmp/rootfs/root" "$tmp/rootfs/tmp"
  chmod 1777 "$tmp/rootfs/tmp"
  cp /bin/busybox "$tmp/rootfs/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s /bin/busybox "$tmp/rootfs/bin/$applet"
  done
  echo 'root:x:0:0:root:/root:/bin/sh' > "$tmp/rootfs/etc/passwd"
  echo 'root:x:0:' > "$tmp/rootfs/etc/group"
  tar -C "$tmp/rootfs" --numeric-owner -cf "$tmp/busybox.tar" .
  tsbuild import --change 'CMD ["/bin/sh"]' "$tmp/busybox.tar" busybox:latest
fi

tsbuild build -f examples/hello/Dockerfile -t hello:1 --progress=plain examples/hello
tsbuild images
tsbuild inspect -f '{{json .Config}}' hello:1
tsbuild run --rm hello:1
