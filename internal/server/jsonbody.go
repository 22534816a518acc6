package server

import (
	"errors"
	"fmt"
	"net/http"
)

// decodeJSONBody reads r's body, at most limit bytes, as exactly one JSON
// value into v, refusing unknown fields. On a bad body it answers the request
// (415, 413 or 400) and returns false; shape is the body's form, for the 400's
// message.
func (s *Server) decodeJSONBody(w http.ResponseWriter, r *http.Request, limit int64, v any, shape string) bool {
	if ct := mediaType(r.Header.Get("Content-Type")); ct != "application/json" && ct != "" {
		s.refuse(w, &apiError{http.StatusUnsupportedMediaType, "unsupported_media_type", "send a JSON body (Content-Type: application/json): " + shape})
		return false
	}
	body, err := readBody(http.MaxBytesReader(w, r.Body, limit), r.ContentLength, limit)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.refuse(w, &apiError{http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("request body exceeds %d bytes", limit)})
			return false
		}
		s.refuse(w, badRequest("bad_body", "reading the request body: %v", err))
		return false
	}
	if err := strictUnmarshal(body, v); err != nil {
		s.refuse(w, badRequest("invalid_json", "the body must be %s: %v", shape, err))
		return false
	}
	return true
}
