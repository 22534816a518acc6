// Command herald is the Herald notification hub: `herald serve` runs a node,
// `herald bench` measures a server, `herald token` mints a development token,
// `herald version` prints the build.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = "dev"

const usage = `herald — real-time notification hub over Server-Sent Events

Usage:
  herald serve [flags]   run a node (herald serve -h lists the flags)
  herald bench [flags]   measure a server under load (herald bench -h)
  herald token [flags]   mint a token for development (herald token -h)
  herald backup DIR      copy the store of a running herald (herald backup -h)
  herald restore BACKUP  put a backup in place of the store, with a new epoch
  herald probe [URL]     GET /readyz (or URL): exit 0 on 2xx, for health checks
  herald version         print the version

Exit status: 0 on success; 1 when a command fails while running; 2 on a bad
command line or a bad configuration (a flag, an environment variable, the
config file, a key file), for every command.
`

// Exit codes, the same for every command.
const (
	exitOK        = 0
	exitFailure   = 1 // failed while running
	exitBadConfig = 2 // bad command line or configuration; nothing was started
)

func main() {
	os.Exit(runAsMain())
}

func runAsMain() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
}

// run is main without the process: testable, and every exit code in one place.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitBadConfig
	}
	switch args[0] {
	case "serve":
		cfg, err := loadConfig(args[1:], getenv, stderr)
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		if err != nil {
			fmt.Fprintln(stderr, "herald serve:", err)
			return exitBadConfig
		}
		if err := serve(ctx, cfg, stderr); err != nil {
			fmt.Fprintln(stderr, "herald serve:", err)
			var bad *badConfigError
			if errors.As(err, &bad) {
				return exitBadConfig
			}
			return exitFailure
		}
		return exitOK
	case "bench":
		return benchCmd(ctx, args[1:], getenv, stdout, stderr)
	case "token":
		return tokenCmd(ctx, args[1:], getenv, stdout, stderr)
	case "backup":
		return backupCmd(ctx, args[1:], getenv, stdout, stderr)
	case "restore":
		return restoreCmd(ctx, args[1:], getenv, stdout, stderr)
	case "probe":
		return probeCmd(ctx, args[1:], getenv, stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "herald", buildVersion())
		return exitOK
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "herald: unknown command %q\n\n%s", args[0], usage)
		return exitBadConfig
	}
}

func buildVersion() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		v += " " + bi.GoVersion
	}
	return v
}

// parseFlags parses a command's flags: -h has printed the usage (exit 0), a
// bad flag has printed its error (exit 2). done reports that the command ends.
func parseFlags(fs *flag.FlagSet, args []string) (code int, done bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, true
		}
		return exitBadConfig, true
	}
	return 0, false
}
