package server

import (
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/herald-hub/herald/internal/webui"
)

// wantPage checks the headers every page and asset is served with, and
// returns the body.
func wantPage(t *testing.T, resp *http.Response, contentType string) string {
	t.Helper()
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	h := resp.Header
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %d %s", resp.Request.URL.Path, resp.StatusCode, body)
	}
	for k, v := range map[string]string{
		"Content-Type":            contentType,
		"Cache-Control":           "no-cache",
		"X-Content-Type-Options":  "nosniff",
		"Content-Security-Policy": "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'",
	} {
		if got := h.Get(k); got != v {
			t.Errorf("%s: %s %q, want %q", resp.Request.URL.Path, k, got, v)
		}
	}
	// Go's client asks for gzip and unpacks it: the validator is then the
	// compressed representation's.
	etag := `^"[0-9a-f]{32}"$`
	if resp.Uncompressed {
		etag = `^"[0-9a-f]{32}-gz"$`
	}
	if !regexp.MustCompile(etag).MatchString(h.Get("ETag")) {
		t.Errorf("%s: ETag %q (uncompressed by the client: %v)", resp.Request.URL.Path, h.Get("ETag"), resp.Uncompressed)
	}
	return string(body)
}

// wantNotModified checks that path answers 304 to its own ETag.
func wantNotModified(t *testing.T, n *testNode, path string) {
	t.Helper()
	first := n.get(path)
	first.Body.Close()
	again := n.get(path, "If-None-Match", first.Header.Get("ETag"))
	again.Body.Close()
	if first.Header.Get("ETag") == "" || again.StatusCode != http.StatusNotModified {
		t.Fatalf("%s with If-None-Match %q: %d, want 304", path, first.Header.Get("ETag"), again.StatusCode)
	}
}

// relativeRefs are the src= and href= of a page that are not links to other
// pages or origins.
func relativeRefs(html string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`(?:src|href)="([^"]*)"`).FindAllStringSubmatch(html, -1) {
		out = append(out, m[1])
	}
	return out
}

// The embedded admin page, as built: its index at /admin, its assets under
// /admin/ referenced relatively, each with its type, validator and policy.
func TestAdminPageIsServedFromTheBuild(t *testing.T) {
	n := newTestNode(t, nodeOptions{})
	wantBuiltPage(t, n, "/admin", "/admin/", webui.Admin())
	wantError(t, n.get("/admin/no-such-asset.js"), http.StatusNotFound, "not_found")
	// The index is the page at /admin, not an asset: its relative paths would
	// not resolve from /admin/index.html.
	wantError(t, n.get("/admin/index.html"), http.StatusNotFound, "not_found")
}

// Assets get the type of their extension, whatever the system's MIME tables
// say, and a validator of their own.
func TestPageAssets(t *testing.T) {
	admin := fstest.MapFS{
		"index.html":      {Data: []byte(`<!doctype html><script type="module" src="./admin/app.js"></script>`)},
		"app.js":          {Data: []byte("console.log(1)")},
		"app.css":         {Data: []byte("body{}")},
		"icons/logo.svg":  {Data: []byte("<svg/>")},
		"fonts/font.blob": {Data: []byte{0, 1}},
	}
	n := newTestNode(t, nodeOptions{server: Config{adminFS: admin}})
	for path, ct := range map[string]string{
		"/admin":                 "text/html; charset=utf-8",
		"/admin/app.js":          "text/javascript; charset=utf-8",
		"/admin/app.css":         "text/css; charset=utf-8",
		"/admin/icons/logo.svg":  "image/svg+xml",
		"/admin/fonts/font.blob": "application/octet-stream",
	} {
		wantPage(t, n.get(path), ct)
		wantNotModified(t, n, path)
	}
	js, css := n.get("/admin/app.js"), n.get("/admin/app.css")
	js.Body.Close()
	css.Body.Close()
	if js.Header.Get("ETag") == css.Header.Get("ETag") {
		t.Fatal("two files share an ETag")
	}
	// HEAD answers the headers alone.
	req, _ := http.NewRequest("HEAD", n.srv.URL+"/admin/app.js", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ContentLength != int64(len("console.log(1)")) {
		t.Fatalf("HEAD: %d, length %d", resp.StatusCode, resp.ContentLength)
	}
}

// / is a landing page without the demo; /admin/ sends to /admin; other paths
// and methods keep the JSON 404 and 405; the demo's paths do not exist.
func TestLandingPageRedirectAndUnknownPaths(t *testing.T) {
	n := newTestNode(t, nodeOptions{})
	landing := wantPage(t, n.get("/"), "text/html; charset=utf-8")
	for _, want := range []string{"Herald is running", `href="/admin"`, "herald serve -demo"} {
		if !strings.Contains(landing, want) {
			t.Errorf("the landing page lacks %q", want)
		}
	}
	if strings.Contains(landing, "style=") || strings.Contains(landing, "<script") || strings.Contains(landing, "<style") {
		t.Error("the landing page has inline script or style, which its policy forbids")
	}
	wantNotModified(t, n, "/")

	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(n.srv.URL + "/admin/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/admin" {
		t.Fatalf("/admin/: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}

	for _, path := range []string{"/nope", "/index.html", "/demo/app.js", "/demo/", "/admins", "/v1/demo/token", "/admin/../v1/events"} {
		wantError(t, n.get(path), http.StatusNotFound, "not_found")
	}
	if code, _ := n.call("POST", "/v1/demo/token", "", `{"user":"alice"}`); code != http.StatusNotFound {
		t.Fatalf("POST /v1/demo/token without the demo: %d, want 404", code)
	}
	for path, allow := range map[string]string{"/": "GET, HEAD", "/admin": "GET, HEAD", "/admin/app.js": "GET, HEAD"} {
		req, _ := http.NewRequest("POST", n.srv.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Header.Get("Allow") != allow {
			t.Errorf("POST %s: Allow %q", path, resp.Header.Get("Allow"))
		}
		wantError(t, resp, http.StatusMethodNotAllowed, "method_not_allowed")
	}
}

// wantBuiltPage checks that path serves the index.html of the embedded page
// built, with its validator, and that every asset the index references is
// relative, under ./ + the last element of assets, and served from assets.
func wantBuiltPage(t *testing.T, n *testNode, path, assets string, built fs.FS) {
	t.Helper()
	index := wantPage(t, n.get(path), "text/html; charset=utf-8")
	want, err := fs.ReadFile(built, "index.html")
	if err != nil || index != string(want) {
		t.Fatalf("%s is not the embedded index.html (%v)", path, err)
	}
	wantNotModified(t, n, path)
	prefix := "./" + strings.Trim(assets, "/") + "/"
	for _, ref := range relativeRefs(index) {
		if strings.HasPrefix(ref, "#") || strings.HasPrefix(ref, "data:") {
			continue
		}
		if !strings.HasPrefix(ref, prefix) {
			t.Errorf("%s references %q: assets must be relative, %s...", path, ref, prefix)
			continue
		}
		resp := n.get(assets + strings.TrimPrefix(ref, prefix))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d", ref, resp.StatusCode)
		}
	}
}

// A page's files are sent gzipped to a client that takes gzip, compressed
// once at start, with a validator of their own; other clients get them as
// they are.
func TestPagesAreServedGzipped(t *testing.T) {
	n := newTestNode(t, nodeOptions{})
	get := func(path, acceptEncoding string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest("GET", n.srv.URL+path, nil)
		req.Header.Set("Accept-Encoding", acceptEncoding) // set: the transport neither adds nor unpacks
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	plain, body := get("/", "identity")
	if plain.Header.Get("Content-Encoding") != "" || plain.Header.Get("Vary") != "Accept-Encoding" {
		t.Fatalf("identity: Content-Encoding %q, Vary %q", plain.Header.Get("Content-Encoding"), plain.Header.Get("Vary"))
	}
	for _, ae := range []string{"gzip", "br, gzip;q=0.5", "deflate, GZIP", "x-gzip"} {
		resp, gz := get("/", ae)
		if resp.Header.Get("Content-Encoding") != "gzip" || resp.Header.Get("ETag") == plain.Header.Get("ETag") {
			t.Fatalf("%q: Content-Encoding %q, ETag %q (plain %q)", ae, resp.Header.Get("Content-Encoding"), resp.Header.Get("ETag"), plain.Header.Get("ETag"))
		}
		zr, err := gzip.NewReader(bytes.NewReader(gz))
		if err != nil {
			t.Fatal(err)
		}
		if unpacked, err := io.ReadAll(zr); err != nil || !bytes.Equal(unpacked, body) || len(gz) >= len(body) {
			t.Fatalf("%q: %d gzipped bytes unpack to %d (%v), want the %d of the page", ae, len(gz), len(unpacked), err, len(body))
		}
	}
	for _, ae := range []string{"gzip;q=0", "gzip; q=0.000", "br", "*"} {
		if resp, _ := get("/", ae); resp.Header.Get("Content-Encoding") != "" {
			t.Errorf("%q: Content-Encoding %q, want none", ae, resp.Header.Get("Content-Encoding"))
		}
	}
	// Each representation is validated against its own ETag.
	resp, _ := get("/", "gzip")
	req, _ := http.NewRequest("GET", n.srv.URL+"/", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
	again, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	again.Body.Close()
	if again.StatusCode != http.StatusNotModified {
		t.Fatalf("gzip with its ETag: %d, want 304", again.StatusCode)
	}
}
