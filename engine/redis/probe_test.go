package redis

import (
	"testing"
	"time"

	"github.com/herald-hub/herald/engine"
	"github.com/herald-hub/herald/internal/redistest"
)

var _ engine.Metrics = (*Engine)(nil)

// A Pub/Sub connection that stays open but stops receiving is found by the
// idle probe within a few intervals, redialled and resubscribed, and its
// subscribers are told to re-read: an event of a quiet topic published
// during the silence reaches them by the re-read.
func TestSilentPubSubConnectionIsFoundByTheProbe(t *testing.T) {
	r := redistest.Start(t)
	px := redistest.NewBlackhole(t, r.Addr())
	const probe = 200 * time.Millisecond
	opt := testOptions(t, "redis://"+px.Addr()+"/0")
	opt.PubSubConns = 1
	opt.ProbeInterval = probe
	e := mustOpen(t, opt)

	sub := subscribeResumer(t, e, "silent")

	// Several quiet intervals pass with the connection healthy: the probes
	// arrive and nothing is redialled.
	time.Sleep(5 * probe)
	if sub.lostCalled() {
		t.Fatal("lost called while the connection was healthy")
	}

	if n := px.Blackhole(); n != 1 {
		t.Fatalf("silenced %d Pub/Sub connections, want 1", n)
	}
	silenced := time.Now()
	appendOK(t, e, ev("silent", "", "only"))
	sub.awaitLostAndReread(t, "the Pub/Sub connection went silent")
	took := time.Since(silenced)
	t.Logf("silence noticed and resubscribed after %v (probe interval %v)", took, probe)
	// About two intervals to notice, up to a second for the client to
	// close the silent connection, and a redial.
	if took > 5*time.Second {
		t.Errorf("silence noticed only after %v, want within a few probe intervals of %v", took, probe)
	}
	if res, viaFn := sub.has(); res != "only" || viaFn != 0 {
		t.Fatalf("subscriber has %q (%d by fan-out), want the event published during the silence, by the re-read", res, viaFn)
	}
	// Fan-out works on the new connection.
	appendOK(t, e, ev("silent", "", "next"))
	waitFor(t, "an event by fan-out after the reconnect", func() bool { _, viaFn := sub.has(); return viaFn == 1 })
	m := metrics(e)
	if m["probes_sent"] < 2 || m["probes_failed"] != 1 || m["reconnects"] != 1 || m["lost_topics"] != 1 {
		t.Errorf("metrics %v, want several probes sent, one failed, one reconnect, one lost topic", m)
	}
}

func metrics(e *Engine) map[string]uint64 {
	m := map[string]uint64{}
	for _, c := range e.Metrics() {
		m[c.Name] = c.Value
	}
	return m
}
