#!/usr/bin/env bash
# Build what a real node needs besides Debian's containerd and runc: kubelet and kube-scheduler at the control
# plane's version (same pins and wrapper-module approach as hack/build-k8s-bins.sh: `go install` refuses
# k8s.io/kubernetes because its go.mod replaces the staging modules), and the pause binary compiled from the
# kubernetes module's own build/pause/linux/pause.c (no registry to pull a pause image from).
# Reuses what is already there. Usage: hack/build-node-bins.sh [DEST]
#   (default: $BATCHPILOT_CACHE/node-bins/k8s-<version>; $BATCHPILOT_CACHE/node-bins/current points at it)
set -euo pipefail

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
  staging_version="v0.${K8S_VERSION#v1.}"
  log "fetching k8s.io/kubernetes@$K8S_VERSION go.mod"
  gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "module batchpilot.local/nodebins"
    echo "go 1.24"
    echo "require k8s.io/kubernetes $K8S_VERSION"
    grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging' "$gomod" | awk -v v="$staging_version" '{print "replace " $1 " => " $1 " " v}'
  } > go.mod
  cat > tools.go <<'GO'
//go:build tools

package nodebins

import (
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
  log "resolving modules (go mod tidy)"
  go mod tidy
  for b in kubelet kube-scheduler; do
    log "building $b $K8S_VERSION (about 5 minutes with an empty Go build cache on 2 cores)"
    go build -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION" -o "$DEST/$b.tmp" "k8s.io/kubernetes/cmd/$b"
    mv "$DEST/$b.tmp" "$DEST/$b"
  done
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
