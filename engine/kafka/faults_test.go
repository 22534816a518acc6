package kafka

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/herald-hub/herald/engine"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func appendEvents(t *testing.T, e engine.Engine, topic string, from, n int) []engine.Position {
	t.Helper()
	var out []engine.Position
	for i := from; i < from+n; i++ {
		pos, err := e.Append(testCtx(t), []engine.Event{{Topic: topic, Type: "test", Data: fmt.Appendf(nil, "%d", i)}})
		if err != nil {
			t.Fatalf("Append %s #%d: %v", topic, i, err)
		}
		out = append(out, pos...)
	}
	return out
}

func admin(t *testing.T, c *kfake.Cluster) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

func deleteRecordsBefore(t *testing.T, c *kfake.Cluster, p int32, offset int64) {
	t.Helper()
	os := kadm.Offsets{}
	os.Add(kadm.Offset{Topic: "herald", Partition: p, At: offset})
	res, err := admin(t, c).DeleteRecords(testCtx(t), os)
	if err == nil {
		err = res.Error()
	}
	if err != nil {
		t.Fatalf("DeleteRecords: %v", err)
	}
}

func wantGapAt(t *testing.T, err error, resume engine.Position) {
	t.Helper()
	var gap *engine.GapError
	if !errors.As(err, &gap) || gap.Resume != resume {
		t.Fatalf("err = %v, want a gap resuming after %v", err, resume)
	}
}

func readData(t *testing.T, e engine.Engine, topic string, after engine.Position) []string {
	t.Helper()
	evs, err := e.Read(testCtx(t), topic, after, 100)
	if err != nil {
		t.Fatalf("Read %s after %v: %v", topic, after, err)
	}
	var out []string
	for _, ev := range evs {
		out = append(out, string(ev.Data))
	}
	return out
}

// A node that starts (or restarts) after records it has not applied were
// deleted from Kafka reads a gap before the log start, never a silent skip.
func TestDeletedRecordsAreAGapForABootstrappingNode(t *testing.T) {
	c := newCluster(t)
	opt := testOptions(t, c)
	e1 := openEngine(t, opt)
	pos := appendEvents(t, e1, "del/a", 1, 2) // Kafka offsets 0, 1 of its partition
	if err := e1.Close(); err != nil {
		t.Fatal(err)
	}
	peerOpt := opt
	peerOpt.Dir = t.TempDir()
	e2 := openEngine(t, peerOpt)
	pos = append(pos, appendEvents(t, e2, "del/a", 3, 4)...) // offsets 2..5
	p := partitionOf("del/a", testPartitions)
	deleteRecordsBefore(t, c, p, 4) // offsets 0..3 (Herald 1..4) are gone

	e1 = openEngine(t, opt) // applied up to Herald 2, the log now starts after 4
	if e1.Metrics()[6].Value != 1 {
		t.Fatalf("partition_resets = %d, want 1", e1.Metrics()[6].Value)
	}
	_, err := e1.Read(testCtx(t), "del/a", pos[1], 100)
	wantGapAt(t, err, engine.Position{Epoch: pos[0].Epoch, Offset: 4})
	if got := readData(t, e1, "del/a", engine.Position{Epoch: pos[0].Epoch, Offset: 4}); fmt.Sprint(got) != "[5 6]" {
		t.Fatalf("Read after the gap = %v, want [5 6]", got)
	}
	// A fresh node starts at the log start: the same gap.
	freshOpt := opt
	freshOpt.Dir = t.TempDir()
	e3 := openEngine(t, freshOpt)
	_, err = e3.Read(testCtx(t), "del/a", pos[0], 100)
	wantGapAt(t, err, engine.Position{Epoch: pos[0].Epoch, Offset: 4})
	if got := readData(t, e3, "del/a", engine.Position{}); fmt.Sprint(got) != "[5 6]" {
		t.Fatalf("Read from the start on a fresh node = %v, want [5 6]", got)
	}
	// A topic of the partition never seen: its head is the log start.
	if h, err := e3.Head(testCtx(t), "del/a"); err != nil || h != pos[5] {
		t.Fatalf("Head = %v, %v; want %v", h, err, pos[5])
	}
}

// A running node whose reader falls behind records deleted under it moves
// past them (OffsetOutOfRange is never reset silently by the client), calls
// lost on the partition's subscribers, and reads a gap before the log start.
func TestDeletedRecordsWhileRunningCallLost(t *testing.T) {
	c := newCluster(t)
	opt := testOptions(t, c)
	e1 := openEngine(t, opt)
	pos := appendEvents(t, e1, "run/a", 1, 2)
	var lost sync.WaitGroup
	lost.Add(1)
	var once sync.Once
	cancel, err := e1.Subscribe("run/a", func(engine.Event) {}, func() { once.Do(lost.Done) })
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	p := partitionOf("run/a", testPartitions)
	e1.cons.PauseFetchPartitions(map[string][]int32{"herald": {p}})
	peerOpt := opt
	peerOpt.Dir = t.TempDir()
	e2 := openEngine(t, peerOpt)
	pos = append(pos, appendEvents(t, e2, "run/a", 3, 3)...) // offsets 2..4
	deleteRecordsBefore(t, c, p, 4)
	e1.cons.ResumeFetchPartitions(map[string][]int32{"herald": {p}})
	done := make(chan struct{})
	go func() { lost.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("lost was not called after the reader's records were deleted")
	}
	_, err = e1.Read(testCtx(t), "run/a", pos[1], 100)
	wantGapAt(t, err, engine.Position{Epoch: pos[0].Epoch, Offset: 4})
	if got := readData(t, e1, "run/a", engine.Position{Epoch: pos[0].Epoch, Offset: 4}); fmt.Sprint(got) != "[5]" {
		t.Fatalf("Read after the gap = %v, want [5]", got)
	}
	if err := e1.CanWrite(); err != nil {
		t.Fatalf("CanWrite after moving past deleted records: %v", err)
	}
}

// A produce request that Kafka refuses fails the Append with ErrUnavailable
// and appends nothing; the next Append works.
func TestProduceErrorFailsTheAppend(t *testing.T) {
	c := newCluster(t)
	e := openEngine(t, testOptions(t, c))
	pos := appendEvents(t, e, "pe/a", 1, 1)
	c.ControlKey(int16(kmsg.Produce), func(r kmsg.Request) (kmsg.Response, error, bool) {
		req := r.(*kmsg.ProduceRequest)
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		resp.Version = req.Version
		for _, rt := range req.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.InvalidRecord.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	_, err := e.Append(testCtx(t), []engine.Event{{Topic: "pe/a", Type: "test", Data: []byte("refused")}})
	if !errors.Is(err, engine.ErrUnavailable) {
		t.Fatalf("Append refused by Kafka: %v, want ErrUnavailable", err)
	}
	if h, err := e.Head(testCtx(t), "pe/a"); err != nil || h != pos[0] {
		t.Fatalf("Head after a refused append = %v, %v; want %v", h, err, pos[0])
	}
	pos = append(pos, appendEvents(t, e, "pe/a", 2, 1)...)
	if got := readData(t, e, "pe/a", engine.Position{}); fmt.Sprint(got) != "[1 2]" {
		t.Fatalf("log = %v, want [1 2]", got)
	}
	if m := e.Metrics()[4]; m.Name != "produce_errors" || m.Value == 0 {
		t.Fatalf("produce_errors = %+v, want > 0", m)
	}
}

// A fetch that fails (the connection cut) is retried by the reader:
// nothing is lost or repeated.
func TestFetchErrorIsRetried(t *testing.T) {
	c := newCluster(t)
	e := openEngine(t, testOptions(t, c))
	var mu sync.Mutex
	var got []string
	cancel, err := e.Subscribe("fe/a", func(ev engine.Event) {
		mu.Lock()
		got = append(got, string(ev.Data))
		mu.Unlock()
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	appendEvents(t, e, "fe/a", 1, 2)
	for range 3 {
		c.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
			return nil, errors.New("injected fetch failure"), true
		})
	}
	appendEvents(t, e, "fe/a", 3, 3)
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(got) != "[1 2 3 4 5]" {
		t.Fatalf("delivered %v, want [1 2 3 4 5]", got)
	}
}

// The cluster stops and starts again on its data dir: the engine goes on
// in the same epoch, and a reopened engine too.
func TestClusterRestartOnItsDataDir(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	c1, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DataDir(dir), kfake.Ports(port))
	if err != nil {
		t.Fatal(err)
	}
	opt := testOptions(t, c1)
	e := openEngine(t, opt)
	pos := appendEvents(t, e, "cr/a", 1, 3)
	c1.Close()
	c2, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DataDir(dir), kfake.Ports(port))
	if err != nil {
		t.Fatalf("restart the cluster: %v", err)
	}
	t.Cleanup(c2.Close)
	deadline := time.Now().Add(20 * time.Second)
	var more []engine.Position
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		more, err = e.Append(ctx, []engine.Event{{Topic: "cr/a", Type: "test", Data: []byte("4")}})
		cancel()
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("Append after the cluster restarted: %v", err)
	}
	if more[0].Epoch != pos[0].Epoch || more[0].Offset <= pos[2].Offset {
		t.Fatalf("Append after the restart = %v, want after %v in the same epoch", more[0], pos[2])
	}
	if got := readData(t, e, "cr/a", engine.Position{}); fmt.Sprint(got) != "[1 2 3 4]" {
		t.Fatalf("log = %v, want [1 2 3 4]", got)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = openEngine(t, opt)
	if h, err := e.Head(testCtx(t), "cr/a"); err != nil || h != more[0] {
		t.Fatalf("Head after reopen = %v, %v; want %v", h, err, more[0])
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, p, _ := net.SplitHostPort(l.Addr().String())
	n, _ := strconv.Atoi(p)
	return n
}

// The Kafka topic deleted and created again is a new epoch: a running
// engine stops being ready, and once reopened it rebuilds its replica, and
// cursors of the old epoch read a gap.
func TestTopicRecreatedIsANewEpoch(t *testing.T) {
	c := newCluster(t)
	opt := testOptions(t, c)
	e := openEngine(t, opt)
	pos := appendEvents(t, e, "rc/a", 1, 3)
	if _, err := admin(t, c).DeleteTopic(testCtx(t), "herald"); err != nil {
		t.Fatalf("DeleteTopic: %v", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for e.CanWrite() == nil {
		if time.Now().After(deadline) {
			t.Fatal("CanWrite still nil 20 s after the Kafka topic was deleted")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = openEngine(t, opt) // creates the topic again
	if e.Epoch() == pos[0].Epoch {
		t.Fatalf("epoch %s unchanged after the topic was recreated", e.Epoch())
	}
	_, err := e.Read(testCtx(t), "rc/a", pos[2], 100)
	wantGapAt(t, err, engine.Position{Epoch: e.Epoch(), Offset: 0})
	if got := readData(t, e, "rc/a", engine.Position{}); len(got) != 0 {
		t.Fatalf("new epoch holds %v, want nothing", got)
	}
	np := appendEvents(t, e, "rc/a", 4, 1)
	if np[0] != (engine.Position{Epoch: e.Epoch(), Offset: 1}) {
		t.Fatalf("first append of the new epoch at %v", np[0])
	}
}

// The Kafka topic deleted and created again while an engine runs: no
// Append of that engine answers with an offset of the old epoch again.
func TestAppendAfterTopicRecreatedNeverRepeatsAnOffset(t *testing.T) {
	c := newCluster(t)
	opt := testOptions(t, c)
	e := openEngine(t, opt)
	pos := appendEvents(t, e, "rr/a", 1, 3)
	adm := admin(t, c)
	if _, err := adm.DeleteTopic(testCtx(t), "herald"); err != nil {
		t.Fatalf("DeleteTopic: %v", err)
	}
	if _, err := adm.CreateTopic(testCtx(t), testPartitions, 1, nil, "herald"); err != nil {
		t.Fatalf("CreateTopic: %v", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		got, err := e.Append(ctx, []engine.Event{{Topic: "rr/a", Type: "test", Data: []byte("x")}})
		cancel()
		if err == nil && got[0].Offset <= pos[2].Offset {
			t.Fatalf("Append after the topic was recreated = %v, an offset the old epoch already gave (%v)", got[0], pos)
		}
		if err != nil {
			t.Logf("Append: %v", err)
		}
		if e.CanWrite() != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Append still answers %v, %v 20 s after the topic was recreated", got, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := e.CanWrite(); !errors.Is(err, engine.ErrUnavailable) {
		t.Fatalf("CanWrite = %v, want ErrUnavailable", err)
	}
}

// A node that starts on a log it has not read reports not ready until its
// replica has caught up, then ready.
func TestNotReadyUntilCaughtUp(t *testing.T) {
	c := newCluster(t)
	opt := testOptions(t, c)
	e1 := openEngine(t, opt)
	var events []engine.Event
	for i := range 200 {
		events = append(events, engine.Event{Topic: fmt.Sprintf("boot/%d", i%10), Type: "test", Data: []byte("x")})
	}
	if _, err := e1.Append(testCtx(t), events); err != nil {
		t.Fatal(err)
	}
	var blocking atomic.Bool
	blocking.Store(true)
	c.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if blocking.Load() {
			return nil, errors.New("fetch held back by the test"), true
		}
		return nil, nil, false
	})
	peer := opt
	peer.Dir = t.TempDir()
	e2 := openEngine(t, peer)
	time.Sleep(300 * time.Millisecond)
	if err := e2.CanWrite(); !errors.Is(err, engine.ErrUnavailable) {
		t.Fatalf("CanWrite of a node that has read nothing = %v, want ErrUnavailable", err)
	}
	blocking.Store(false)
	deadline := time.Now().Add(20 * time.Second)
	for e2.CanWrite() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("CanWrite still %v 20 s after fetches resumed", e2.CanWrite())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got, err := e2.Read(testCtx(t), "boot/3", engine.Position{}, 100); err != nil || len(got) != 20 {
		t.Fatalf("Read on the caught-up node: %d events, %v; want 20", len(got), err)
	}
}

// With the broker down, an Append fails within the request timeout instead
// of waiting for the broker, and Close returns: a node can stop.
func TestBrokerDownAppendFailsAndCloseReturns(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DataDir(t.TempDir()), kfake.Ports(freePort(t)))
	if err != nil {
		t.Fatal(err)
	}
	opt := testOptions(t, c)
	opt.RequestTimeout = time.Second
	e, err := Open(opt)
	if err != nil {
		t.Fatal(err)
	}
	appendEvents(t, e, "down/a", 1, 1)
	c.Close()
	start := time.Now()
	_, err = e.Append(context.Background(), []engine.Event{{Topic: "down/a", Type: "test", Data: []byte("2")}})
	if !errors.Is(err, engine.ErrUnavailable) {
		t.Fatalf("Append with the broker down: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Append failed only after %v", d)
	}
	t.Logf("Append failed after %v", time.Since(start).Round(time.Millisecond))
	closed := make(chan error, 1)
	go func() { closed <- e.Close() }()
	select {
	case <-closed:
	case <-time.After(15 * time.Second):
		t.Fatal("Close did not return with the broker down")
	}
}
