package testenv

import (
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// NPMBuildFresh reports whether the npm package in dir has a build newer than
// its sources: each of dist/<built> exists and is newer than package.json and
// every file under src/. Tests that use a package's dist/ build it only when
// it is not fresh, so that two test packages running at once do not rewrite
// files the other is reading (.ci/run builds web/ before the tests).
func NPMBuildFresh(dir string, built ...string) bool {
	var oldest time.Time
	for _, f := range built {
		st, err := os.Stat(filepath.Join(dir, "dist", f))
		if err != nil {
			return false
		}
		if oldest.IsZero() || st.ModTime().Before(oldest) {
			oldest = st.ModTime()
		}
	}
	st, err := os.Stat(filepath.Join(dir, "package.json"))
	if err != nil || st.ModTime().After(oldest) {
		return false
	}
	stale := false
	err = filepath.WalkDir(filepath.Join(dir, "src"), func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if info, err := d.Info(); err == nil && !d.IsDir() && info.ModTime().After(oldest) {
			stale = true
		}
		return nil
	})
	return err == nil && !stale
}
