package local

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// A full disk is survived with a reserve: a file of Options.Reserve bytes kept
// in the data dir. When the store first meets "no space left on device", the
// reserve is deleted from inside the failing write (vfs.OnDiskFull), the write
// is retried into the room it leaves and succeeds, and the engine refuses
// appends from then on. The store itself never sees the error, so nothing it
// acknowledged is lost and it needs no repair. A watcher goroutine checks the
// free space every SpaceCheckInterval; once there is room for the reserve and as
// much again, it writes the reserve back and appends resume.
//
// Should a write of the log fail anyway (the reserve was too small, or the
// disk failed otherwise), Pebble's write-ahead log stays broken until the store
// is closed: the engine refuses appends at once and the committer reopens the
// store once there is room. A store that cannot get its reserve at start (the
// disk is full) opens read-only: streams and history are served, appends are
// refused, and the same reopen makes it writable.

// reserveName is the reserve's file in the store's directory; Pebble ignores it.
const reserveName = "herald.reserve"

// reserve is the file of spare room. Its methods are safe for concurrent use:
// release runs on whatever Pebble goroutine met the full disk.
type reserve struct {
	path string
	size int64

	mu sync.Mutex
}

// ensure creates the reserve when it is missing or short. It fails with an
// error matching errNoSpace when the disk has no room for it.
func (r *reserve) ensure() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if fi, err := os.Stat(r.path); err == nil && fi.Size() >= r.size {
		return nil
	}
	tmp := r.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("local: create reserve: %w", err)
	}
	allocated, err := allocate(f, r.size)
	if err == nil && !allocated {
		// Random bytes, not zeros: a compressing or deduplicating file
		// system would store zeros in no room at all.
		chunk := make([]byte, min(r.size, 1<<20))
		rand.Read(chunk)
		for n := int64(0); n < r.size && err == nil; {
			w := min(int64(len(chunk)), r.size-n)
			_, err = f.Write(chunk[:w])
			n += w
		}
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, r.path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("local: write reserve of %d bytes: %w", r.size, err)
	}
	return nil
}

// release deletes the reserve and reports whether it was there.
func (r *reserve) release() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return os.Remove(r.path) == nil
}

// errNoSpace matches the errors of a full disk or quota.
var errNoSpace = errors.New("local: no space left on device")

func isNoSpace(err error) bool {
	return errors.Is(err, errNoSpace) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// diskFree is the space available to this process on dir's file system.
func diskFree(dir string) (uint64, error) {
	u, err := vfs.Default.GetDiskUsage(dir)
	if err != nil {
		return 0, err
	}
	return u.AvailBytes, nil
}

// logWatchFS guards Pebble's write-ahead log. After one failed write or sync,
// Pebble's log refuses every record (and Pebble panics on the next), so it must
// not see a full disk, and the engine must stop writing before it sees any
// other error:
//
//   - a write or sync of the log that meets a full disk (the reserve already
//     spent) waits for room and tries again, every interval, until it succeeds
//     or the engine closes. Appends are refused meanwhile (onFull); those
//     already written wait, and are acknowledged once the disk has room.
//   - any other error is reported (onError) before Pebble records it, so the
//     committer stops writing and reopens the store.
type logWatchFS struct {
	vfs.FS
	onFull   func()
	onError  func(error)
	stop     <-chan struct{} // closed when the engine closes: give up waiting
	interval time.Duration
	syncs    *atomic.Uint64 // fsyncs of the log that succeeded
}

func isLog(name string) bool { return strings.HasSuffix(name, ".log") }

func (w logWatchFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := w.FS.Create(name, c)
	return w.wrap(name, f, err)
}

func (w logWatchFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := w.FS.ReuseForWrite(oldname, newname, c)
	return w.wrap(newname, f, err)
}

func (w logWatchFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !isLog(filepath.Base(name)) {
		return f, err
	}
	return &logFile{File: f, fs: w}, nil
}

type logFile struct {
	vfs.File
	fs logWatchFS
}

// waitForRoom reports whether to try an operation that met a full disk again,
// after waiting; false once the engine closes.
func (f *logFile) waitForRoom(err error) bool {
	if !isNoSpace(err) {
		return false
	}
	f.fs.onFull()
	select {
	case <-f.fs.stop:
		return false
	case <-time.After(f.fs.interval):
		return true
	}
}

func (f *logFile) check(err error) error {
	if err != nil {
		f.fs.onError(err)
	}
	return err
}

func (f *logFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	for err != nil && f.waitForRoom(err) {
		var m int
		m, err = f.File.Write(p[n:])
		n += m
	}
	return n, f.check(err)
}

func (f *logFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := f.File.WriteAt(p, off)
	for err != nil && f.waitForRoom(err) {
		var m int
		m, err = f.File.WriteAt(p[n:], off+int64(n))
		n += m
	}
	return n, f.check(err)
}

func (f *logFile) retry(op func() error) error {
	err := op()
	for err != nil && f.waitForRoom(err) {
		err = op()
	}
	return f.check(err)
}

// sync runs one of the file's syncs and counts it when it succeeds, before
// Pebble tells anyone waiting for it.
func (f *logFile) sync(op func() error) error {
	err := f.retry(op)
	if err == nil {
		f.fs.syncs.Add(1)
	}
	return err
}

func (f *logFile) Sync() error     { return f.sync(f.File.Sync) }
func (f *logFile) SyncData() error { return f.sync(f.File.SyncData) }

func (f *logFile) SyncTo(length int64) (full bool, err error) {
	err = f.sync(func() (err error) {
		full, err = f.File.SyncTo(length)
		return err
	})
	return full, err
}

// lockError says why the data dir could not be locked: only a lock held by
// someone else means "in use"; a directory that cannot be written is named as such.
func lockError(dir string, err error) error {
	if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK) || strings.Contains(err.Error(), "lock held by current process") {
		return fmt.Errorf("local: data dir %s is in use by another engine (a running herald, or an Engine of this process not yet closed): %w", dir, err)
	}
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
		return fmt.Errorf("local: data dir %s is not writable (check its owner, permissions and mount): %w", dir, err)
	}
	return fmt.Errorf("local: lock data dir %s: %w", dir, err)
}
