package oracle

import (
	"fmt"
	"slices"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	kubelib "istio.io/istio/pkg/kube"
)

// rbacAuthorizer answers SubjectAccessReviews from the world's Roles, ClusterRoles and their
// bindings, as the API server's RBAC authorizer would. istiod asks one before it hands a
// proxy the key of a credentialName Secret (pilot/pkg/credentials/kube/secrets.go,
// Authorize): without a Role granting the proxy's ServiceAccount `list secrets` in its
// namespace, the key is never sent.
type rbacAuthorizer struct {
	roles        []rbacv1.Role
	clusterRoles []rbacv1.ClusterRole
	bindings     []rbacv1.RoleBinding
	clusterBinds []rbacv1.ClusterRoleBinding
}

func newRBACAuthorizer(objects []*unstructured.Unstructured) (*rbacAuthorizer, error) {
	a := &rbacAuthorizer{}
	for _, obj := range objects {
		var target any
		switch obj.GetKind() {
		case "Role":
			a.roles = append(a.roles, rbacv1.Role{})
			target = &a.roles[len(a.roles)-1]
		case "ClusterRole":
			a.clusterRoles = append(a.clusterRoles, rbacv1.ClusterRole{})
			target = &a.clusterRoles[len(a.clusterRoles)-1]
		case "RoleBinding":
			a.bindings = append(a.bindings, rbacv1.RoleBinding{})
			target = &a.bindings[len(a.bindings)-1]
		case "ClusterRoleBinding":
			a.clusterBinds = append(a.clusterBinds, rbacv1.ClusterRoleBinding{})
			target = &a.clusterBinds[len(a.clusterBinds)-1]
		default:
			continue
		}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, target); err != nil {
			return nil, fmt.Errorf("%s %s: %v", obj.GetKind(), obj.GetName(), err)
		}
	}
	return a, nil
}

// install makes the fake clientset answer SubjectAccessReviews with this authorizer.
func (a *rbacAuthorizer) install(client kubelib.Client) {
	clientset, ok := client.Kube().(*fake.Clientset)
	if !ok {
		return
	}
	clientset.Fake.PrependReactor("create", "subjectaccessreviews", func(action k8stesting.Action) (bool, runtime.Object, error) {
		review := action.(k8stesting.CreateAction).GetObject().(*authorizationv1.SubjectAccessReview)
		allowed, reason := a.allows(review.Spec)
		review = review.DeepCopy()
		review.Status = authorizationv1.SubjectAccessReviewStatus{Allowed: allowed, Reason: reason}
		return true, review, nil
	})
}

func (a *rbacAuthorizer) allows(spec authorizationv1.SubjectAccessReviewSpec) (bool, string) {
	attrs := spec.ResourceAttributes
	if attrs == nil {
		return false, "only resource requests are modelled"
	}
	namespace, account, isServiceAccount := strings.Cut(strings.TrimPrefix(spec.User, "system:serviceaccount:"), ":")
	if !isServiceAccount || !strings.HasPrefix(spec.User, "system:serviceaccount:") {
		return false, "only service accounts are modelled"
	}
	subjectMatches := func(subjects []rbacv1.Subject, bindingNamespace string) bool {
		for _, s := range subjects {
			ns := s.Namespace
			if ns == "" {
				ns = bindingNamespace
			}
			if s.Kind == "ServiceAccount" && s.Name == account && ns == namespace {
				return true
			}
		}
		return false
	}
	rulesAllow := func(rules []rbacv1.PolicyRule) bool {
		for _, r := range rules {
			if matchesAny(r.APIGroups, attrs.Group) && matchesAny(r.Resources, attrs.Resource) && matchesAny(r.Verbs, attrs.Verb) &&
				(len(r.ResourceNames) == 0 || slices.Contains(r.ResourceNames, attrs.Name)) {
				return true
			}
		}
		return false
	}
	roleRules := func(ref rbacv1.RoleRef, bindingNamespace string) []rbacv1.PolicyRule {
		switch ref.Kind {
		case "Role":
			for _, r := range a.roles {
				if r.Name == ref.Name && r.Namespace == bindingNamespace {
					return r.Rules
				}
			}
		case "ClusterRole":
			for _, r := range a.clusterRoles {
				if r.Name == ref.Name {
					return r.Rules
				}
			}
		}
		return nil
	}
	for _, b := range a.bindings {
		if b.Namespace == attrs.Namespace && subjectMatches(b.Subjects, b.Namespace) && rulesAllow(roleRules(b.RoleRef, b.Namespace)) {
			return true, "RoleBinding " + b.Namespace + "/" + b.Name
		}
	}
	for _, b := range a.clusterBinds {
		if subjectMatches(b.Subjects, "") && rulesAllow(roleRules(b.RoleRef, "")) {
			return true, "ClusterRoleBinding " + b.Name
		}
	}
	return false, fmt.Sprintf("no Role or ClusterRole bound to %s grants %s %s in %s", spec.User, attrs.Verb, attrs.Resource, attrs.Namespace)
}

func matchesAny(patterns []string, value string) bool {
	return slices.Contains(patterns, "*") || slices.Contains(patterns, value)
}
