package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/herald-hub/herald/sse"
)

// On Linux the streams are read by GOMAXPROCS epoll loops. A goroutine per
// stream costs two read(2) per event (Go's poller must see EAGAIN before it
// parks the goroutine), a trip through the poller and a goroutine wake-up; a
// loop reads each ready stream once with its level-triggered epoll set and
// delivers the events on the spot, so an event costs about one read(2).
//
// A loop does not block in epoll_wait: a goroutine in a blocking system call
// makes the runtime hand its P to another thread and back, and keeps sysmon
// polling. Its epoll fd sits in Go's poller instead, like a socket: the loop
// takes what epoll_wait(0) has and parks in the poller when there is nothing.
func newReader() (reader, error) { return newEpollReader(runtime.GOMAXPROCS(0)) }

// loopBuffer is each loop's read buffer, shared by its streams: a stream
// keeps only a line cut off at the end of a read.
const loopBuffer = 64 << 10

// wakeToken marks the loop's eventfd in its epoll set; streams are marked by
// a slot in the loop's table and a generation, never by fd number.
const wakeToken = -1

var errReaderClosed = errors.New("stream reader closed")

type epollReader struct {
	loops []*loop
	next  atomic.Uint32
	wg    sync.WaitGroup
	once  sync.Once
}

func newEpollReader(n int) (*epollReader, error) {
	r := &epollReader{}
	for range max(n, 1) {
		l, err := newLoop()
		if err != nil {
			r.close()
			return nil, err
		}
		r.loops = append(r.loops, l)
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			l.run()
		}()
	}
	return r, nil
}

// close stops the loops and waits for them; each closes its fds on the way
// out.
func (r *epollReader) close() {
	r.once.Do(func() {
		for _, l := range r.loops {
			l.stop()
		}
		r.wg.Wait()
	})
}

func (r *epollReader) read(ctx context.Context, f *fleet, s *stream, c *conn) error {
	sc, ok := c.nc.(syscall.Conn)
	if !ok {
		return goroutineReader{}.read(ctx, f, s, c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	sb := &sub{push: newPush(f, s, c.resp), fd: -1, done: make(chan struct{})}
	// The bytes that came with the headers go first, from this goroutine:
	// the stream is not the loop's yet.
	pre, _ := c.br.Peek(c.br.Buffered())
	if _, err := sb.feed(pre, nil); err != nil {
		return sb.ended(ctx, c, err)
	}
	l := r.loops[int(r.next.Add(1)-1)%len(r.loops)]
	// The loop reads a duplicate of the socket, and the connection is closed,
	// which takes the socket out of Go's poller: otherwise every event would
	// also wake the runtime's poller (at 10,000 streams, an epoll_pwait per
	// few events and a context switch for nothing). Only the loop reads and
	// closes the duplicate, so its number cannot be reused under it.
	//
	// Under s.mu, with the hangup: dropAll either closed the connection
	// before, which makes the duplication fail, or asks the loop to remove it.
	s.mu.Lock()
	if err := sb.dup(rc); err != nil {
		s.mu.Unlock()
		return sb.ended(ctx, c, err)
	}
	c.nc.Close()
	l.request(sb, true)
	s.hangup = func() { l.request(sb, false) }
	s.mu.Unlock()
	select {
	case <-sb.done:
	case <-ctx.Done():
		l.request(sb, false)
		<-sb.done
	}
	// The loop has let go of the stream: s and sb are this goroutine's again.
	return sb.ended(ctx, c, sb.err)
}

// A sub is a stream handed to a loop. While it is registered the loop owns
// its push (the framing and decoder state) and the stream fields deliver
// touches.
type sub struct {
	*push
	fd   int           // the loop's duplicate of the socket, closed by the loop
	done chan struct{} // closed by the loop once it has let go of the stream
	err  error         // why the stream ended, set before done is closed

	// The loop's.
	slot, gen int32
	live      bool
}

type request struct {
	sub *sub
	add bool // else remove
}

// A loop reads its streams with one epoll set and one buffer. Streams join
// and leave through requests, which only the loop acts on, so a stream's
// state has one owner and a stream leaves the epoll set before its
// connection is closed.
type loop struct {
	ep     *os.File // the epoll fd, in Go's poller
	epfd   int
	wakefd int
	epRC   syscall.RawConn
	waitFn func(fd uintptr) bool // epoll_wait(0) into events, to nev and werr
	nev    int
	werr   error

	buf    []byte
	events []syscall.EpollEvent
	evs    []sse.Event
	subs   []*sub // by slot
	free   []int32
	gen    int32

	mu      sync.Mutex
	reqs    []request
	spare   []request
	stopped bool // stop was called
	closed  bool // the loop has ended and closed its fds
}

var wakeValue = binary.NativeEndian.AppendUint64(nil, 1)

func newLoop() (*loop, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	// Non-blocking, so that os.NewFile puts it in Go's poller.
	if err := syscall.SetNonblock(epfd, true); err != nil {
		syscall.Close(epfd)
		return nil, err
	}
	l := &loop{ep: os.NewFile(uintptr(epfd), "epoll"), epfd: epfd, buf: make([]byte, loopBuffer), events: make([]syscall.EpollEvent, 256)}
	if l.epRC, err = l.ep.SyscallConn(); err != nil {
		l.ep.Close()
		return nil, err
	}
	wfd, _, errno := syscall.RawSyscall(syscall.SYS_EVENTFD2, 0, syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
	if errno != 0 {
		l.ep.Close()
		return nil, errno
	}
	l.wakefd = int(wfd)
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: wakeToken}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, l.wakefd, &ev); err != nil {
		syscall.Close(l.wakefd)
		l.ep.Close()
		return nil, err
	}
	l.waitFn = func(fd uintptr) bool {
		l.nev, l.werr = syscall.EpollWait(int(fd), l.events, 0)
		return l.nev > 0 || l.werr != nil // else park until the epoll fd is readable
	}
	return l, nil
}

// request asks the loop to add or remove sb.
func (l *loop) request(sb *sub, add bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		if add {
			sb.close()
			sb.finish(errReaderClosed)
		}
		return
	}
	l.reqs = append(l.reqs, request{sb, add})
	if len(l.reqs) == 1 {
		l.wake()
	}
}

// stop makes the loop end.
func (l *loop) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed && !l.stopped {
		l.stopped = true
		l.wake()
	}
}

// wake makes the loop's epoll fd readable; l.mu is held, so the eventfd is
// open.
func (l *loop) wake() {
	syscall.Write(l.wakefd, wakeValue)
}

func (l *loop) run() {
	defer l.shut()
	for {
		l.nev, l.werr = 0, nil
		err := l.epRC.Read(l.waitFn)
		if err == nil {
			err = l.werr
		}
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			l.endAll(err)
			return
		}
		woken := false
		for _, ev := range l.events[:l.nev] {
			if ev.Fd == wakeToken {
				woken = true
			} else if sb := l.subs[ev.Fd]; sb != nil && sb.gen == ev.Pad {
				l.read(sb)
			}
		}
		if woken && !l.serve() {
			return
		}
	}
}

// read reads sb once and delivers what came. Level-triggered epoll reports
// the stream again if more is waiting.
func (l *loop) read(sb *sub) {
	n, err := syscall.Read(sb.fd, l.buf)
	switch {
	case err == syscall.EAGAIN || err == syscall.EINTR:
	case err != nil:
		l.end(sb, err)
	case n == 0:
		l.end(sb, sb.body.atEOF())
	default:
		sb.s.bytes.Add(int64(n))
		l.evs, err = sb.feed(l.buf[:n], l.evs)
		if err != nil {
			l.end(sb, err)
		}
	}
}

// serve acts on the requests, and reports whether the loop goes on.
func (l *loop) serve() bool {
	var b [8]byte
	syscall.Read(l.wakefd, b[:])
	l.mu.Lock()
	reqs := l.reqs
	l.reqs, l.spare = l.spare[:0], nil
	stopped := l.stopped
	l.mu.Unlock()
	for _, r := range reqs {
		switch {
		case r.add:
			l.register(r.sub)
		case r.sub.live:
			l.end(r.sub, nil)
		}
	}
	clear(reqs)
	l.spare = reqs[:0]
	if stopped {
		l.endAll(errReaderClosed)
	}
	return !stopped
}

func (l *loop) register(sb *sub) {
	if len(l.free) > 0 {
		sb.slot = l.free[len(l.free)-1]
		l.free = l.free[:len(l.free)-1]
	} else {
		sb.slot = int32(len(l.subs))
		l.subs = append(l.subs, nil)
	}
	l.gen++
	sb.gen = l.gen
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: sb.slot, Pad: sb.gen}
	if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, sb.fd, &ev); err != nil {
		l.free = append(l.free, sb.slot)
		sb.close()
		sb.finish(err)
		return
	}
	l.subs[sb.slot] = sb
	sb.live = true
}

// end takes sb out of the epoll set and hands the stream back.
func (l *loop) end(sb *sub, err error) {
	syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, sb.fd, nil)
	sb.close()
	l.subs[sb.slot] = nil
	l.free = append(l.free, sb.slot)
	sb.live = false
	sb.finish(err)
}

// endAll ends every stream the loop has.
func (l *loop) endAll(err error) {
	for _, sb := range l.subs {
		if sb != nil {
			l.end(sb, err)
		}
	}
}

// shut closes the loop's fds and fails the adds that came too late.
func (l *loop) shut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	for _, r := range l.reqs {
		if r.add {
			r.sub.close()
			r.sub.finish(errReaderClosed)
		}
	}
	l.reqs = nil
	syscall.Close(l.wakefd)
	l.ep.Close()
}

// dup takes a duplicate of the connection's socket; it fails once the
// connection is closed.
func (sb *sub) dup(rc syscall.RawConn) error {
	var errno syscall.Errno
	err := rc.Control(func(fd uintptr) {
		var r uintptr
		r, _, errno = syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_DUPFD_CLOEXEC, 0)
		sb.fd = int(r)
	})
	if err == nil && errno != 0 {
		err = errno
	}
	if err != nil {
		sb.fd = -1
	}
	return err
}

// close closes the stream's socket.
func (sb *sub) close() {
	if sb.fd >= 0 {
		syscall.Close(sb.fd)
		sb.fd = -1
	}
}

func (sb *sub) finish(err error) {
	sb.err = err
	close(sb.done)
}
