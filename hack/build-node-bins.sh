#!/usr/bin/env bash
# Build what a real node needs besides Debian's containerd and runc: kubelet and kube-scheduler at the control
# plane's version (same pins and wrapper-module approach as hack/build-k8s-bins.sh: `go install` refuses
# k8s.io/kubernetes because its go.mod replaces the staging modules), and the pause binary compiled from the
# kubernetes module's own build/pause/linux/pause.c (no registry to pull a pause image from).
# Reuses what is already there. Usage: hack/build-node-bins.sh [DEST]
#   (default: $BATCHPILOT_CACHE/node-bins/k8s-<version>; $BATCHPILOT_CACHE/node-bins/current points at it)
set -euo pipefail
. "$(dirname "$0")/lib-k8s.sh"

K8S_VERSION="${K8S_VERSION:-v1.33.13}"
CACHE="${BATCHPILOT_CACHE:-$HOME/.cache/batchpilot}"
DEST="${1:-$CACHE/node-bins/k8s-$K8S_VERSION}"
WORK="$CACHE/node-build/kubernetes-$K8S_VERSION"
# No DWARF at compile time (-ldflags -w strips it at link anyway): ~7% less CPU cold. The same flags in
# build-k8s-bins.sh and build-node-bins.sh, so kubelet and kube-scheduler reuse the packages kube-apiserver compiled.
export GOFLAGS="${GOFLAGS:--buildvcs=false} -trimpath -gcflags=all=-dwarf=false"
export CGO_ENABLED=0

log() { printf '[node-bins %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
need() { [ -x "$DEST/$1" ] && "$DEST/$1" "${@:2}" >/dev/null 2>&1; }
command -v go >/dev/null || { echo "go is required to build kubelet (install Go >= 1.24)" >&2; exit 1; }
command -v gcc >/dev/null || { echo "gcc is required to build the pause binary (apt-get install gcc libc6-dev)" >&2; exit 1; }
mkdir -p "$DEST" "$WORK"

if need kubelet --version && need kube-scheduler --version; then
  log "kubelet, kube-scheduler $K8S_VERSION: cached in $DEST"
else
  cd "$WORK"
  k8s_build nodebins "$DEST" kubelet kube-scheduler
fi

if [ -x "$DEST/pause" ]; then
  log "pause: cached"
else
  src=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')/build/pause/linux/pause.c
  log "compiling pause from $src"
  gcc -Os -static -DVERSION="$K8S_VERSION" -o "$DEST/pause.tmp" "$src"
  strip "$DEST/pause.tmp"
  mv "$DEST/pause.tmp" "$DEST/pause"
fi

ln -sfn "$DEST" "$CACHE/node-bins/current"
log "ready: $DEST"
echo "$DEST"
