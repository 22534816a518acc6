//go:build !linux

package bench

// newReader returns the portable reader: a goroutine per stream.
func newReader() (reader, error) { return goroutineReader{}, nil }
