package ledger

// QueueLen is how many appends wait for the sequencer to take them: a test
// that stalls the sequencer knows from it what queued up behind.
func QueueLen(l *Log) int { return len(l.queue) }
