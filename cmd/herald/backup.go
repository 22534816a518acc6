package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/herald-hub/herald/engine/local"
)

// backupCmd runs `herald backup DIR`: it asks a running herald for a
// consistent copy of its store (GET /v1/backup, publish key only) and unpacks
// it into DIR.
func backupCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("herald backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", envOr(getenv, "HERALD_URL", "http://127.0.0.1:8080"), "`URL` of the running herald ($HERALD_URL)")
	key := fs.String("key", "", "publish `key` ($HERALD_PUBLISH_KEY's first key, else the data dir's publish.key)")
	dataDir := fs.String("data-dir", envOr(getenv, "HERALD_DATA_DIR", "./data"), "`dir`ectory holding publish.key when no key is given ($HERALD_DATA_DIR)")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: herald backup [-url URL] [-key KEY] DIR

Copies the store of a running herald into DIR (which must not exist), while it
serves: a consistent copy holding every event acknowledged before it began.
Restore it with herald restore.

Exit status: 0 when the copy is complete; 1 when it fails; 2 on a bad command line.

Flags:
`)
		fs.PrintDefaults()
	}
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "herald backup: want one argument, the directory to write the copy into")
		return exitBadConfig
	}
	dest := fs.Arg(0)
	if _, err := os.Stat(dest); err == nil {
		fmt.Fprintf(stderr, "herald backup: %s exists; name a new directory\n", dest)
		return exitBadConfig
	}
	k := *key
	if k == "" {
		k = firstKey(getenv("HERALD_PUBLISH_KEY"))
	}
	if k == "" {
		b, err := os.ReadFile(filepath.Join(*dataDir, "publish.key"))
		if err != nil {
			fmt.Fprintf(stderr, "herald backup: no publish key: give -key, set HERALD_PUBLISH_KEY, or -data-dir of the server (%v)\n", err)
			return exitBadConfig
		}
		k = strings.TrimSpace(string(b))
	}
	if err := fetchBackup(ctx, strings.TrimSuffix(*url, "/")+"/v1/backup", k, dest); err != nil {
		if !errors.Is(err, os.ErrExist) {
			os.RemoveAll(dest) // what this run created, never a directory that was there
		}
		fmt.Fprintln(stderr, "herald backup:", err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "backup written to %s\n", dest)
	return exitOK
}

func fetchBackup(ctx context.Context, url, key, dest string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct{ Code, Message string }
		}
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(raw, &e) == nil && e.Error.Code != "" {
			return fmt.Errorf("%s: %d %s: %s", url, resp.StatusCode, e.Error.Code, e.Error.Message)
		}
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return local.ReadBackup(resp.Body, dest)
}

// restoreCmd runs `herald restore BACKUP`: with herald stopped, it moves the
// data dir's store aside and puts a copy of the backup in its place, with a
// new epoch.
func restoreCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("herald restore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", envOr(getenv, "HERALD_DATA_DIR", "./data"), "data `dir`ectory of the herald to restore ($HERALD_DATA_DIR)")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: herald restore [-data-dir DIR] BACKUP

With herald stopped, replaces the store in the data dir by a copy of BACKUP (a
directory written by herald backup). The store it replaces is kept, renamed
log.before-restore-TIME. The restored store gets a new epoch: clients that
resume from before the restore get herald.gap, then the history the backup
holds, instead of events that reuse their old positions.

Exit status: 0 when restored; 1 when it fails; 2 on a bad command line.

Flags:
`)
		fs.PrintDefaults()
	}
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "herald restore: want one argument, the backup directory")
		return exitBadConfig
	}
	store := filepath.Join(*dataDir, "log")
	r, err := local.Restore(fs.Arg(0), store)
	if err != nil {
		fmt.Fprintln(stderr, "herald restore:", err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "restored %s into %s with the new epoch %s (the backup's was %s)\n", fs.Arg(0), store, r.Epoch, r.BackupEpoch)
	if r.Aside != "" {
		fmt.Fprintf(stdout, "the store it replaced is in %s; delete it when you no longer need it\n", r.Aside)
	}
	return exitOK
}

func envOr(getenv func(string) string, name, def string) string {
	if v := getenv(name); v != "" {
		return v
	}
	return def
}

// firstKey is the first key of a publish-key list, without its "name=".
func firstKey(list string) string {
	keys := splitList(list)
	if len(keys) == 0 {
		return ""
	}
	if _, k, ok := strings.Cut(keys[0], "="); ok {
		return k
	}
	return keys[0]
}
