package local

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"

	"github.com/herald-hub/herald/engine"
)

// When appends are refused and how they resume: see space.go for the reserve.

// CanWrite reports whether an Append would be accepted now: nil, or an error
// matching engine.ErrUnavailable that says why not (the disk is full, or the
// store waits to be reopened), or engine.ErrClosed.
func (e *Engine) CanWrite() error {
	if err := e.refusing(); err != nil {
		return err
	}
	e.mu.RLock()
	closed := e.closed
	e.mu.RUnlock()
	if closed {
		return engine.ErrClosed
	}
	return nil
}

// refusing is CanWrite without the closed check, and so without a lock: the
// committer calls it, and must never wait for e.mu (Close holds it while
// senders wait for the committer).
func (e *Engine) refusing() error {
	if e.full.Load() || e.broken.Load() {
		return fmt.Errorf("%w: local: %s refuses writes (%s); they resume by themselves once the disk has room", engine.ErrReadOnly, e.dir, e.why())
	}
	return nil
}

func (e *Engine) why() string {
	if p := e.cause.Load(); p != nil {
		return *p
	}
	return "unknown cause"
}

// refuse sets flag with its cause. The watcher notices at its next check:
// right after a refusal there is no room to resume into anyway.
func (e *Engine) refuse(flag *atomic.Bool, cause string) {
	e.cause.Store(&cause)
	flag.Store(true)
}

// onDiskFull runs inside the Pebble write that met a full disk, with every
// other write of the store paused: it gives the reserve back so that write can
// be retried, and refuses appends from now on.
func (e *Engine) onDiskFull() {
	e.fullMu.Lock()
	defer e.fullMu.Unlock()
	e.fullGen++
	released := e.rsv.release()
	if e.full.Load() {
		return
	}
	e.refuse(&e.full, "out of disk space")
	e.log.Error("the disk is full: refusing appends until there is room; streams and history are still served",
		"reserve_released", released, "reserve_bytes", e.opt.Reserve)
}

// onLogFull runs in Pebble's log writer while a write of the log waits for
// disk space: the reserve did not suffice.
func (e *Engine) onLogFull() {
	if !e.full.Load() {
		e.onDiskFull()
	}
}

// onLogError runs in Pebble's log writer when a write or sync of the log
// failed for another reason than a full disk (see logFile): the log is broken
// until the store is reopened.
func (e *Engine) onLogError(err error) {
	e.refuse(&e.broken, "the write-ahead log failed: "+err.Error())
}

// openDB opens the store, read-only when it may not write.
func (e *Engine) openDB(writable bool) (*pebble.DB, error) {
	o := &pebble.Options{
		FS:        e.fs,
		Lock:      e.lock,
		ReadOnly:  !writable,
		Logger:    &pebbleLogger{log: e.log},
		CacheSize: e.opt.CacheSize,
	}
	// Most reads of the append path look for keys that are not there (a new
	// topic's metadata, a new idempotency key): a table's filter answers
	// those without reading its blocks.
	for i := range o.Levels {
		o.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	db, err := pebble.Open(e.dir, o)
	if err != nil {
		return nil, fmt.Errorf("local: open store in %s: %w", e.dir, err)
	}
	return db, nil
}

// roomToResume is the free space after which writes resume: the reserve, and
// as much again for the store to grow into. Less would risk reopening a store
// with no room to write out what its log holds, which Pebble waits for forever.
func (e *Engine) roomToResume() uint64 { return 2 * uint64(e.rsv.size) }

// watcher is the Engine's goroutine (stopped by Close) that resumes writes:
// every SpaceCheckInterval while appends are refused, it checks for room,
// writes the reserve back and has the committer reopen the store if needed.
func (e *Engine) watcher() {
	defer close(e.watchDone)
	t := time.NewTicker(e.opt.SpaceCheckInterval)
	defer t.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-e.watchStop
		cancel()
	}()
	for {
		select {
		case <-e.watchStop:
			return
		case <-t.C:
		}
		if !e.full.Load() && !e.broken.Load() {
			continue
		}
		if err := e.resume(ctx); err != nil && ctx.Err() == nil {
			e.log.Debug("writes not resumed yet", "err", err)
		}
	}
}

// resume makes the store writable again once the disk has room.
func (e *Engine) resume(ctx context.Context) error {
	free, err := diskFree(e.dir)
	if err != nil {
		return err
	}
	if need := e.roomToResume(); free < need {
		return fmt.Errorf("%d bytes free, waiting for %d", free, need)
	}
	e.fullMu.Lock()
	gen := e.fullGen
	e.fullMu.Unlock()
	if err := e.rsv.ensure(); err != nil {
		return err
	}
	if e.broken.Load() {
		r := &request{ctx: ctx, reopen: true, done: make(chan struct{})}
		if err := e.send(ctx, r); err != nil {
			return err
		}
		<-r.done
		if r.err != nil {
			return r.err
		}
	}
	e.fullMu.Lock()
	defer e.fullMu.Unlock()
	if e.fullGen != gen {
		// The disk filled again meanwhile and took the new reserve.
		return errors.New("the disk filled up again")
	}
	e.full.Store(false)
	e.log.Info("the disk has room again: appends resume", "free_bytes", free)
	return nil
}

// reopenDB runs on the committer: once every group in flight is finished, it
// closes the store and opens it again for writing. The topic state is read
// back from the store, the truth after a failed write. On failure the store
// stays (or is opened) read-only, so streams and history are still served.
func (e *Engine) reopenDB() error {
	barrier := make(chan struct{})
	e.syncs <- &commitJob{barrier: barrier}
	<-barrier

	// The store is closed under dbMu, then opened without it: reads answer
	// ErrUnavailable meanwhile rather than wait for an open that may take long.
	e.dbMu.Lock()
	old := e.db
	e.db = nil
	e.dbMu.Unlock()
	if old != nil {
		if err := old.Close(); err != nil {
			e.log.Debug("closing the broken store", "err", err)
		}
	}
	db, err := e.openDB(true)
	if err == nil {
		var epoch string
		if epoch, err = e.epochOf(db); err == nil && epoch != e.epoch {
			err = fmt.Errorf("local: the store in %s changed its epoch from %s to %s while open", e.dir, e.epoch, epoch)
		}
		if err != nil {
			db.Close()
			db = nil
		}
	}
	if err != nil {
		db, _ = e.openDB(false) // keep serving reads if it can
	}
	e.dbMu.Lock()
	e.db = db
	if err == nil {
		for i := range e.states {
			sh := &e.states[i]
			sh.mu.Lock()
			clear(sh.topics)
			sh.mu.Unlock()
			clear(sh.assigned)
		}
		e.nAssigned = 0
		e.broken.Store(false)
	}
	e.dbMu.Unlock()
	if err != nil {
		return err
	}
	e.log.Info("reopened the store for writing")
	return nil
}

// epochOf reads the epoch of a store that has one.
func (e *Engine) epochOf(db *pebble.DB) (string, error) {
	v, err := dbGet(db, epochKey)
	if err != nil {
		return "", err
	}
	if len(v) == 0 {
		return "", fmt.Errorf("local: the store in %s has no epoch", e.dir)
	}
	return string(v), nil
}
