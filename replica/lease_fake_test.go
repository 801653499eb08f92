package replica_test

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	coordv1 "k8s.io/api/coordination/v1"
)

var metav1GetOptions = metav1.GetOptions{}

// crashedWriterCannotRelease refuses lease updates by the crashed holder: a
// crashed process neither renews nor releases its lease, so the standby must
// wait for it to expire.
func crashedWriterCannotRelease(id string) k8stesting.ReactionFunc {
	return func(action k8stesting.Action) (bool, runtime.Object, error) {
		u, ok := action.(k8stesting.UpdateAction)
		if !ok {
			return false, nil, nil
		}
		lease, ok := u.GetObject().(*coordv1.Lease)
		if !ok {
			return false, nil, nil
		}
		// Renewals write id as the holder; the release on shutdown, none.
		if h := lease.Spec.HolderIdentity; h != nil && (*h == id || *h == "") {
			return true, nil, errCrashed
		}
		return false, nil, nil
	}
}

var errCrashed = crashed{}

type crashed struct{}

func (crashed) Error() string { return "the writer crashed" }
