package main

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// dockerfileBuild returns the command of the Dockerfile's RUN line that builds
// Herald (the one running `go install` or `go build`), its continuation
// lines joined.
func dockerfileBuild(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "#") && cur.Len() == 0 {
			continue
		}
		if strings.HasSuffix(l, `\`) {
			cur.WriteString(strings.TrimSuffix(l, `\`) + " ")
			continue
		}
		cur.WriteString(l)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, l := range lines {
		cmd, ok := strings.CutPrefix(l, "RUN ")
		if ok && (strings.Contains(cmd, "go install ") || strings.Contains(cmd, "go build ")) {
			found = append(found, strings.TrimSpace(cmd))
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s: want one RUN line building Herald, found %q", path, found)
	}
	return found[0]
}

// TestDockerfileBuild runs the Dockerfile's build command as the image's
// build stage would (sh -c, from the module root, with its ARG and ENV set,
// GOBIN in a temp dir) and checks that it makes a static executable that
// answers version and probe: the image itself cannot be built here.
func TestDockerfileBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	if runtime.GOOS != "linux" {
		t.Skip("the image is linux; the ELF checks need it")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	cmdline := dockerfileBuild(t, filepath.Join(root, "Dockerfile"))
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-s -w", "-X main.version=${VERSION}", "./cmd/herald"} {
		if !strings.Contains(cmdline, want) {
			t.Errorf("build command %q lacks %q", cmdline, want)
		}
	}
	gobin := t.TempDir()
	cmd := exec.Command("sh", "-c", cmdline)
	cmd.Dir = root
	// CGO_ENABLED=1 in the environment shows that the line itself turns cgo off.
	cmd.Env = append(os.Environ(), "GOBIN="+gobin, "VERSION=v0.0.0-dockerfile", "CGO_ENABLED=1", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmdline, err, out)
	}
	bin := filepath.Join(gobin, "herald")

	ef, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s has a %v program header: not a static executable", bin, p.Type)
		}
	}
	if s := ef.Section(".dynamic"); s != nil {
		t.Errorf("%s has a .dynamic section", bin)
	}
	if libs, _ := ef.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("%s imports %v", bin, libs)
	}
	if s := ef.Section(".symtab"); s != nil {
		t.Errorf("%s keeps its symbol table: -s was not applied", bin)
	}

	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s version: %v\n%s", bin, err, out)
	}
	if !strings.HasPrefix(string(out), "herald v0.0.0-dockerfile go1.") {
		t.Errorf("%s version: %q, want herald v0.0.0-dockerfile go1...", bin, out)
	}
	if bytes.Contains(out, []byte(root)) {
		t.Errorf("version output names the source dir")
	}
	if raw, err := os.ReadFile(bin); err != nil {
		t.Fatal(err)
	} else if bytes.Contains(raw, []byte(root+"/")) {
		t.Errorf("%s holds the path %s: -trimpath was not applied", bin, root)
	}

	// The image's HEALTHCHECK: herald probe.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			w.Write([]byte(`{"status":"ready"}`))
			return
		}
		http.Error(w, "not ready", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	if out, err := exec.CommandContext(context.Background(), bin, "probe", srv.URL+"/readyz").CombinedOutput(); err != nil {
		t.Errorf("probe of a ready server: %v\n%s", err, out)
	}
	err = exec.Command(bin, "probe", srv.URL+"/other").Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("probe of a 503: %v, want exit status 1", err)
	}
}

// TestDockerfileImage checks the lines of the final stage that the build
// test cannot run.
func TestDockerfileImage(t *testing.T) {
	raw, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	s := string(raw)
	final := s[strings.LastIndex(s, "\nFROM "):]
	for _, want := range []string{
		"FROM gcr.io/distroless/static",
		"USER 65532:65532",
		`VOLUME ["/data"]`,
		"EXPOSE 8080",
		`ENTRYPOINT ["herald", "serve", "-addr", ":8080"]`,
	} {
		if !strings.Contains(final, want) {
			t.Errorf("the Dockerfile's final stage lacks %q", want)
		}
	}
}
