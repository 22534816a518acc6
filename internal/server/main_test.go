package server

import (
	"net/http"
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no goroutine outlives the tests: streams, taken-over
// connections and JWKS refreshers all have owners that stop them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(closingIdle{m})
}

// closingIdle closes the test client's idle keep-alive connections after the
// tests, so their reader goroutines are not counted as leaks.
type closingIdle struct{ m *testing.M }

func (c closingIdle) Run() int {
	code := c.m.Run()
	http.DefaultClient.CloseIdleConnections()
	return code
}
