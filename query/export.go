package query

import (
	"log/slog"
	"net/http"

	"evident.dev/evident/audit"
	"evident.dev/evident/ledger"
)

// Snapshotter is the log as the export endpoint needs it.
type Snapshotter interface {
	Snapshot() (*ledger.Snapshot, error)
	Origin() string
	VerifierKey() string
	LogKeys() []ledger.LogKey
}

// ExportHandler streams the whole log in the export format (GET /v1/export),
// from one consistent snapshot, so a running server can be exported.
type ExportHandler struct {
	log    Snapshotter
	logger *slog.Logger
}

// NewExportHandler returns the export handler.
func NewExportHandler(log Snapshotter, logger *slog.Logger) *ExportHandler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &ExportHandler{log: log, logger: logger}
}

// Register adds the route to mux.
func (h *ExportHandler) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/export", h.export)
}

func (h *ExportHandler) export(w http.ResponseWriter, r *http.Request) {
	snap, err := h.log.Snapshot()
	if err != nil {
		h.logger.Error("export snapshot", "err", err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "could not open a snapshot of the log", "code": "internal"})
		return
	}
	defer snap.Close()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Content-Disposition", `attachment; filename="evident-export.jsonl"`)
	if err := audit.WriteExport(r.Context(), w, snap, h.log.Origin(), genesisKey(h.log)); err != nil {
		// Headers are sent; the client sees a truncated export, which
		// verify reports as such.
		h.logger.Error("export interrupted", "err", err)
	}
}

// genesisKey is the log key the genesis names, the one auditors pin and
// follow through rotations; the current key before the genesis exists.
func genesisKey(l interface {
	LogKeys() []ledger.LogKey
	VerifierKey() string
}) string {
	if keys := l.LogKeys(); len(keys) > 0 {
		return keys[0].VerifierKey
	}
	return l.VerifierKey()
}
