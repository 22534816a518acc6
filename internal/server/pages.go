package server

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/herald-hub/herald/internal/webui"
)

// The browser pages: the demo at / (with Demo) and the admin page at /admin,
// embedded in the binary (internal/webui). Each page is an index.html whose
// assets are referenced relatively (./demo/app.js, ./admin/app.js), so the
// index is served at / or /admin and the assets under /demo/ or /admin/.

// pageCSP is the Content-Security-Policy of every page and asset: no inline
// scripts or styles, no third-party origin.
const pageCSP = "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'"

// pageFile is one file of a page, read, hashed and compressed once at start.
type pageFile struct {
	body        []byte
	etag        string // a strong validator: a hash of body
	gz          []byte // body gzipped, when that saves a tenth or more
	gzEtag      string // the validator of gz, another representation
	contentType string
}

// page is one embedded page: its index.html and its assets by path.
type page struct {
	index  *pageFile // nil when the fs has no index.html
	assets map[string]*pageFile
}

// loadPage reads every file of fsys, once. An error stops the walk; what was
// read is kept, and a file left out answers 404.
func loadPage(fsys fs.FS) (*page, error) {
	p := &page{assets: map[string]*pageFile{}}
	err := fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return err
		}
		f := newPageFile(name, b)
		if name == "index.html" {
			p.index = f
			return nil
		}
		p.assets[name] = f
		return nil
	})
	return p, err
}

func newPageFile(name string, b []byte) *pageFile {
	sum := sha256.Sum256(b)
	f := &pageFile{body: b, etag: `"` + hex.EncodeToString(sum[:16]) + `"`, contentType: contentTypeOf(name)}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression) // a valid level: no error
	if _, err := zw.Write(b); err == nil && zw.Close() == nil && buf.Len() <= len(b)-len(b)/10 {
		f.gz = buf.Bytes()
		f.gzEtag = `"` + hex.EncodeToString(sum[:16]) + `-gz"`
	}
	return f
}

// acceptsGzip reports whether the request's Accept-Encoding takes gzip: a
// gzip (or x-gzip) coding whose q is not 0. "*" is not taken to mean gzip.
func acceptsGzip(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept-Encoding") {
		for c := range strings.SplitSeq(v, ",") {
			name, params, _ := strings.Cut(c, ";")
			if n := strings.ToLower(strings.TrimSpace(name)); n != "gzip" && n != "x-gzip" {
				continue
			}
			for p := range strings.SplitSeq(params, ";") {
				k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
				if strings.EqualFold(k, "q") {
					q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
					return err == nil && q > 0
				}
			}
			return true
		}
	}
	return false
}

// contentTypes are the types of the files a page is built of; set here rather
// than from the system's MIME tables, which vary between machines.
var contentTypes = map[string]string{
	".html":  "text/html; charset=utf-8",
	".js":    "text/javascript; charset=utf-8",
	".mjs":   "text/javascript; charset=utf-8",
	".css":   "text/css; charset=utf-8",
	".svg":   "image/svg+xml",
	".json":  "application/json",
	".map":   "application/json",
	".png":   "image/png",
	".ico":   "image/x-icon",
	".webp":  "image/webp",
	".woff2": "font/woff2",
	".txt":   "text/plain; charset=utf-8",
}

func contentTypeOf(name string) string {
	if t, ok := contentTypes[strings.ToLower(path.Ext(name))]; ok {
		return t
	}
	return "application/octet-stream"
}

// serve answers f with its validator: a request whose If-None-Match holds the
// ETag gets 304. no-cache makes the browser ask every time, so a new build is
// picked up at once, for the price of a 304.
func (f *pageFile) serve(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", f.contentType)
	h.Set("Cache-Control", "no-cache")
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	body, etag := f.body, f.etag
	if f.gz != nil {
		h.Add("Vary", "Accept-Encoding")
		if acceptsGzip(r) {
			body, etag = f.gz, f.gzEtag
			h.Set("Content-Encoding", "gzip")
		}
	}
	h.Set("ETag", etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

// serveAsset answers the asset named by the request's {file}, or the JSON 404.
func (s *Server) serveAsset(w http.ResponseWriter, r *http.Request, p *page) {
	if f, ok := p.assets[r.PathValue("file")]; ok {
		f.serve(w, r)
		return
	}
	s.notFound(w, r)
}

// notFound is the answer to every unknown path.
func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotFound, "not_found", "no such endpoint: "+r.Method+" "+r.URL.Path)
}

// missingPage stands for a page whose build is not embedded.
var missingPage = newPageFile("index.html", []byte("<!doctype html>\n<title>Herald</title>\n<p>This page is not built into this Herald binary.</p>\n"))

// handleRoot serves GET /: the demo with Demo, else the landing page.
func (s *Server) handleRoot(w http.ResponseWriter, r *http.Request) {
	if s.demo != nil {
		s.demo.page.indexOrMissing().serve(w, r)
		return
	}
	landingPage.serve(w, r)
}

func (s *Server) handleAdmin(w http.ResponseWriter, r *http.Request) {
	s.admin.indexOrMissing().serve(w, r)
}

// handleAdminAsset serves /admin/{file...}; /admin/ itself redirects to
// /admin, where the page's relative asset paths resolve.
func (s *Server) handleAdminAsset(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("file") == "" {
		target := "/admin"
		if r.URL.RawQuery != "" {
			target += "?" + r.URL.RawQuery
		}
		http.Redirect(w, r, target, http.StatusMovedPermanently)
		return
	}
	s.serveAsset(w, r, s.admin)
}

func (p *page) indexOrMissing() *pageFile {
	if p.index == nil {
		return missingPage
	}
	return p.index
}

// landingPage is / without the demo: what runs here and where to go next.
var landingPage = newPageFile("index.html", []byte(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Herald</title>
</head>
<body>
<main>
<h1>Herald is running</h1>
<p>Herald is a real-time notification hub: clients stream events over
Server-Sent Events from <code>/v1/events</code>, back ends publish with
<code>POST /v1/publish</code>.</p>
<ul>
<li><a href="/admin">Admin page</a>: live streams, topics and rates of every node
(needs a publish key, or a token granted <code>herald/stats</code>).</li>
<li><a href="/healthz">/healthz</a> and <a href="/metrics">/metrics</a>.</li>
<li>Documentation: in Herald's source, <code>docs/api.md</code> (the HTTP API)
and <code>docs/web.md</code> (the browser client and React bindings).</li>
</ul>
<p>To try Herald in a browser, start it with the demo:
<code>herald serve -demo</code> (or <code>HERALD_DEMO=true</code>), then open this
page again. The demo mints tokens for anyone: never run it in production.</p>
</main>
</body>
</html>
`))

// embeddedPages are the pages built into the binary, read, hashed and
// gzipped once per process however many servers it starts.
var embeddedPages = map[string]func() (*page, error){
	"admin": sync.OnceValues(func() (*page, error) { return loadPage(webui.Admin()) }),
	"demo":  sync.OnceValues(func() (*page, error) { return loadPage(webui.Demo()) }),
}

// loadPage reads a page (the embedded one when fsys is nil), logging what is
// wrong with it: a page without index.html still answers, saying it is not
// built in.
func (s *Server) loadPage(name string, fsys fs.FS) *page {
	var p *page
	var err error
	if fsys == nil {
		p, err = embeddedPages[name]()
	} else {
		p, err = loadPage(fsys)
	}
	if err != nil {
		s.log.Error("the "+name+" page could not be read", "err", err)
	}
	if p.index == nil {
		s.log.Warn("the " + name + " page has no index.html in this build")
	}
	return p
}
