package readiness

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	corev1 "k8s.io/api/core/v1"
)

// checkSecrets checks, in each cluster, that every Secret and ConfigMap the
// validator StatefulSets and coordinator Deployments need exists: volumes
// (the key, the coordinator CA bundle, the etcd client and serving
// certificates, the operator token when configured), projected sources,
// environment references and image pull Secrets, unless marked optional.
// Only metadata is read: the API server never sends a Secret's data here.
func (r *runner) checkSecrets(ctx context.Context) {
	for _, s := range r.states {
		if s.down != nil {
			continue
		}
		needs := map[objectRef]*need{}
		for _, w := range s.workloads {
			neededBy(needs, w.set.Namespace, "StatefulSet "+w.name(), w.set.Spec.Template.Spec)
		}
		for _, c := range s.coordinators {
			neededBy(needs, c.dep.Namespace, "Deployment "+c.dep.Name, c.dep.Spec.Template.Spec)
		}
		refs := make([]objectRef, 0, len(needs))
		for ref := range needs {
			refs = append(refs, ref)
		}
		sort.Slice(refs, func(i, j int) bool { return refs[i].String() < refs[j].String() })
		for _, ref := range refs {
			n := needs[ref]
			users := strings.Join(n.users, ", ")
			res := s.object(ctx, ref)
			switch {
			case res.err == nil:
				r.add(OK, CheckSecrets, s.cluster.name, ref.String(), "present (needed by "+users+")")
			case apierrors.IsNotFound(res.err) && n.pullOnly:
				r.add(Warn, CheckSecrets, s.cluster.name, ref.String(), fmt.Sprintf("missing: %s names it as an image pull Secret; pulls from a private registry will fail", users))
			case apierrors.IsNotFound(res.err):
				r.add(Critical, CheckSecrets, s.cluster.name, ref.String(), fmt.Sprintf("missing: %s cannot start a Pod without it; create it in this cluster", users))
			default:
				r.add(Warn, CheckSecrets, s.cluster.name, ref.String(), readErr("reading its metadata", res.err))
			}
		}
	}
}

// need is who needs an object; pullOnly when only as an image pull Secret
// (a Pod starts without it if the image can be pulled anyway).
type need struct {
	users    []string
	pullOnly bool
}

// neededBy adds the Secrets and ConfigMaps spec needs to needs, as used by
// owner.
func neededBy(needs map[objectRef]*need, ns, owner string, spec corev1.PodSpec) {
	add := func(resource, name string, optional *bool, pull bool) {
		if name == "" || (optional != nil && *optional) {
			return
		}
		ref := objectRef{resource: resource, namespace: ns, name: name}
		n := needs[ref]
		if n == nil {
			n = &need{pullOnly: true}
			needs[ref] = n
		}
		n.pullOnly = n.pullOnly && pull
		if !slices.Contains(n.users, owner) {
			n.users = append(n.users, owner)
		}
	}
	for _, v := range spec.Volumes {
		switch {
		case v.Secret != nil:
			add("secrets", v.Secret.SecretName, v.Secret.Optional, false)
		case v.ConfigMap != nil:
			add("configmaps", v.ConfigMap.Name, v.ConfigMap.Optional, false)
		case v.Projected != nil:
			for _, src := range v.Projected.Sources {
				if src.Secret != nil {
					add("secrets", src.Secret.Name, src.Secret.Optional, false)
				}
				if src.ConfigMap != nil {
					add("configmaps", src.ConfigMap.Name, src.ConfigMap.Optional, false)
				}
			}
		}
	}
	for _, ps := range spec.ImagePullSecrets {
		add("secrets", ps.Name, nil, true)
	}
	for _, list := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for _, c := range list {
			for _, e := range c.Env {
				if e.ValueFrom == nil {
					continue
				}
				if ref := e.ValueFrom.SecretKeyRef; ref != nil {
					add("secrets", ref.Name, ref.Optional, false)
				}
				if ref := e.ValueFrom.ConfigMapKeyRef; ref != nil {
					add("configmaps", ref.Name, ref.Optional, false)
				}
			}
			for _, ef := range c.EnvFrom {
				if ef.SecretRef != nil {
					add("secrets", ef.SecretRef.Name, ef.SecretRef.Optional, false)
				}
				if ef.ConfigMapRef != nil {
					add("configmaps", ef.ConfigMapRef.Name, ef.ConfigMapRef.Optional, false)
				}
			}
		}
	}
}
