package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/herald-hub/herald/client"
)

// herald backup copies a running herald's store; herald restore puts it back
// with a new epoch. A client whose cursor lies past the backup resumes with a
// herald.gap and the history the backup holds, never a silent skip over the
// events that now reuse its old positions.
func TestProcessBackupAndRestoreAnnounceAGap(t *testing.T) {
	if testing.Short() {
		t.Skip("starts herald processes")
	}
	tmp := t.TempDir()
	dataDir := filepath.Join(tmp, "data")
	p := startProcess(t, dataDir)
	const topic = "rooms/restore"
	for i := range 10 {
		p.publish(topic, fmt.Sprint("kept-", i))
	}
	backupDir := filepath.Join(tmp, "backup")
	var out, errOut bytes.Buffer
	none := func(string) string { return "" }
	if code := run(context.Background(), []string{"backup", "-url", p.url(""), "-key", processKey, backupDir}, none, &out, &errOut); code != 0 {
		t.Fatalf("herald backup: exit %d: %s", code, errOut.String())
	}
	var last string
	for i := range 5 {
		last = p.publish(topic, fmt.Sprint("lost-", i)) // the client saw these
	}
	if code := run(context.Background(), []string{"restore", "-data-dir", dataDir, backupDir}, none, &out, &errOut); code == 0 {
		t.Fatal("herald restore succeeded while herald runs")
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-p.done
	out.Reset()
	if code := run(context.Background(), []string{"restore", "-data-dir", dataDir, backupDir}, none, &out, &errOut); code != 0 {
		t.Fatalf("herald restore: exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "new epoch") {
		t.Fatalf("herald restore said %q", out.String())
	}

	p = startProcess(t, dataDir)
	for i := range 3 {
		p.publish(topic, fmt.Sprint("new-", i)) // offsets 11..13 again
	}
	s := client.Dial(context.Background(), client.Config{URL: p.url("/v1/events?topic=" + topic), LastEventID: last})
	defer s.Close()
	got := receive(t, s, 14)
	if got[0].Type != "herald.gap" {
		t.Fatalf("first event after the restore is %q %q, want herald.gap", got[0].Type, got[0].Data)
	}
	for i, ev := range got[1:] {
		want := fmt.Sprint("kept-", i)
		if i >= 10 {
			want = fmt.Sprint("new-", i-10)
		}
		if ev.Data != want {
			t.Fatalf("event %d after the gap = %q, want %q", i, ev.Data, want)
		}
	}
	noMore(t, s)
}

func TestBackupCommandLine(t *testing.T) {
	none := func(string) string { return "" }
	for _, args := range [][]string{
		{"backup"},
		{"backup", "a", "b"},
		{"backup", t.TempDir()}, // exists
		{"restore"},
	} {
		if code := run(context.Background(), args, none, io.Discard, io.Discard); code != exitBadConfig {
			t.Errorf("%q: exit %d, want %d", args, code, exitBadConfig)
		}
	}
	// A server that is not there: a failure, and nothing left behind.
	dest := filepath.Join(t.TempDir(), "b")
	var errOut bytes.Buffer
	code := run(context.Background(), []string{"backup", "-url", "http://127.0.0.1:1", "-key", "k", dest}, none, io.Discard, &errOut)
	if code != exitFailure || !strings.Contains(errOut.String(), "connection refused") {
		t.Fatalf("backup from no server: exit %d %q", code, errOut.String())
	}
}

// A data dir copied back by hand from an older copy keeps its epoch, and its
// offsets go to new, different events. A client whose cursor names one of the
// events lost with the copy gets herald.gap: the cursor's check does not match
// the event the store now holds there.
func TestProcessDataDirCopiedBackAnnouncesAGap(t *testing.T) {
	if testing.Short() {
		t.Skip("starts herald processes")
	}
	tmp := t.TempDir()
	dataDir := filepath.Join(tmp, "data")
	stop := func(p *process) {
		t.Helper()
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		<-p.done
	}
	p := startProcess(t, dataDir)
	const topic = "rooms/copied"
	for i := range 10 {
		p.publish(topic, fmt.Sprint("kept-", i))
	}
	stop(p)
	oldCopy := filepath.Join(tmp, "copy")
	if err := os.CopyFS(oldCopy, os.DirFS(dataDir)); err != nil {
		t.Fatal(err)
	}

	p = startProcess(t, dataDir)
	s := client.Dial(context.Background(), client.Config{URL: p.url("/v1/events?topic=" + topic)})
	waitFor(t, func() bool { return s.LastEventID() != "" })
	for i := range 5 {
		p.publish(topic, fmt.Sprint("lost-", i)) // offsets 11..15, seen by the client
	}
	receive(t, s, 5)
	last := s.LastEventID()
	s.Close()
	stop(p)

	if err := os.RemoveAll(dataDir); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(dataDir, os.DirFS(oldCopy)); err != nil {
		t.Fatal(err)
	}
	p = startProcess(t, dataDir)
	for i := range 8 {
		p.publish(topic, fmt.Sprint("new-", i)) // offsets 11..18 again
	}
	s = client.Dial(context.Background(), client.Config{URL: p.url("/v1/events?topic=" + topic), LastEventID: last})
	defer s.Close()
	waitFor(t, func() bool { return s.LastEventID() != last })
	p.publish(topic, "live")
	got := receive(t, s, 2)
	if got[0].Type != "herald.gap" || got[1].Data != "live" {
		t.Fatalf("after a data dir copied back, the client got %q %q then %q, want herald.gap then live", got[0].Type, got[0].Data, got[1].Data)
	}
	noMore(t, s)
}
