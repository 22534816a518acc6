// Package testdisk gives tests a small disk they can fill for real: a tmpfs
// mounted for the test. Mounting needs root; without it the test is skipped
// and says why.
package testdisk

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"
)

// Mount mounts a tmpfs of size bytes on a new directory, unmounted when the
// test ends. Extra mount options (e.g. "mode=0700") may follow.
func Mount(t testing.TB, size int, opts ...string) string {
	t.Helper()
	dir := t.TempDir()
	data := fmt.Sprintf("size=%d", size)
	for _, o := range opts {
		data += "," + o
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, data); err != nil {
		t.Skipf("needs to mount a tmpfs to fill a disk (run as root): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// Fill writes path until the disk is full.
func Fill(t testing.TB, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := bytes.Repeat([]byte{'f'}, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return
		}
	}
}
