#!/usr/bin/env bash
# Build pinned etcd, kube-apiserver, kube-controller-manager and helm from the Go module proxy
# into a cache directory outside git. Reuses what is already there.
# Usage: hack/build-k8s-bins.sh [DEST]   (default: $BATCHPILOT_CACHE/k8s-<versions>)
set -euo pipefail
. "$(dirname "$0")/lib-k8s.sh"

K8S_VERSION="${K8S_VERSION:-v1.33.13}"
ETCD_VERSION="${ETCD_VERSION:-v3.5.21}"
HELM_VERSION="${HELM_VERSION:-v3.18.6}"
CACHE="${BATCHPILOT_CACHE:-$HOME/.cache/batchpilot}"
DEST="${1:-$CACHE/k8s-bins/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION}"
WORK="$CACHE/k8s-build"
# No DWARF at compile time (-ldflags -w strips it at link anyway): ~7% less CPU cold. The same flags in
# build-k8s-bins.sh and build-node-bins.sh, so kubelet and kube-scheduler reuse the packages kube-apiserver compiled.
export GOFLAGS="${GOFLAGS:--buildvcs=false} -trimpath -gcflags=all=-dwarf=false"
export CGO_ENABLED=0

need() { [ -x "$DEST/$1" ] && "$DEST/$1" "${@:2}" >/dev/null 2>&1; }
mkdir -p "$DEST" "$WORK"
log() { printf '[k8s-bins %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
command -v go >/dev/null || { echo "go is required to build the control plane (install Go >= 1.24)" >&2; exit 1; }

# kube-apiserver and kube-controller-manager: a wrapper module that pins every staging module.
if need kube-apiserver --version && need kube-controller-manager --version; then
  log "kube-apiserver, kube-controller-manager $K8S_VERSION: cached in $DEST"
else
  mod="$WORK/kubernetes-$K8S_VERSION"; mkdir -p "$mod"; cd "$mod"
  k8s_build k8sbins "$DEST" kube-apiserver kube-controller-manager
fi

if need etcd --version; then
  log "etcd $ETCD_VERSION: cached"
else
  mod="$WORK/etcd-$ETCD_VERSION"; mkdir -p "$mod"; cd "$mod"
  printf 'module batchpilot.local/etcdbin\ngo 1.23\n' > go.mod
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  log "building etcd $ETCD_VERSION"
  go build -ldflags "-s -w" -o "$DEST/etcd.tmp" go.etcd.io/etcd/server/v3
  mv "$DEST/etcd.tmp" "$DEST/etcd"
fi

if need helm version; then
  log "helm $HELM_VERSION: cached"
else
  mod="$WORK/helm-$HELM_VERSION"; mkdir -p "$mod"; cd "$mod"
  printf 'module batchpilot.local/helmbin\ngo 1.24\n' > go.mod
  go get "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  log "building helm $HELM_VERSION"
  go build -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" -o "$DEST/helm.tmp" helm.sh/helm/v3/cmd/helm
  mv "$DEST/helm.tmp" "$DEST/helm"
fi

ln -sfn "$DEST" "$CACHE/k8s-bins/current"
log "ready: $DEST"
echo "$DEST"
