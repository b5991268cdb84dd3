#!/usr/bin/env bash
# Build upstream Prometheus (with kubernetes_sd, which Debian's package strips) from the Go module proxy
# into a cache directory outside git. Reuses what is already there. About 5 minutes on 2 cores, once.
# Usage: hack/build-prometheus.sh [DEST]   (default: $BATCHPILOT_CACHE/prometheus/<version>)
set -euo pipefail

PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-3.9.1}"
MODULE_VERSION="v0.$(( ${PROMETHEUS_VERSION%%.*} * 100 + $(cut -d. -f2 <<<"$PROMETHEUS_VERSION") )).$(cut -d. -f3 <<<"$PROMETHEUS_VERSION")"
[ "${PROMETHEUS_VERSION%%.*}" = 2 ] && MODULE_VERSION="v0.$(cut -d. -f2,3 <<<"$PROMETHEUS_VERSION")"  # 2.x -> v0.MINOR.PATCH
CACHE="${BATCHPILOT_CACHE:-$HOME/.cache/batchpilot}"
DEST="${1:-$CACHE/prometheus/$PROMETHEUS_VERSION}"
WORK="$CACHE/prometheus-build/$MODULE_VERSION"
export GOFLAGS="${GOFLAGS:--buildvcs=false} -trimpath"
export CGO_ENABLED=0
log() { printf '[prometheus %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
command -v go >/dev/null || { echo "go is required to build Prometheus (install Go >= 1.24)" >&2; exit 1; }

if [ -x "$DEST/prometheus" ] && "$DEST/prometheus" --version >/dev/null 2>&1; then
  log "prometheus $PROMETHEUS_VERSION: cached in $DEST"
else
  mkdir -p "$DEST" "$WORK"; cd "$WORK"
  # Prometheus' own go.mod excludes broken releases; a dependency's excludes are ignored, so repeat them.
  gomod=$(go mod download -json "github.com/prometheus/prometheus@$MODULE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    printf 'module batchpilot.local/prombin\n\ngo 1.24\n\n'
    awk '/^exclude \(/{b=1; next} b&&/^\)/{b=0; next} b{print "exclude " $1 " " $2} /^exclude [^(]/{print}' "$gomod"
  } > go.mod
  log "fetching github.com/prometheus/prometheus@$MODULE_VERSION and its modules"
  go get "github.com/prometheus/prometheus/cmd/prometheus@$MODULE_VERSION"
  log "building prometheus $PROMETHEUS_VERSION (several minutes on a small machine)"
  go build -ldflags "-s -w -X github.com/prometheus/common/version.Version=$PROMETHEUS_VERSION" \
    -o "$DEST/prometheus.tmp" github.com/prometheus/prometheus/cmd/prometheus
  mv "$DEST/prometheus.tmp" "$DEST/prometheus"
fi

ln -sfn "$DEST" "$CACHE/prometheus/current"
log "ready: $DEST/prometheus"
echo "$DEST"
