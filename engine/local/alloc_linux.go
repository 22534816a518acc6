package local

import (
	"os"

	"golang.org/x/sys/unix"
)

// allocate gives f size bytes of real blocks without writing them, when the
// file system can (fallocate); ok false means write them instead.
func allocate(f *os.File, size int64) (ok bool, err error) {
	err = unix.Fallocate(int(f.Fd()), 0, 0, size)
	if err == unix.EOPNOTSUPP || err == unix.ENOSYS {
		return false, nil
	}
	return err == nil, err
}
