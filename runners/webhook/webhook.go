// Package webhook receives GitOps controller notifications over HTTP and
// turns them into the same signed records as the informer watchers:
//
//	POST /webhooks/flux    a Flux notification-controller event (provider type generic-hmac)
//	POST /webhooks/argocd  an Argo CD notification whose body carries the Application
//
// Every request must carry X-Signature: sha256=<hex HMAC-SHA256(secret, body)>,
// the header Flux's generic-hmac provider sends. A request is refused when the
// signature does not verify (401), when its timestamp is outside the replay
// window, or when the same signed body was already accepted within the
// window (409): a captured request cannot be replayed.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"evident.dev/evident/client"
	"evident.dev/evident/runners/gitops"
)

// Sink takes what the receiver makes of a notification (gitops.Watcher).
type Sink interface {
	Observe(gvr schema.GroupVersionResource, obj map[string]any) error
	Emit(uid string, ems ...gitops.Emission)
}

// Config configures a Receiver.
type Config struct {
	Secret []byte // the shared HMAC secret; required
	Sink   Sink
	Flux   *gitops.Flux // turns Flux events into records
	// Window is how far a notification's timestamp may be from now, and how
	// long an accepted signature is remembered; default 5m.
	Window   time.Duration
	Clock    func() time.Time // default time.Now
	Logger   *slog.Logger
	Registry prometheus.Registerer
	MaxBody  int64 // default 1 MiB
}

// Receiver is the webhook HTTP handler.
type Receiver struct {
	cfg      Config
	log      *slog.Logger
	requests *prometheus.CounterVec

	mu   sync.Mutex
	seen map[[sha256.Size]byte]time.Time // accepted signatures → when they may be forgotten
}

// New returns a receiver.
func New(cfg Config) (*Receiver, error) {
	if len(cfg.Secret) == 0 || cfg.Sink == nil || cfg.Flux == nil {
		return nil, errors.New("webhook: Secret, Sink and Flux are required")
	}
	if cfg.Window <= 0 {
		cfg.Window = 5 * time.Minute
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 1 << 20
	}
	r := &Receiver{
		cfg: cfg, log: cfg.Logger, seen: map[[sha256.Size]byte]time.Time{},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "evident_watch_webhook_requests_total",
			Help: "Webhook notifications by source and outcome."}, []string{"source", "outcome"}),
	}
	if cfg.Registry != nil {
		cfg.Registry.MustRegister(r.requests)
	}
	return r, nil
}

// ServeHTTP implements http.Handler.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var source string
	switch req.URL.Path {
	case "/webhooks/flux":
		source = "flux"
	case "/webhooks/argocd":
		source = "argocd"
	default:
		http.NotFound(w, req)
		return
	}
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		r.fail(w, source, "method", http.StatusMethodNotAllowed, "POST only")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, r.cfg.MaxBody))
	if err != nil {
		r.fail(w, source, "too_large", http.StatusRequestEntityTooLarge, "body too large or unreadable")
		return
	}
	mac, ok := r.verify(req.Header.Get("X-Signature"), body)
	if !ok {
		r.fail(w, source, "bad_signature", http.StatusUnauthorized, "X-Signature does not verify (want sha256=<hex HMAC-SHA256 of the body>)")
		return
	}
	var at time.Time
	var handle func() (string, error)
	switch source {
	case "flux":
		var ev gitops.FluxEvent
		if err := json.Unmarshal(body, &ev); err != nil {
			r.fail(w, source, "malformed", http.StatusBadRequest, "not a Flux event: "+err.Error())
			return
		}
		at = ev.Timestamp
		handle = func() (string, error) { return r.flux(&ev) }
	case "argocd":
		var n ArgoNotification
		if err := json.Unmarshal(body, &n); err != nil {
			r.fail(w, source, "malformed", http.StatusBadRequest, "not an Argo CD notification: "+err.Error())
			return
		}
		at = n.SentAt
		handle = func() (string, error) { return "queued", r.cfg.Sink.Observe(gitops.ApplicationResource, n.App) }
	}
	now := r.cfg.Clock()
	if at.IsZero() || at.Before(now.Add(-r.cfg.Window)) || at.After(now.Add(r.cfg.Window)) {
		r.fail(w, source, "stale", http.StatusConflict, fmt.Sprintf("timestamp %s is outside the replay window of %s", at.Format(time.RFC3339), r.cfg.Window))
		return
	}
	if !r.remember(mac, now) {
		r.fail(w, source, "replayed", http.StatusConflict, "this notification was already received")
		return
	}
	outcome, err := handle()
	if err != nil {
		r.forget(mac) // let the sender retry
		r.fail(w, source, "unusable", http.StatusBadRequest, err.Error())
		return
	}
	r.requests.WithLabelValues(source, outcome).Inc()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	fmt.Fprintf(w, "{\"outcome\":%q}\n", outcome)
}

// ArgoNotification is the body the Argo CD notification template sends (see
// docs/gitops.md): the Application as the controller holds it, and when the
// notification was sent.
type ArgoNotification struct {
	SentAt time.Time      `json:"sentAt"`
	App    map[string]any `json:"app"`
}

func (r *Receiver) flux(ev *gitops.FluxEvent) (string, error) {
	if ev.InvolvedObject.UID == "" || ev.InvolvedObject.Name == "" {
		return "", errors.New("the event names no involvedObject uid and name")
	}
	em, ok := r.cfg.Flux.FromEvent(ev)
	if !ok {
		return "ignored", nil
	}
	// Refused now, with the reason, rather than acknowledged and then
	// dropped when the record fails to sign: the sender would never retry.
	for _, t := range em.Records {
		if err := client.Check(t); err != nil {
			return "", fmt.Errorf("the event cannot become a valid %s record: %w", t.Kind, err)
		}
	}
	r.cfg.Sink.Emit(ev.InvolvedObject.UID, em)
	return "queued", nil
}

func (r *Receiver) verify(header string, body []byte) ([sha256.Size]byte, bool) {
	var mac [sha256.Size]byte
	hexMAC, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return mac, false
	}
	got, err := hex.DecodeString(hexMAC)
	if err != nil {
		return mac, false
	}
	h := hmac.New(sha256.New, r.cfg.Secret)
	h.Write(body)
	copy(mac[:], h.Sum(nil))
	return mac, hmac.Equal(got, mac[:])
}

// remember records an accepted signature; false if it was already there.
// Signatures are forgotten once their timestamps would be refused anyway, so
// the set stays bounded by the request rate times the window.
func (r *Receiver) remember(mac [sha256.Size]byte, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, until := range r.seen {
		if now.After(until) {
			delete(r.seen, k)
		}
	}
	if _, dup := r.seen[mac]; dup {
		return false
	}
	r.seen[mac] = now.Add(2 * r.cfg.Window)
	return true
}

func (r *Receiver) forget(mac [sha256.Size]byte) {
	r.mu.Lock()
	delete(r.seen, mac)
	r.mu.Unlock()
}

func (r *Receiver) fail(w http.ResponseWriter, source, outcome string, status int, msg string) {
	r.requests.WithLabelValues(source, outcome).Inc()
	r.log.Warn("webhook refused", "source", source, "outcome", outcome, "status", status, "reason", msg)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]string{"error": msg, "code": outcome})
	w.Write(append(b, '\n'))
}
