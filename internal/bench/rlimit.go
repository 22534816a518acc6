//go:build linux || darwin

package bench

import (
	"fmt"
	"syscall"
)

// raiseNoFile raises RLIMIT_NOFILE so that want descriptors fit: the soft
// limit to the hard one, and the hard one too where the process may (root
// with CAP_SYS_RESOURCE). It returns what it could not do, or "". A server the
// bench starts inherits the raised limit.
func raiseNoFile(want uint64) string {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Sprintf("cannot read RLIMIT_NOFILE: %v", err)
	}
	if lim.Max < want {
		raised := syscall.Rlimit{Cur: want, Max: want}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err == nil {
			return ""
		}
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Sprintf("cannot raise the RLIMIT_NOFILE soft limit to %d: %v", lim.Max, err)
	}
	if lim.Max < want {
		return fmt.Sprintf("RLIMIT_NOFILE hard limit is %d and could not be raised to %d: at most about %d streams fit; see docs/bench.md", lim.Max, want, lim.Max-100)
	}
	return ""
}
