//go:build !linux && !darwin

package bench

// raiseNoFile leaves the open-file limit alone where it is not an rlimit
// this code knows.
func raiseNoFile(want uint64) string { return "" }
