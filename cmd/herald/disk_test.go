package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herald-hub/herald/client"
	"github.com/herald-hub/herald/internal/testdisk"
)

// incompressible returns n bytes of hex the store cannot compress away.
func incompressible(n int) string {
	b := make([]byte, n/2)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// tryPublish publishes one event and returns the status and the error code.
func (p *process) tryPublish(topic, data string) (int, string) {
	p.t.Helper()
	status, raw := p.post(topic, data)
	var e struct{ Error struct{ Code string } }
	_ = json.Unmarshal(raw, &e)
	return status, e.Error.Code
}

func (p *process) ready() int {
	status, _ := p.readiness()
	return status
}

// readiness is /readyz's status and error code.
func (p *process) readiness() (int, string) {
	p.t.Helper()
	resp, err := http.Get(p.url("/readyz"))
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	var e struct{ Error struct{ Code string } }
	_ = json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, e.Error.Code
}

// publishUntilAccepted retries one publish until it is accepted, for at most d.
func (p *process) publishUntilAccepted(topic, data string, d time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(d)
	for {
		code, _ := p.tryPublish(topic, data)
		if code == 200 {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("publishing did not resume within %v of freeing space (last status %d)\n%s", d, code, p.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func checkData(t *testing.T, got []client.Event, want []string) {
	t.Helper()
	for i, ev := range got {
		if ev.Data != want[i] {
			t.Fatalf("event %d = %.20q, want %.20q", i, ev.Data, want[i])
		}
	}
}

func noMore(t *testing.T, s *client.Stream) {
	t.Helper()
	select {
	case ev := <-s.Events():
		t.Fatalf("duplicate or extra event %.40q", ev.Data)
	case <-time.After(200 * time.Millisecond):
	}
}

// A disk that fills up while Herald runs: publishes answer 503 and /readyz
// turns 503 at once; once space is freed publishing resumes by itself within
// seconds; every acknowledged event reaches the stream, once, in order; the
// repeated failure is not logged once per publish.
func TestProcessFullDiskRecoversWithoutRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts herald processes")
	}
	disk := testdisk.Mount(t, 48<<20)
	filler := filepath.Join(disk, "filler")
	if err := os.WriteFile(filler, make([]byte, 16<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startProcess(t, filepath.Join(disk, "data"), "-reserved-space", "4194304")
	const topic = "disk/full"
	s := client.Dial(context.Background(), client.Config{URL: p.url("/v1/events?topic=" + topic), MaxBackoff: 100 * time.Millisecond})
	defer s.Close()
	waitFor(t, func() bool { return s.LastEventID() != "" })

	var acked []string
	for {
		if len(acked) > 5000 {
			t.Fatal("the disk never filled")
		}
		data := fmt.Sprintf("%05d", len(acked)) + incompressible(16<<10)
		code, errCode := p.tryPublish(topic, data)
		if code == 200 {
			acked = append(acked, data)
			continue
		}
		if code != 503 || errCode != "engine_unavailable" {
			t.Fatalf("publish on a full disk: %d %q, want 503 engine_unavailable", code, errCode)
		}
		break
	}
	t.Logf("%d events accepted before the disk filled", len(acked))
	if c, code := p.readiness(); c != 503 || code != "engine_read_only" {
		t.Fatalf("/readyz on a full disk: %d %q, want 503 engine_read_only", c, code)
	}
	for range 200 { // a storm of refused publishes
		if code, _ := p.tryPublish(topic, "refused"); code != 503 {
			t.Fatalf("publish while full: %d, want 503", code)
		}
	}
	if n := strings.Count(p.logs.String(), "append failed"); n > 3 {
		t.Fatalf("%d log lines for refused publishes, want them rate-limited", n)
	}

	os.Remove(filler)
	p.publishUntilAccepted(topic, "after", 5*time.Second)
	acked = append(acked, "after")
	if c := p.ready(); c != 200 {
		t.Fatalf("/readyz after recovery: %d, want 200", c)
	}
	checkData(t, receive(t, s, len(acked)), acked)
	noMore(t, s)
}

// Herald killed, the disk filled meanwhile, Herald started again: it listens
// at once, serves streams and history, refuses publishes with 503 and says
// it is not ready, without spinning or flooding its log; once space is freed
// publishing resumes by itself.
func TestProcessStartsOnAFullDisk(t *testing.T) {
	if testing.Short() {
		t.Skip("starts herald processes")
	}
	disk := testdisk.Mount(t, 32<<20)
	dataDir := filepath.Join(disk, "data")
	p := startProcess(t, dataDir, "-reserved-space", "4194304")
	const topic = "disk/restart"
	var want []string
	var ids []string
	for i := range 20 {
		want = append(want, fmt.Sprint("event-", i))
		ids = append(ids, p.publish(topic, want[i]))
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
	filler := filepath.Join(disk, "filler")
	testdisk.Fill(t, filler)

	start := time.Now()
	p = startProcess(t, dataDir, "-reserved-space", "4194304")
	t.Logf("listening %v after start on a full disk", time.Since(start))
	s := client.Dial(context.Background(), client.Config{URL: p.url("/v1/events?topic=" + topic), LastEventID: ids[4], MaxBackoff: 100 * time.Millisecond})
	defer s.Close()
	checkData(t, receive(t, s, 15), want[5:])
	// Opening may have freed some room (the store drops logs it no longer
	// needs); whatever there is fills up now, and publishes are refused.
	filler2 := filepath.Join(disk, "filler2")
	testdisk.Fill(t, filler2)
	for i := 0; ; i++ {
		code, errCode := p.tryPublish(topic, incompressible(16<<10))
		if code == 503 && errCode == "engine_unavailable" {
			break
		}
		if code != 200 || i > 1000 {
			t.Fatalf("publish on a full disk: %d %q after %d accepted, want 503 engine_unavailable\n%s", code, errCode, i, p.logs)
		}
		want = append(want, "")
	}
	if c := p.ready(); c != 503 {
		t.Fatalf("/readyz on a full disk: %d, want 503", c)
	}
	before := strings.Count(p.logs.String(), "\n")
	time.Sleep(time.Second)
	if n := strings.Count(p.logs.String(), "\n") - before; n > 5 {
		t.Fatalf("%d log lines in one idle second on a full disk:\n%s", n, p.logs)
	}

	os.Remove(filler)
	os.Remove(filler2)
	p.publishUntilAccepted(topic, "after", 5*time.Second)
	got := receive(t, s, len(want)-20+1)
	checkData(t, got[len(got)-1:], []string{"after"})
	noMore(t, s)
	if c := p.ready(); c != 200 {
		t.Fatalf("/readyz after recovery: %d, want 200", c)
	}
}

// A busy port leaves nothing behind: no data dir, no key, no store.
func TestProcessBusyPortLeavesNothingBehind(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dataDir := filepath.Join(t.TempDir(), "data")
	var stderr bytes.Buffer
	code := run(context.Background(), []string{"serve", "-addr", ln.Addr().String(), "-data-dir", dataDir}, func(string) string { return "" }, io.Discard, &stderr)
	if code == 0 {
		t.Fatal("serve on a busy port exited 0")
	}
	if !strings.Contains(stderr.String(), "address already in use") {
		t.Fatalf("serve on a busy port said %q, want the cause", stderr.String())
	}
	if _, err := os.Stat(dataDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("serve on a busy port created %s (%v)", dataDir, err)
	}
}

// A store on a read-only file system is reported as such, not as "in use".
func TestProcessReadOnlyStoreNamesTheCause(t *testing.T) {
	disk := testdisk.Mount(t, 16<<20)
	dataDir := filepath.Join(disk, "data")
	var stderr bytes.Buffer
	args := []string{"serve", "-addr", "127.0.0.1:0", "-data-dir", dataDir, "-publish-key", processKey, "-reserved-space", "4194304"}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // start, create the store, stop at once
	if code := run(ctx, args, func(string) string { return "" }, io.Discard, &stderr); code != 0 {
		t.Fatalf("first start: exit %d\n%s", code, stderr.String())
	}
	if err := syscall.Mount("", disk, "", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	stderr.Reset()
	code := run(context.Background(), args, func(string) string { return "" }, io.Discard, &stderr)
	if code == 0 {
		t.Fatal("serve on a read-only store exited 0")
	}
	msg := stderr.String()
	if strings.Contains(msg, "in use") || !strings.Contains(msg, "not writable") || !strings.Contains(msg, "read-only file system") {
		t.Fatalf("serve on a read-only store said %q, want 'not writable' and the cause", msg)
	}
}
