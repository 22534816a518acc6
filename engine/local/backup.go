package local

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/herald-hub/herald/engine"
)

// Backup and restore.
//
// A backup is a Pebble checkpoint: a consistent copy of the store at one
// instant, taken while it serves (tables are hard-linked, the log is copied).
// It holds every event acknowledged before it began: an append is
// acknowledged once its log record is synced.
//
// A restored store is given a new epoch. Its offsets go on from where the
// backup stopped, so without one the next event would reuse an offset that a
// different event had before the restore, and a client whose cursor lies past
// the backup would silently skip events. With a new epoch, every cursor from
// before the restore reads as a gap (herald.gap) followed by the history the
// backup retains.

// Backup writes a consistent copy of the store into dir, which must not exist.
// It is refused while the store refuses writes, and when the disk lacks the
// room writes need to resume: the copy of the log takes room, and a backup must
// not be what fills the disk.
func (e *Engine) Backup(dir string) error {
	if err := e.refusing(); err != nil {
		return err
	}
	if free, err := diskFree(e.dir); err == nil && free < e.roomToResume() {
		return fmt.Errorf("%w: local: %d bytes free on the disk of %s, a backup needs %d", engine.ErrUnavailable, free, e.dir, e.roomToResume())
	}
	return e.readLocked(func() error {
		// No WithFlushedWAL: it writes a record to the log, and every
		// acknowledged append is already synced.
		if err := e.db.Checkpoint(dir); err != nil {
			return fmt.Errorf("local: backup into %s: %w", dir, err)
		}
		return nil
	})
}

// backupPrefix names the copies WriteBackup takes next to the store; one left
// by a crash is removed when the store opens.
func backupPrefix(dir string) string { return dir + ".backup-" }

// removeStaleBackups removes copies a WriteBackup left when the process died.
func removeStaleBackups(dir string) {
	stale, _ := filepath.Glob(backupPrefix(dir) + "*")
	for _, s := range stale {
		os.RemoveAll(s)
	}
}

// WriteBackup writes a consistent copy of the store to w as a tar archive of
// the store's files. The copy is taken next to the store (hard links, so it
// costs little room) and removed once written.
func (e *Engine) WriteBackup(ctx context.Context, w io.Writer) error {
	var raw [8]byte
	rand.Read(raw[:])
	tmp := backupPrefix(e.dir) + hex.EncodeToString(raw[:])
	defer os.RemoveAll(tmp)
	if err := e.Backup(tmp); err != nil {
		return err
	}
	return writeTar(ctx, w, tmp)
}

func writeTar(ctx context.Context, w io.Writer, dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	for _, de := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !de.Type().IsRegular() {
			return fmt.Errorf("local: backup holds %s, not a regular file", de.Name())
		}
		if err := addFile(tw, dir, de.Name()); err != nil {
			return err
		}
	}
	return tw.Close()
}

func addFile(tw *tar.Writer, dir, name string) error {
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	hdr := &tar.Header{Name: name, Mode: 0o600, Size: fi.Size(), ModTime: fi.ModTime(), Typeflag: tar.TypeReg}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err = io.CopyN(tw, f, fi.Size())
	return err
}

// ReadBackup unpacks a backup written by WriteBackup into dir, which must not
// exist. Only plain files with plain names are accepted: an archive cannot
// write outside dir.
func ReadBackup(r io.Reader, dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	tr := tar.NewReader(r)
	files := 0
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("local: read backup: %w", err)
		}
		name := hdr.Name
		if hdr.Typeflag != tar.TypeReg || name == "" || name != filepath.Base(name) || strings.HasPrefix(name, ".") {
			return fmt.Errorf("local: backup holds %q, not a store file", name)
		}
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, tr)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("local: write %s: %w", name, err)
		}
		files++
	}
	if files == 0 {
		return errors.New("local: the backup is empty")
	}
	return nil
}

// Restored is what Restore did.
type Restored struct {
	BackupEpoch, Epoch string // the backup's epoch, and the new one
	Aside              string // where the store it replaced was moved, if any
}

// Restore puts a copy of the backup in src (made by Backup, or unpacked by
// ReadBackup) in dir with a new epoch. A store already in dir is moved aside
// (renamed dir.before-restore-TIME), unless it is in use. src is left as it is.
func Restore(src, dir string) (r Restored, err error) {
	if err := checkBackup(src); err != nil {
		return r, err
	}
	if _, err := os.Stat(dir); err == nil {
		if r.Aside, err = moveAside(dir); err != nil {
			return r, err
		}
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
			if r.Aside != "" {
				os.Rename(r.Aside, dir)
			}
		}
	}()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return r, err
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return r, err
	}
	for _, de := range entries {
		if !de.Type().IsRegular() || strings.HasPrefix(de.Name(), reserveName) {
			continue
		}
		if err := vfs.CopyAcrossFS(vfs.Default, filepath.Join(src, de.Name()), vfs.Default, filepath.Join(dir, de.Name())); err != nil {
			return r, fmt.Errorf("local: copy %s: %w", de.Name(), err)
		}
	}
	db, err := pebble.Open(dir, &pebble.Options{Logger: &pebbleLogger{log: discard}})
	if err != nil {
		return r, fmt.Errorf("local: open the restored store: %w", err)
	}
	defer func() {
		if cerr := db.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("local: close the restored store: %w", cerr)
		}
	}()
	format, ferr := dbGet(db, formatKey)
	old, eerr := dbGet(db, epochKey)
	if ferr != nil || eerr != nil || string(format) != formatVersion || len(old) == 0 {
		return r, fmt.Errorf("local: %s is not a backup of a herald store (format %q, epoch %q)", src, format, old)
	}
	r.BackupEpoch, r.Epoch = string(old), randomEpoch()
	if err := db.Set(epochKey, []byte(r.Epoch), pebble.Sync); err != nil {
		return r, fmt.Errorf("local: write the new epoch: %w", err)
	}
	return r, nil
}

// checkBackup refuses a src that is not a directory of store files.
func checkBackup(src string) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return fmt.Errorf("local: read backup: %w", err)
	}
	for _, de := range entries {
		if strings.HasPrefix(de.Name(), "MANIFEST-") {
			return nil
		}
	}
	return fmt.Errorf("local: %s holds no store (no MANIFEST file): give the directory herald backup wrote", src)
}

// moveAside renames the store in dir out of the way, failing while it is in use.
func moveAside(dir string) (string, error) {
	lock, err := pebble.LockDirectory(dir, vfs.Default)
	if err != nil {
		return "", lockError(dir, err)
	}
	defer lock.Close()
	aside := dir + ".before-restore-" + time.Now().UTC().Format("20060102T150405.000Z")
	if err := os.Rename(dir, aside); err != nil {
		return "", fmt.Errorf("local: move the store aside: %w", err)
	}
	return aside, nil
}
