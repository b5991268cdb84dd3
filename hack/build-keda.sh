#!/usr/bin/env bash
# Build the pinned KEDA operator and metrics API server (github.com/kedacore/keda/v2 cmd/operator and
# cmd/adapter) from the Go module proxy into a cache directory outside git, with KEDA's CRDs from the same
# module source. Reuses what is already there.
# KEDA's go.mod has replace directives (it pins k8s.io), which `go install pkg@version` refuses, so the
# module source is fetched with `go mod download -json` and built inside a writable copy of it.
# Usage: hack/build-keda.sh [DEST]   (default: $BATCHPILOT_CACHE/keda-bins/keda-<version>)
set -euo pipefail

# v2.18 is the KEDA line built against k8s.io v0.33 (its go.mod pins them), i.e. Kubernetes 1.33.
KEDA_VERSION="${KEDA_VERSION:-v2.18.3}"
# Two of v2.18.3's scaler SDK versions are refused by the module proxy ("403 This module version is not
# available"); pin the versions KEDA v2.19.0 moved to (same APIs for these scalers). Space separated.
KEDA_MODULE_PINS="${KEDA_MODULE_PINS-github.com/newrelic/newrelic-client-go/v2@v2.76.0 github.com/solarwinds/swo-sdk-go/swov1@v0.13.1}"
CACHE="${BATCHPILOT_CACHE:-$HOME/.cache/batchpilot}"
DEST="${1:-$CACHE/keda-bins/keda-$KEDA_VERSION}"
WORK="$CACHE/keda-build/keda-$KEDA_VERSION"
# -dwarf=false: -ldflags=-w drops the debug info at link anyway; not generating it cut the cold build's CPU ~10%.
export GOFLAGS="${GOFLAGS:--buildvcs=false} -trimpath -mod=mod -gcflags=all=-dwarf=false"
export CGO_ENABLED=0
# Two cores and a shared machine: one go build at a time, at most two compile jobs, at low priority.
export GOMAXPROCS="${GOMAXPROCS:-2}"
log() { printf '[keda %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
command -v go >/dev/null || { echo "go is required to build KEDA (install Go >= 1.25)" >&2; exit 1; }
built() { [ -x "$DEST/$1" ] && [ -f "$DEST/$1.version" ] && [ "$(cat "$DEST/$1.version")" = "$KEDA_VERSION" ]; }

mkdir -p "$DEST"
src="$WORK/src"
if ! [ -f "$src/go.mod" ]; then
  log "fetching github.com/kedacore/keda/v2@$KEDA_VERSION source"
  dir=$(go mod download -json "github.com/kedacore/keda/v2@$KEDA_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  [ -n "$dir" ] && [ -f "$dir/go.mod" ] || { echo "go mod download gave no source dir for keda $KEDA_VERSION" >&2; exit 1; }
  rm -rf "$src.tmp"; mkdir -p "$WORK"
  cp -r "$dir" "$src.tmp"; chmod -R u+w "$src.tmp"; mv "$src.tmp" "$src"
fi

for pin in $KEDA_MODULE_PINS; do
  (cd "$src" && go mod edit -replace "${pin%@*}=$pin")
done

# CRDs (ScaledObject, TriggerAuthentication, ...) come from the same source, never from the repo.
mkdir -p "$DEST/crds"
cp "$src"/config/crd/bases/*.yaml "$DEST/crds/"

ldflags="-s -w -X=github.com/kedacore/keda/v2/version.Version=$KEDA_VERSION -X=github.com/kedacore/keda/v2/version.GitCommit=$KEDA_VERSION"
for pair in keda-operator:operator keda-adapter:adapter; do
  bin="${pair%%:*}" cmd="${pair#*:}"
  if built "$bin"; then
    log "$bin $KEDA_VERSION: cached in $DEST"
    continue
  fi
  log "building $bin $KEDA_VERSION (cmd/$cmd; many minutes cold on a small machine)"
  (cd "$src" && nice -n 10 go build -ldflags "$ldflags" -o "$DEST/$bin.tmp" "./cmd/$cmd")
  mv "$DEST/$bin.tmp" "$DEST/$bin"
  echo "$KEDA_VERSION" > "$DEST/$bin.version"
done

mkdir -p "$CACHE/keda-bins"
ln -sfn "$DEST" "$CACHE/keda-bins/current"
log "ready: $DEST"
echo "$DEST"
