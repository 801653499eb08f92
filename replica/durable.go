package replica

import (
	"context"

	"evident.dev/evident/ledger"
)

// DurableAppender is the log as ingest sees it in durability object-store
// mode: a record is acknowledged only once it is durable in the writer's log
// and its entry bundle is in object storage, so losing the writer's disk
// loses nothing acknowledged. If the wait fails (ctx, or the export stopped),
// the entry is in the log but not acknowledged; posting it again returns it.
type DurableAppender struct {
	Log interface {
		Append(ctx context.Context, rec ledger.Record) (ledger.Receipt, error)
	}
	Exporter *Exporter
}

// Append implements ingest.Appender.
func (d DurableAppender) Append(ctx context.Context, rec ledger.Record) (ledger.Receipt, error) {
	r, err := d.Log.Append(ctx, rec)
	if err != nil {
		return r, err
	}
	if err := d.Exporter.WaitUploaded(ctx, r.Index+1); err != nil {
		return ledger.Receipt{}, err
	}
	return r, nil
}
