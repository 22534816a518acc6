package server

import (
	"context"
	"net/http"
	"time"
)

// handleHealthz answers while the process serves HTTP at all.
func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// handleReadyz answers 200 when the engine answers, so a load balancer sends
// streams only to nodes that can serve them.
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if _, err := s.eng.Head(ctx, "herald/readyz"); err != nil {
		writeError(w, http.StatusServiceUnavailable, "engine_unavailable", "engine does not answer: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}
