package server

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/herald-hub/herald/engine"
)

// handleHealthz answers while the process serves HTTP at all.
func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.status("ok"))
}

// handleReadyz answers 200 when the engine answers and accepts appends, so a
// load balancer sends streams and publishes only to nodes that can serve them.
// A node whose store refuses writes (a full disk) is not ready: its streams
// stay open, but new work goes elsewhere until it recovers by itself.
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if _, err := s.eng.Head(ctx, "herald/readyz"); err != nil {
		writeError(w, http.StatusServiceUnavailable, "engine_unavailable", "engine does not answer: "+err.Error())
		return
	}
	if wc, ok := s.eng.(engine.WriteChecker); ok {
		if err := wc.CanWrite(); errors.Is(err, engine.ErrReadOnly) {
			writeError(w, http.StatusServiceUnavailable, "engine_read_only", "engine refuses appends: "+err.Error())
			return
		} else if err != nil {
			writeError(w, http.StatusServiceUnavailable, "engine_unavailable", "engine cannot serve: "+err.Error())
			return
		}
	}
	writeJSON(w, http.StatusOK, s.status("ready"))
}

// status is a health answer's body: {"status": ..., "node": <id>}, without
// node when no id is configured.
func (s *Server) status(st string) map[string]string {
	b := map[string]string{"status": st}
	if s.cfg.NodeID != "" {
		b["node"] = s.cfg.NodeID
	}
	return b
}
