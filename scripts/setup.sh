#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine for tsbuild: the apt packages the tests and benchmarks
# use, the npm dependencies, and the build (TypeScript and the native launcher).
# Idempotent: installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  busybox-static   # base images for tests (FROM scratch + static busybox)
  skopeo umoci     # interoperability peers
  runc             # OCI runtime oracle for the sandbox
  docker-registry  # the real registry tests talk to on 127.0.0.1
  uidmap           # newuidmap/newgidmap for rootless
  pigz zstd        # parallel gzip; zstd layers
  iproute2         # ip, for network namespace tests
  apache2-utils    # htpasswd (bcrypt) for the registry basic-auth tests
  podman wrk       # npm run bench -- run: podman run start-up to compare; HTTP load through published ports
  debootstrap      # the Debian base image of the nginx example (test/helpers/debian-image.ts)
  buildah time     # the peer of the build benchmark (bench/build.ts); /usr/bin/time for its peak RSS
  slirp4netns      # outbound network of containers on the default private network (src/runner/network-slirp.ts)
  openssh-client   # ssh-keygen/ssh-add: the peers of the --ssh key-file agent tests
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing apt packages: ${missing[*]} (run as root or install them)" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The registry package starts a system service; tests start their own on free ports.
  systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi

# Rootless sandbox tests run as this unprivileged user with sub-id ranges (idempotent).
if [ "$(id -u)" -eq 0 ]; then
  id tsbuild-test >/dev/null 2>&1 || useradd --system --create-home --shell /usr/sbin/nologin tsbuild-test
  for f in /etc/subuid /etc/subgid; do
    touch "$f"
    grep -q '^tsbuild-test:' "$f" || echo 'tsbuild-test:200000:65536' >> "$f"
  done
  # Rootless slirp4netns opens /dev/net/tun in the container's user namespace: udev's mode 0666 (0600 without udev).
  if [ -c /dev/net/tun ]; then chmod 0666 /dev/net/tun; fi
fi

npm ci --no-audit --no-fund
npm run build
