package server

import (
	"context"
	"io"
	"net/http"
)

// backupWriter is implemented by engines that can stream a consistent copy of
// their store (the local engine); a networked engine's back end has its own.
type backupWriter interface {
	WriteBackup(ctx context.Context, w io.Writer) error
}

// handleBackup streams a consistent copy of the store as a tar archive, for
// `herald backup`. It holds every topic, private ones too, so only a publish
// key may ask for it, never a token.
func (s *Server) handleBackup(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet { // HEAD: not a whole checkpoint for nothing
		w.Header().Set("Allow", "GET")
		s.refuse(w, &apiError{http.StatusMethodNotAllowed, "method_not_allowed", r.Method + " is not allowed on /v1/backup; use GET"})
		return
	}
	cred, e := publishCredential(r)
	if e != nil {
		s.refuse(w, e)
		return
	}
	p, ok := s.guard.Key(cred)
	if !ok {
		s.refuse(w, unauthorized("invalid_credentials", "a backup needs a publish key"))
		return
	}
	b, ok := s.eng.(backupWriter)
	if !ok {
		s.refuse(w, &apiError{http.StatusNotImplemented, "not_supported", "this engine's store is backed up with its own tools"})
		return
	}
	w.Header().Set("Content-Type", "application/x-tar")
	w.Header().Set("Content-Disposition", `attachment; filename="herald-backup.tar"`)
	cw := &countingWriter{w: w}
	if err := b.WriteBackup(r.Context(), cw); err != nil {
		s.log.Error("backup failed", "err", err)
		if cw.n == 0 {
			w.Header().Del("Content-Disposition")
			s.refuse(w, &apiError{http.StatusServiceUnavailable, "engine_unavailable", "the backup failed: " + err.Error()})
			return
		}
		// The archive is cut: abort so the client sees a broken transfer,
		// never a short archive that looks whole.
		panic(http.ErrAbortHandler)
	}
	s.log.Info("backup written", "by", p.ID())
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
