# The custom resource definitions Argo CD, Argo Rollouts and Flux publish,
# which the GitOps watcher tests apply to the real kube-apiserver above. Each
# project ships them in its repository, and so in its Go module: they come
# from the module proxy at these pinned releases, into a directory named by
# the releases. The Flux helm-controller release is the newest the module
# proxy serves.
argocd_version=v3.6.2
rollouts_version=v1.10.2
kustomize_controller_version=v1.10.1
helm_controller_version=v1.4.3
crds="$cache/crds/argocd-$argocd_version-rollouts-$rollouts_version-kustomize-$kustomize_controller_version-helm-$helm_controller_version"

module_dir() { # module@version: its directory in the module cache
  (cd "$cache" && go mod download -json "$1") | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'
}

if ! [[ -f "$crds/complete" ]]; then
  echo "setup: fetching the Argo CD, Argo Rollouts and Flux CRDs" >&2
  mkdir -p "$crds"
  argocd=$(module_dir "github.com/argoproj/argo-cd/v3@$argocd_version")
  rollouts=$(module_dir "github.com/argoproj/argo-rollouts@$rollouts_version")
  kustomize=$(module_dir "github.com/fluxcd/kustomize-controller@$kustomize_controller_version")
  helm=$(module_dir "github.com/fluxcd/helm-controller@$helm_controller_version")
  [[ -n "$argocd" && -n "$rollouts" && -n "$kustomize" && -n "$helm" ]] ||
    { echo "setup: a CRD module is missing from the module proxy" >&2; exit 1; }
  cp "$argocd/manifests/crds/application-crd.yaml" "$argocd/manifests/crds/appproject-crd.yaml" \
    "$rollouts/manifests/crds/rollout-crd.yaml" "$rollouts/manifests/crds/analysis-run-crd.yaml" \
    "$kustomize/config/crd/bases/kustomize.toolkit.fluxcd.io_kustomizations.yaml" \
    "$helm/config/crd/bases/helm.toolkit.fluxcd.io_helmreleases.yaml" "$crds/"
  chmod u+w "$crds"/*.yaml
  touch "$crds/complete"
fi
# The tests find them here.
ln -sfn "$crds" "$cache/crds/current"
