#!/usr/bin/env bash
# Debian packages the real node and `make image` use (containerd, runc, buildah, debootstrap, CNI plugins):
# installed with apt-get only when a command is missing. Root only; prints what it installs.
set -euo pipefail
need=()
command -v containerd >/dev/null || need+=(containerd)
command -v runc >/dev/null || need+=(runc)
command -v buildah >/dev/null || need+=(buildah)
command -v debootstrap >/dev/null || need+=(debootstrap)
[ -x /usr/lib/cni/loopback ] || [ -x /opt/cni/bin/loopback ] || need+=(containernetworking-plugins)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "the real node needs these Debian packages, and installing them needs root: ${need[*]}" >&2
  echo "fix: sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi
echo "[node-packages] apt-get install ${need[*]}" >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null || {
  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null; }
