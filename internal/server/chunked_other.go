//go:build !unix

package server

import (
	"net"

	"github.com/herald-hub/herald/internal/hub"
)

func newChunkedWriter(conn net.Conn) hub.Writer { return &chunkedWriter{conn: conn} }
