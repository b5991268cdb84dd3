# Sourced by hack/build-k8s-bins.sh and hack/build-node-bins.sh: build commands of k8s.io/kubernetes at a pinned
# version. `go install pkg@version` refuses k8s.io/kubernetes (its go.mod replaces the staging modules with
# ./staging paths), so a small wrapper module requires it and pins every staging module to its published
# v0.MINOR.PATCH (FACTS.md "Kubernetes pieces").

# k8s_build MODULE DEST CMD...: in the current directory, write the wrapper module MODULE importing
# k8s.io/kubernetes/cmd/CMD for each CMD, resolve it, and build each CMD into DEST. Needs K8S_VERSION and log().
k8s_build() {
  local module=$1 dest=$2; shift 2
  local staging_version="v0.${K8S_VERSION#v1.}" gomod cmd
  log "fetching k8s.io/kubernetes@$K8S_VERSION go.mod"
  gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "module batchpilot.local/$module"
    echo "go 1.24"
    echo "require k8s.io/kubernetes $K8S_VERSION"
    grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging' "$gomod" | awk -v v="$staging_version" '{print "replace " $1 " => " $1 " " v}'
  } > go.mod
  {
    printf '//go:build tools\n\npackage %s\n\nimport (\n' "$module"
    for cmd in "$@"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$cmd"; done
    printf ')\n'
  } > tools.go
  log "resolving modules (go mod tidy)"
  go mod tidy
  for cmd in "$@"; do
    log "building $cmd $K8S_VERSION (several minutes with an empty Go build cache on 2 cores)"
    go build -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION" -o "$dest/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd"
    mv "$dest/$cmd.tmp" "$dest/$cmd"
  done
}
