// Command evident is the Evident evidence ledger: one binary for the server
// and for everything runners and auditors do with it.
//
//	evident serve    [--config FILE] [--data DIR] [--listen ADDR] [--operator ID]
//	evident serve    --follow s3://BUCKET/PREFIX --log-key KEY [--data DIR] [--listen ADDR]
//	evident restore  --from s3://BUCKET/PREFIX [--data DIR] [--log-key KEY]
//	evident keys generate --name NAME --dir DIR [--alg ed25519|ecdsa-p256]
//	evident record post --key FILE --file PREDICATE.json [--server URL]
//	evident record sign --key FILE --file PREDICATE.json
//	evident proof    --index I [--server URL] [--log-key KEY]
//	evident export   (--data DIR | --server URL) --out FILE
//	evident verify   (--data DIR | --export FILE | --pack FILE) [--log-key KEY] [--rekor-key FILE] [--fast]
//	evident anchor   --rekor URL --rekor-key FILE [--config FILE | --data DIR]
//	evident runner   plan|apply|drift|force-unlock --stack DIR --key FILE (--artifacts DIR | --s3-bucket B)
//	evident load     --key FILE [--server URL] [--records N] [--concurrency C]
//	evident gate check --change ID --commit SHA (--plan FILE | --plan-sha256 HEX) --env ENV --actor ID [--server URL]
//	evident pack     --change ID --out FILE [--server URL] [--token T] [--log-key KEY]
//	evident demo     --key FILE [--server URL]
//	evident query-load [--server URL] [--token T] [--clients C] [--duration D] [--seed N --key FILE] [--ingest-rate R]
//	evident watch    argocd|flux|webhook --key FILE --environment ENV --cluster NAME [--server URL] [--spool DIR]
//
// Every subcommand prints its flags with -h.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"evident.dev/evident/server"
)

// version is set at build time with -ldflags "-X main.version=…"; left
// empty, buildVersion derives it from what the Go toolchain recorded.
var version = ""

// buildVersion is the version this binary reports and records in a new
// log's genesis: the -X value, else the module version `go install`
// stamped, else the VCS revision `go build` in a checkout stamped (with
// "+dirty" for uncommitted changes), else "devel".
func buildVersion() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev == "" {
		return "devel"
	}
	return "devel-" + rev + dirty
}

// defaultServer is the server commands talk to unless --server says
// otherwise: $EVIDENT_SERVER, else the local default.
func defaultServer() string {
	if s := os.Getenv("EVIDENT_SERVER"); s != "" {
		return s
	}
	return "http://127.0.0.1:8080"
}

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"serve", "run the ledger server", runServe},
		{"keys", "generate signing keys (keys generate)", runKeys},
		{"record", "sign and post a transition record (record post|sign)", runRecord},
		{"proof", "fetch and verify an entry's inclusion proof", runProof},
		{"export", "write the whole log to one file", runExport},
		{"verify", "check a data directory or an export offline", troubleIs2(runVerify)},
		{"anchor", "anchor the latest checkpoint in Rekor (a stopped server's log)", runAnchor},
		{"runner", "OpenTofu/Terraform runner (runner plan|apply|drift|force-unlock)", runRunner},
		{"restore", "rebuild a data directory from the log's tiles in object storage", runRestore},
		{"load", "post signed records concurrently and report throughput and latency", runLoad},
		{"gate", "ask the apply gate whether a plan may be applied (gate check)", troubleIs2(runGate)},
		{"pack", "download a change's evidence pack and check it", runPack},
		{"demo", "post the audit-queries demo data set", runDemo},
		{"query-load", "run the audit queries concurrently (optionally while ingesting) and report latency", runQueryLoad},
		{"watch", "record GitOps transitions (watch argocd|flux|webhook)", runWatch},
		{"version", "print the version", printVersion},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "evident:", err)
		}
		os.Exit(exitCode(err))
	}
}

// Exit codes: 0 success, 1 a failure at run time, 2 a usage error (a bad
// flag, a missing argument). Commands whose 1 answers a question keep 2 for
// any trouble instead, as grep and diff do: verify (1: the log or pack does
// not verify) and gate check (1: denied). The runner's apply and drift add
// their own (docs/runner.md).

// exitError carries a specific exit status (verify uses 1 for a bad log).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageError is a command line that cannot run: exit 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// usageErrorf is a usage error with a message.
func usageErrorf(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// parseFlags parses args into fs; a bad flag is a usage error.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	return nil
}

// troubleIs2 gives a command whose exit code 1 is an answer (not verified,
// denied) the code 2 for every other failure.
func troubleIs2(run func(context.Context, []string, io.Writer, io.Writer) error) func(context.Context, []string, io.Writer, io.Writer) error {
	return func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		err := run(ctx, args, stdout, stderr)
		var ee *exitError
		if err != nil && !errors.As(err, &ee) && !errors.Is(err, flag.ErrHelp) {
			return &exitError{2, err}
		}
		return err
	}
}

func exitCode(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0 // -h asked for the usage, as with flag.ExitOnError
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if errors.As(err, new(usageError)) || errors.As(err, new(server.UsageError)) {
		return 2
	}
	return 1
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return usageErrorf("no command given")
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	if args[0] == "--version" || args[0] == "-version" {
		return printVersion(ctx, nil, stdout, stderr)
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		return nil
	}
	usage(stderr)
	return usageErrorf("unknown command %q", args[0])
}

func printVersion(_ context.Context, _ []string, out, _ io.Writer) error {
	_, err := fmt.Fprintln(out, "evident", buildVersion(), runtime.Version())
	return err
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: evident <command> [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("evident "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}
