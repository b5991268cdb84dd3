#!/usr/bin/env bash
# Build upstream Prometheus (with kubernetes_sd, which Debian's package strips) from the Go module proxy
# into a cache directory outside git. Reuses what is already there.
# Only the Kubernetes service discovery is compiled in (plus file and http, which upstream always registers
# in plugins/minimum.go): upstream's plugins/plugins.go imports ~24 discoveries (aws, azure, gce, ...) whose
# SDKs are most of the download and compile time. The pinned module source is copied into the work dir under
# the cache (never into git), its plugins/plugins.go is replaced by a one-import file written here, and the
# binary is built inside that copy with upstream's own go.mod and go.sum (same pinned dependency versions).
# Cold (empty Go caches, 2 busy cores): ~3 min and 0.9 GB of modules, against ~6.5 min and 1.1 GB with
# every discovery; the binary is 71 MB instead of 137 MB.
# Usage: hack/build-prometheus.sh [DEST]   (default: $BATCHPILOT_CACHE/prometheus/<version>)
set -euo pipefail

PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-3.9.1}"
MODULE_VERSION="v0.$(( ${PROMETHEUS_VERSION%%.*} * 100 + $(cut -d. -f2 <<<"$PROMETHEUS_VERSION") )).$(cut -d. -f3 <<<"$PROMETHEUS_VERSION")"
[ "${PROMETHEUS_VERSION%%.*}" = 2 ] && MODULE_VERSION="v0.$(cut -d. -f2,3 <<<"$PROMETHEUS_VERSION")"  # 2.x -> v0.MINOR.PATCH
CACHE="${BATCHPILOT_CACHE:-$HOME/.cache/batchpilot}"
DEST="${1:-$CACHE/prometheus/$PROMETHEUS_VERSION}"
WORK="$CACHE/prometheus-build/$MODULE_VERSION"
MODULE=github.com/prometheus/prometheus
# -dwarf=false: -ldflags=-w drops the debug info at link anyway; not generating it cut the cold build ~16%.
export GOFLAGS="${GOFLAGS:--buildvcs=false} -trimpath -gcflags=all=-dwarf=false"
export CGO_ENABLED=0
log() { printf '[prometheus %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
command -v go >/dev/null || { echo "go is required to build Prometheus (install Go >= 1.24)" >&2; exit 1; }

if [ -x "$DEST/prometheus" ] && "$DEST/prometheus" --version >/dev/null 2>&1; then
  log "prometheus $PROMETHEUS_VERSION: cached in $DEST"
else
  mkdir -p "$DEST" "$WORK"
  src="$WORK/src"
  if ! [ -f "$src/go.mod" ]; then
    log "fetching $MODULE@$MODULE_VERSION source"
    dir=$(cd "$WORK" && go mod download -json "$MODULE@$MODULE_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
    [ -n "$dir" ] && [ -f "$dir/go.mod" ] || { echo "go mod download gave no source dir for $MODULE@$MODULE_VERSION" >&2; exit 1; }
    rm -rf "$src.tmp"; cp -r "$dir" "$src.tmp"; chmod -R u+w "$src.tmp"; mv "$src.tmp" "$src"
  fi
  plugins="$src/plugins/plugins.go"
  # Fail loudly if a new version moved the discovery registration: the binary must keep kubernetes_sd.
  grep -q "\"$MODULE/discovery/kubernetes\"" "$plugins" \
    || { echo "$plugins does not import $MODULE/discovery/kubernetes; update hack/build-prometheus.sh" >&2; exit 1; }
  printf '%s\n\npackage plugins\n\nimport _ "%s/discovery/kubernetes" // Register the kubernetes plugin.\n' \
    '// batchpilot: kubernetes discovery only (written by hack/build-prometheus.sh; file and http are in minimum.go).' \
    "$MODULE" > "$plugins"
  log "building prometheus $PROMETHEUS_VERSION with kubernetes discovery only (downloads its modules; minutes cold)"
  (cd "$src" && go build -ldflags "-s -w -X github.com/prometheus/common/version.Version=$PROMETHEUS_VERSION" \
    -o "$DEST/prometheus.tmp" ./cmd/prometheus)
  mv "$DEST/prometheus.tmp" "$DEST/prometheus"
fi

ln -sfn "$DEST" "$CACHE/prometheus/current"
log "ready: $DEST/prometheus"
echo "$DEST"
