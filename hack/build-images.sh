#!/usr/bin/env bash
# Build the operator image (./Dockerfile), the CPU Triton runtime image (images/triton/Dockerfile) and the pod
# sandbox (pause) image with buildah (chroot isolation, no daemon), on a Debian bookworm base made here with
# debootstrap (no image registry is needed), and export each as a docker-archive the real node imports into
# its containerd.
#
# Everything is cached under $BATCHPILOT_CACHE/images: the base rootfs, buildah's storage (with --layers),
# a wheelhouse of the Python packages (downloaded once with the host's pip; the builds install from it
# offline through a pip.conf mounted for the build only), and the archives (rewritten only when an image's
# id changed). The Dockerfiles are the ones users build with docker: only BASE_IMAGE differs.
#
# Usage: hack/build-images.sh [--import CONTAINERD_ADDRESS]   (prints the archives directory)
#   DEBIAN_MIRROR overrides the mirror (default: the host's apt source for bookworm).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
CACHE="${BATCHPILOT_CACHE:-$HOME/.cache/batchpilot}"
IMG="$CACHE/images"
ARCHIVES="$IMG/archives"
BASE_TAG="localhost/batchpilot-base:bookworm"
OPERATOR_REF="batchpilot/batchpilot:0.1.0"
TRITON_REF="batchpilot/tritonserver-cpu:0.7.0"
PAUSE_REF="batchpilot/pause:3.10"
BASE_PACKAGES="python3,python3-pip,libpython3.11,ca-certificates"
IMPORT_ADDRESS=""
# The wheels must suit the images' Python 3.11 on glibc 2.36 (bookworm): the project's venv is such a Python.
PIP_PYTHON="${PIP_PYTHON:-$REPO/.venv/bin/python}"
[ "${1:-}" = "--import" ] && IMPORT_ADDRESS="${2:?--import needs a containerd socket address}"

log() { printf '[images %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
for tool in buildah debootstrap; do
  command -v "$tool" >/dev/null || { echo "$tool is required: apt-get install -y buildah debootstrap" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "building images with chroot isolation needs root (debootstrap, buildah)" >&2; exit 1; }
bah() { buildah --root "$IMG/storage" --runroot "$IMG/runroot" --storage-driver overlay "$@"; }
mkdir -p "$IMG/base" "$ARCHIVES"

# 1. The base: debootstrap minbase with Python 3.11 and pip usable as in the python image (the marker that
#    stops pip from installing into the system Python is removed: this image has no other Python users).
rootfs_tar="$IMG/base/bookworm-minbase.tar"
if [ -s "$rootfs_tar" ]; then
  log "base rootfs: cached ($rootfs_tar)"
else
  mirror="${DEBIAN_MIRROR:-$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 2>/dev/null | awk '$2 == "bookworm" {print $1; exit}')}"
  [ -n "$mirror" ] || { echo "no apt source for bookworm on this host: set DEBIAN_MIRROR" >&2; exit 1; }
  tmp="$IMG/base/rootfs.tmp"; rm -rf "$tmp"
  log "debootstrap --variant=minbase bookworm (+ $BASE_PACKAGES)"
  debootstrap --variant=minbase --include="$BASE_PACKAGES" bookworm "$tmp" "$mirror" >"$IMG/base/debootstrap.log" 2>&1 \
    || { tail -20 "$IMG/base/debootstrap.log" >&2; exit 1; }
  rm -f "$tmp"/usr/lib/python3*/EXTERNALLY-MANAGED
  rm -rf "$tmp"/var/lib/apt/lists/* "$tmp"/var/cache/apt/*.bin "$tmp"/var/cache/apt/archives/*.deb
  tar -C "$tmp" --numeric-owner -cf "$rootfs_tar.tmp" .
  mv "$rootfs_tar.tmp" "$rootfs_tar"; rm -rf "$tmp"
  bah rmi -f "$BASE_TAG" >/dev/null 2>&1 || true
fi
if bah inspect --type image "$BASE_TAG" >/dev/null 2>&1; then
  log "base image $BASE_TAG: cached"
else
  log "importing the rootfs as $BASE_TAG"
  printf 'FROM scratch\nADD %s /\nCMD ["bash"]\n' "$(basename "$rootfs_tar")" > "$IMG/base/Containerfile"
  bah bud --quiet --isolation chroot --pull-never -f "$IMG/base/Containerfile" -t "$BASE_TAG" "$IMG/base" >/dev/null
fi

# 2. The wheelhouse, keyed by what decides its contents (old ones are removed).
pytriton=$(sed -n 's/^ARG PYTRITON_VERSION=//p' "$REPO/images/triton/Dockerfile")
extra=(wheel "numpy<2")
mapfile -t deps < <("$PIP_PYTHON" -c 'import sys, tomllib; p = tomllib.load(open(sys.argv[1], "rb")); print("\n".join(p["build-system"]["requires"] + p["project"]["dependencies"]))' "$REPO/pyproject.toml")
key=$(echo "${deps[*]} $pytriton ${extra[*]}" | sha256sum | cut -c1-16)
wheels="$IMG/wheels-$key"
if [ -f "$wheels/.complete" ]; then
  log "wheelhouse: cached ($wheels)"
else
  log "downloading the wheelhouse (pip download)"
  rm -rf "$IMG"/wheels-*; mkdir -p "$wheels"
  "$PIP_PYTHON" -m pip download --quiet --dest "$wheels" --no-deps "nvidia-pytriton==$pytriton"
  "$PIP_PYTHON" -m pip download --quiet --dest "$wheels" "${deps[@]}" "${extra[@]}"
  touch "$wheels/.complete"
fi
printf '[global]\nno-index = true\nfind-links = /wheels\n' > "$IMG/pip.conf"

# 3. Build, then export an archive when the image id changed.
build() {  # build REF CONTEXT DOCKERFILE ARCHIVE_NAME
  local ref=$1 context=$2 dockerfile=$3 name=$4 id
  log "building $ref (buildah bud, chroot isolation)"
  bah bud --quiet --layers --isolation chroot --pull-never --build-arg "BASE_IMAGE=$BASE_TAG" \
    -v "$wheels:/wheels:ro" -v "$IMG/pip.conf:/etc/pip.conf:ro" -f "$dockerfile" -t "$ref" "$context" >/dev/null
  id=$(bah inspect --type image --format '{{.FromImageID}}' "$ref")
  if [ -s "$ARCHIVES/$name.tar" ] && [ "$(cat "$ARCHIVES/$name.id" 2>/dev/null)" = "$id" ]; then
    log "$ref: archive up to date"
  else
    log "exporting $ref to $ARCHIVES/$name.tar"
    rm -f "$ARCHIVES/$name.tar.tmp"
    bah push --quiet "$ref" "docker-archive:$ARCHIVES/$name.tar.tmp:$ref" >/dev/null
    mv "$ARCHIVES/$name.tar.tmp" "$ARCHIVES/$name.tar"; echo "$id" > "$ARCHIVES/$name.id"
  fi
  echo "$ref" > "$ARCHIVES/$name.ref"
}
# The pod sandbox image, from the pause binary hack/build-node-bins.sh compiles from the kubernetes sources.
pause_bin="$CACHE/node-bins/current/pause"
[ -x "$pause_bin" ] || { echo "$pause_bin is missing: run hack/build-node-bins.sh (make node-bins) first" >&2; exit 1; }
mkdir -p "$IMG/pause"; cp "$pause_bin" "$IMG/pause/pause"
printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' > "$IMG/pause/Containerfile"
build "$PAUSE_REF" "$IMG/pause" "$IMG/pause/Containerfile" pause
build "$OPERATOR_REF" "$REPO" "$REPO/Dockerfile" operator
build "$TRITON_REF" "$REPO/images/triton" "$REPO/images/triton/Dockerfile" tritonserver-cpu

if [ -n "$IMPORT_ADDRESS" ]; then
  for tar in "$ARCHIVES"/*.tar; do
    log "importing $(basename "$tar") into containerd at $IMPORT_ADDRESS"
    ctr --address "$IMPORT_ADDRESS" -n k8s.io images import --no-unpack "$tar" >/dev/null
  done
fi
log "ready: $ARCHIVES"
echo "$ARCHIVES"
