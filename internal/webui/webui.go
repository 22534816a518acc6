// Package webui holds Herald's built browser pages, the demo and the admin
// page (their sources are in web/apps), embedded in the binary so that
// herald serve needs no Node.js. The files under dist are build output,
// committed: `npm run build:ui` in web/ writes them, and the web tests fail
// when they differ from what the sources build.
package webui

import (
	"embed"
	"io/fs"
)

//go:embed all:dist
var dist embed.FS

// Demo is the demo page: dist/demo, index.html at its root.
func Demo() fs.FS { return sub("dist/demo") }

// Admin is the admin page: dist/admin, index.html at its root.
func Admin() fs.FS { return sub("dist/admin") }

func sub(dir string) fs.FS {
	f, err := fs.Sub(dist, dir)
	if err != nil {
		panic(err) // dir is a constant inside the embedded tree
	}
	return f
}
