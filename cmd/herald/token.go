package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/herald-hub/herald/auth"
)

// listFlag collects a repeatable, comma-separated flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	*l = append(*l, splitList(v)...)
	return nil
}

// tokenCmd runs `herald token`: it mints an HS256 token with the server's own
// secret (HERALD_JWT_SECRET, or jwt-secret in the config file), audience and
// issuer, for development and the demo. Production tokens come from the
// application's login.
func tokenCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("herald token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sub := fs.String("sub", "", "the token's subject (user id); it may read users/<sub> (required)")
	var subscribe, publish listFlag
	fs.Var(&subscribe, "subscribe", "topic `pattern` the token may subscribe to (repeat or comma-separate), e.g. 'rooms/*'")
	fs.Var(&publish, "publish", "topic `pattern` the token may publish to (repeat or comma-separate), e.g. 'rooms/7'")
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid (above 0)")
	file := fs.String("config", "", "TOML config file of herald serve, for jwt-secret, jwt-audience and jwt-issuer ($HERALD_CONFIG)")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: herald token -sub ID [-subscribe PATTERN]... [-publish PATTERN]... [-ttl 1h]

Prints a token signed with the server's HS256 secret (HERALD_JWT_SECRET or
jwt-secret in the config file), with its audience and issuer when set.

Exit status: 0 when the token is printed; 2 on a bad command line or a bad
configuration (no secret, a bad flag or setting).

Flags:
`)
		fs.PrintDefaults()
	}
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "herald token: unexpected argument %q\n", fs.Arg(0))
		return exitBadConfig
	}
	if *sub == "" {
		fmt.Fprintln(stderr, "herald token: -sub is required")
		return exitBadConfig
	}
	if *ttl <= 0 {
		fmt.Fprintf(stderr, "herald token: -ttl %v: want a positive duration like 1h (a token that is already expired is of no use)\n", *ttl)
		return exitBadConfig
	}
	var cfgArgs []string
	if *file != "" {
		cfgArgs = []string{"-config", *file}
	}
	cfg, err := loadConfig(cfgArgs, getenv, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "herald token:", err)
		return exitBadConfig
	}
	if cfg.JWTSecret == "" {
		fmt.Fprintln(stderr, "herald token: no secret: set HERALD_JWT_SECRET (at least 32 bytes) or jwt-secret in the config file, and give the server the same")
		return exitBadConfig
	}
	tok, err := auth.Mint([]byte(cfg.JWTSecret), auth.Grants{Subscribe: subscribe, Publish: publish}, auth.MintOptions{
		Subject:  *sub,
		TTL:      *ttl,
		Audience: cfg.JWTAudience,
		Issuer:   cfg.JWTIssuer,
	})
	if err != nil {
		fmt.Fprintln(stderr, "herald token:", err)
		return exitBadConfig
	}
	fmt.Fprintln(stdout, tok)
	return exitOK
}
