#!/usr/bin/env bash
# The classic example by hand, after scripts/setup.sh (as root; needs the Debian mirror):
#  1. a Debian bookworm minbase root filesystem made with debootstrap, cached as a tar in
#     $TSBUILD_TEST_CACHE (default /var/cache/tsbuild-test, shared with the nginx integration test;
#     test/helpers/debian-image.ts follows the same recipe) and imported as debian:bookworm / debian;
#  2. examples/nginx built with `tsbuild -f Dockerfile -t testnginx:1 .`;
#  3. its config shown, `nginx -t` run inside it, test.html printed, and the container run
#     detached with -p 8081:80 and asked for its page over HTTP.
# Store root: $TSBUILD_ROOT, else ./.demo-store.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
root=${TSBUILD_ROOT:-$PWD/.demo-store}
cache=${TSBUILD_TEST_CACHE:-/var/cache/tsbuild-test}
archive=$cache/debian-bookworm-minbase.tar
tsbuild() { "$repo/bin/tsbuild.js" --root "$root" "$@"; }

if [ ! -f "$archive" ]; then
  mkdir -p "$cache"
  # Work next to the archive and rename at the end: an interrupted run leaves no broken cache.
  work=$(mktemp -d "$cache/.tmp-debian-$$-XXXXXX")
  cleanup() {
    # Unmount what an interrupted debootstrap left (deepest first) before removing its directory.
    awk -v w="$work/" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo | sort -r | xargs -r umount -l
    rm -rf "$work"
  }
  trap cleanup EXIT
  debootstrap --variant=minbase bookworm "$work/rootfs" http://deb.debian.org/debian
  # As the official image: package scripts do not start services; no apt lists, no resolv.conf.
  printf '#!/bin/sh\nexit 101\n' > "$work/rootfs/usr/sbin/policy-rc.d"
  chmod 755 "$work/rootfs/usr/sbin/policy-rc.d"
  find "$work/rootfs/var/lib/apt/lists" "$work/rootfs/var/cache/apt/archives" -mindepth 1 -maxdepth 1 ! -name partial ! -name lock -exec rm -rf {} +
  rm -f "$work/rootfs/etc/resolv.conf" "$work/rootfs/etc/hostname"
  tar --sort=name --numeric-owner --xattrs --xattrs-include=security.capability -C "$work/rootfs" \
    --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' --exclude='./run/*' --exclude='./tmp/*' -cf "$work/debian.tar" .
  mv "$work/debian.tar" "$archive"
fi

if ! tsbuild inspect debian:bookworm >/dev/null 2>&1; then
  tsbuild import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' "$archive" debian:bookworm
  tsbuild tag debian:bookworm debian:latest
fi

cd examples/nginx
tsbuild -f Dockerfile -t testnginx:1 --progress=plain .
cd "$repo"
tsbuild images
tsbuild inspect -f '{{json .Config}}' testnginx:1
tsbuild run --rm --entrypoint nginx testnginx:1 -t
tsbuild run --rm --entrypoint cat testnginx:1 /usr/share/nginx/html/test.html
# Serve it on host port 8081. Debian's nginx serves /var/www/html (its welcome page);
# /usr/share/nginx/html, where the example copies test.html, is the official nginx image's root.
id=$(tsbuild run -d -p 8081:80 testnginx:1)
trap 'tsbuild rm -f "$id" >/dev/null' EXIT
for _ in $(seq 50); do
  if page=$(node -e 'fetch("http://127.0.0.1:8081/").then(async (r) => { if (!r.ok) process.exit(1); process.stdout.write(await r.text()); }, () => process.exit(1))'); then break; fi
  sleep 0.2
done
grep -o '<title>.*</title>' <<<"$page"
tsbuild ps
