package local

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herald-hub/herald/engine"
)

func appendN(t *testing.T, e *Engine, topic, prefix string, n int) []engine.Position {
	t.Helper()
	var out []engine.Position
	for i := range n {
		pos, err := e.Append(context.Background(), []engine.Event{{Topic: topic, Type: "t", Data: []byte(fmt.Sprint(prefix, i))}})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, pos[0])
	}
	return out
}

// A restored backup holds what was acknowledged before the backup, and starts
// a new epoch: a cursor from before the restore, even one past the backup's
// head, reads a gap, never the different events that now hold its offsets.
func TestRestoredBackupStartsANewEpoch(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "log")
	e := openT(t, dir, Options{})
	appendN(t, e, "a", "kept-", 10)
	var archive bytes.Buffer
	if err := e.WriteBackup(context.Background(), &archive); err != nil {
		t.Fatal(err)
	}
	lost := appendN(t, e, "a", "lost-", 5) // after the backup: gone with the restore
	oldEpoch := e.Epoch()
	e.Close()

	unpacked := filepath.Join(tmp, "backup")
	if err := ReadBackup(&archive, unpacked); err != nil {
		t.Fatal(err)
	}
	r, err := Restore(unpacked, dir)
	if err != nil {
		t.Fatal(err)
	}
	if r.BackupEpoch != oldEpoch || r.Epoch == oldEpoch || r.Aside == "" {
		t.Fatalf("restore = %+v, want the backup's epoch %s, a new one and the old store moved aside", r, oldEpoch)
	}
	if _, err := os.Stat(filepath.Join(r.Aside, "LOCK")); err != nil {
		t.Fatalf("the replaced store is not kept: %v", err)
	}

	e = openT(t, dir, Options{})
	if e.Epoch() != r.Epoch {
		t.Fatalf("restored store has epoch %s, want %s", e.Epoch(), r.Epoch)
	}
	head, _ := e.Head(context.Background(), "a")
	if head != (engine.Position{Epoch: r.Epoch, Offset: 10}) {
		t.Fatalf("head after restore = %v", head)
	}
	next := appendN(t, e, "a", "new-", 3)
	if next[0].Offset != 11 {
		t.Fatalf("first event after restore at %v", next[0])
	}
	for _, cursor := range []engine.Position{lost[2], lost[4], {Epoch: oldEpoch, Offset: 5}} {
		_, err := e.Read(context.Background(), "a", cursor, 10)
		var gap *engine.GapError
		if !errors.As(err, &gap) || gap.Resume != (engine.Position{Epoch: r.Epoch, Offset: 0}) {
			t.Fatalf("read after %v from before the restore: %v, want a gap resuming at the start", cursor, err)
		}
	}
	evs, err := e.Read(context.Background(), "a", engine.Position{}, 100)
	if err != nil || len(evs) != 13 || string(evs[9].Data) != "kept-9" || string(evs[10].Data) != "new-0" {
		t.Fatalf("history after restore: %d events, %v", len(evs), err)
	}
}

func TestRestoreRefusesAStoreInUseAndWhatIsNotABackup(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "log")
	e := openT(t, dir, Options{})
	appendN(t, e, "a", "x", 1)
	backup := filepath.Join(tmp, "backup")
	if err := e.Backup(backup); err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(backup, dir); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("restore over a store in use: %v", err)
	}
	if _, err := Restore(t.TempDir(), filepath.Join(tmp, "other")); err == nil {
		t.Fatal("restore of an empty directory succeeded")
	}
}

// A backup archive cannot write outside its directory.
func TestReadBackupRefusesHostileArchives(t *testing.T) {
	for _, hdr := range []tar.Header{
		{Name: "../escape", Typeflag: tar.TypeReg, Size: 1},
		{Name: "/etc/escape", Typeflag: tar.TypeReg, Size: 1},
		{Name: "sub/file", Typeflag: tar.TypeReg, Size: 1},
		{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"},
		{Name: ".hidden", Typeflag: tar.TypeReg, Size: 1},
	} {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&hdr)
		if hdr.Size > 0 {
			tw.Write([]byte("x"))
		}
		tw.Close()
		parent := t.TempDir()
		if err := ReadBackup(&buf, filepath.Join(parent, "b")); err == nil {
			t.Errorf("archive with %q (%c) accepted", hdr.Name, hdr.Typeflag)
		}
		if _, err := os.Stat(filepath.Join(parent, "escape")); err == nil {
			t.Errorf("archive with %q wrote outside its directory", hdr.Name)
		}
	}
}
