// Package inboxtest is the suite every inbox store passes.
package inboxtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/herald-hub/herald/inbox"
)

// Run runs the suite; open returns an empty store, closed by the suite.
func Run(t *testing.T, open func(t *testing.T) inbox.Store) {
	s := func(t *testing.T) inbox.Store {
		st := open(t)
		t.Cleanup(func() { st.Close() })
		return st
	}
	t.Run("SendAndList", func(t *testing.T) { testSendAndList(t, s(t)) })
	t.Run("Pagination", func(t *testing.T) { testPagination(t, s(t)) })
	t.Run("ReadAndDelete", func(t *testing.T) { testReadAndDelete(t, s(t)) })
	t.Run("UsersAreApart", func(t *testing.T) { testUsersApart(t, s(t)) })
	t.Run("Dedupe", func(t *testing.T) { testDedupe(t, s(t)) })
	t.Run("SendAll", func(t *testing.T) { testSendAll(t, s(t)) })
	t.Run("ConcurrentDedupe", func(t *testing.T) { testConcurrentDedupe(t, s(t)) })
	t.Run("Pushed", func(t *testing.T) { testPushed(t, s(t)) })
	t.Run("TrimByCount", func(t *testing.T) { testTrimByCount(t, s(t)) })
	t.Run("TrimByAge", func(t *testing.T) { testTrimByAge(t, s(t)) })
	t.Run("UnreadCount", func(t *testing.T) { testUnreadCount(t, s(t)) })
	t.Run("Invalid", func(t *testing.T) { testInvalid(t, s(t)) })
	t.Run("Text", func(t *testing.T) { testText(t, s(t)) })
}

var ctx = context.Background()

func send(t *testing.T, s inbox.Store, sd inbox.Send) []inbox.Notification {
	t.Helper()
	ns, dup, err := s.Send(ctx, sd)
	if err != nil || dup {
		t.Fatalf("Send(%+v): %v (dup %v)", sd, err, dup)
	}
	return ns
}

func list(t *testing.T, s inbox.Store, user string, q inbox.Query) inbox.Page {
	t.Helper()
	p, err := s.List(ctx, user, q)
	if err != nil {
		t.Fatalf("List(%s, %+v): %v", user, q, err)
	}
	return p
}

func ids(ns []inbox.Notification) []int64 {
	out := make([]int64, len(ns))
	for i, n := range ns {
		out[i] = n.ID
	}
	return out
}

func testSendAndList(t *testing.T, s inbox.Store) {
	before := time.Now().Add(-time.Second)
	ns := send(t, s, inbox.Send{To: []string{"42", "43"}, Type: "order.shipped", Title: "Shipped", Body: "Your order is on its way", Data: json.RawMessage(`{"order":7}`)})
	if len(ns) != 2 || ns[0].User != "42" || ns[1].User != "43" || ns[0].ID == ns[1].ID {
		t.Fatalf("Send answered %+v", ns)
	}
	p := list(t, s, "42", inbox.Query{Limit: 10})
	if len(p.Items) != 1 || p.More || p.Unread != 1 {
		t.Fatalf("page %+v", p)
	}
	n := p.Items[0]
	if n.ID != ns[0].ID || n.Type != "order.shipped" || n.Title != "Shipped" || n.Body != "Your order is on its way" || string(n.Data) != `{"order":7}` || !n.Read.IsZero() || n.Pushed {
		t.Fatalf("stored %+v", n)
	}
	if n.Created.Before(before) || n.Created.After(time.Now().Add(time.Second)) {
		t.Fatalf("created %v", n.Created)
	}
	if !n.Created.Equal(ns[0].Created) {
		t.Fatalf("Send answered created %v, List %v", ns[0].Created, n.Created)
	}
	// No data is no data, not JSON null.
	ns = send(t, s, inbox.Send{To: []string{"44"}, Type: "ping"})
	if p := list(t, s, "44", inbox.Query{Limit: 1}); p.Items[0].Data != nil || p.Items[0].Title != "" {
		t.Fatalf("without data: %+v", p.Items[0])
	}
}

func testPagination(t *testing.T, s inbox.Store) {
	var all []int64
	for i := range 25 {
		all = append(all, send(t, s, inbox.Send{To: []string{"u"}, Type: "n", Title: fmt.Sprint(i)})[0].ID)
	}
	slices.Reverse(all) // newest first
	var got []int64
	var before int64
	for pages := 0; ; pages++ {
		p := list(t, s, "u", inbox.Query{Limit: 10, Before: before})
		got = append(got, ids(p.Items)...)
		if !p.More {
			if pages != 2 || len(p.Items) != 5 {
				t.Fatalf("last page %d has %d items", pages, len(p.Items))
			}
			break
		}
		before = p.Items[len(p.Items)-1].ID
	}
	if !slices.Equal(got, all) {
		t.Fatalf("pages gave %v, want %v", got, all)
	}
	// Unread only, after some are read.
	for _, id := range all[:5] {
		if ok, err := s.MarkRead(ctx, "u", id); !ok || err != nil {
			t.Fatalf("MarkRead %d: %v %v", id, ok, err)
		}
	}
	p := list(t, s, "u", inbox.Query{Unread: true, Limit: 100})
	if !slices.Equal(ids(p.Items), all[5:]) || p.Unread != 20 {
		t.Fatalf("unread %v (count %d), want %v", ids(p.Items), p.Unread, all[5:])
	}
}

func testReadAndDelete(t *testing.T, s inbox.Store) {
	ns := send(t, s, inbox.Send{To: []string{"a"}, Type: "x"})
	send(t, s, inbox.Send{To: []string{"a"}, Type: "x"})
	send(t, s, inbox.Send{To: []string{"a"}, Type: "x"})
	id := ns[0].ID
	for range 2 { // marking twice is fine
		if ok, err := s.MarkRead(ctx, "a", id); !ok || err != nil {
			t.Fatalf("MarkRead: %v %v", ok, err)
		}
	}
	p := list(t, s, "a", inbox.Query{Limit: 10})
	if p.Unread != 2 || p.Items[2].Read.IsZero() {
		t.Fatalf("after one read: %+v", p)
	}
	n, err := s.MarkAllRead(ctx, "a")
	if n != 2 || err != nil {
		t.Fatalf("MarkAllRead: %d %v, want 2", n, err)
	}
	if n, _ := s.MarkAllRead(ctx, "a"); n != 0 {
		t.Fatalf("MarkAllRead again: %d", n)
	}
	if ok, err := s.Delete(ctx, "a", id); !ok || err != nil {
		t.Fatalf("Delete: %v %v", ok, err)
	}
	if ok, _ := s.Delete(ctx, "a", id); ok {
		t.Fatal("Delete of a deleted notification reported true")
	}
	if ok, _ := s.MarkRead(ctx, "a", id); ok {
		t.Fatal("MarkRead of a deleted notification reported true")
	}
	if p := list(t, s, "a", inbox.Query{Limit: 10}); len(p.Items) != 2 || p.Unread != 0 {
		t.Fatalf("after delete: %+v", p)
	}
}

func testUsersApart(t *testing.T, s inbox.Store) {
	mine := send(t, s, inbox.Send{To: []string{"alice"}, Type: "x"})[0].ID
	send(t, s, inbox.Send{To: []string{"bob"}, Type: "x"})
	if ok, err := s.MarkRead(ctx, "bob", mine); ok || err != nil {
		t.Fatalf("bob marked alice's notification: %v %v", ok, err)
	}
	if ok, err := s.Delete(ctx, "bob", mine); ok || err != nil {
		t.Fatalf("bob deleted alice's notification: %v %v", ok, err)
	}
	if n, _ := s.MarkAllRead(ctx, "bob"); n != 1 {
		t.Fatalf("bob's read-all marked %d", n)
	}
	if p := list(t, s, "alice", inbox.Query{Limit: 10}); len(p.Items) != 1 || p.Unread != 1 {
		t.Fatalf("alice's inbox after bob's doings: %+v", p)
	}
	// A user id is matched exactly: no prefix, no case folding.
	for _, other := range []string{"Alice", "alic", "alice "} {
		if p := list(t, s, other, inbox.Query{Limit: 10}); len(p.Items) != 0 {
			t.Fatalf("%q sees %+v", other, p.Items)
		}
	}
}

func testDedupe(t *testing.T, s inbox.Store) {
	sd := inbox.Send{To: []string{"1", "2"}, Type: "x", DedupeKey: "order-7-shipped"}
	first := send(t, s, sd)
	again, dup, err := s.Send(ctx, sd)
	if err != nil || !dup || !slices.Equal(ids(again), ids(first)) {
		t.Fatalf("repeat: %v dup %v err %v, want %v", ids(again), dup, err, ids(first))
	}
	if p := list(t, s, "1", inbox.Query{Limit: 10}); len(p.Items) != 1 {
		t.Fatalf("a repeated send stored again: %+v", p.Items)
	}
	// Another key is another send.
	sd.DedupeKey = "order-8-shipped"
	send(t, s, sd)
}

func testSendAll(t *testing.T, s inbox.Store) {
	first := send(t, s, inbox.Send{To: []string{"m"}, Type: "x", DedupeKey: "k1"})
	rs, err := s.SendAll(ctx, []inbox.Send{
		{To: []string{"m"}, Type: "x", DedupeKey: "k1"}, // a repeat
		{To: []string{"m", "n"}, Type: "y", DedupeKey: "k2"},
		{To: []string{"m"}, Type: "z"},
	})
	if err != nil || len(rs) != 3 || !rs[0].Duplicate || rs[0].Notifications[0].ID != first[0].ID || rs[1].Duplicate || len(rs[1].Notifications) != 2 {
		t.Fatalf("SendAll: %+v %v", rs, err)
	}
	if p := list(t, s, "m", inbox.Query{Limit: 10}); len(p.Items) != 3 || p.Unread != 3 {
		t.Fatalf("m after SendAll: %d items, %d unread", len(p.Items), p.Unread)
	}
	// One invalid Send refuses them all.
	if _, err := s.SendAll(ctx, []inbox.Send{{To: []string{"m"}, Type: "x"}, {To: []string{"m"}}}); !errors.Is(err, inbox.ErrInvalid) {
		t.Fatalf("SendAll with an invalid send: %v", err)
	}
	if p := list(t, s, "m", inbox.Query{Limit: 10}); len(p.Items) != 3 {
		t.Fatalf("a refused SendAll stored %d", len(p.Items)-3)
	}
}

func testConcurrentDedupe(t *testing.T, s inbox.Store) {
	sd := inbox.Send{To: []string{"c"}, Type: "x", DedupeKey: "k"}
	var wg sync.WaitGroup
	got := make([][]int64, 8)
	errs := make([]error, 8)
	for i := range 8 {
		wg.Go(func() {
			ns, _, err := s.Send(ctx, sd)
			got[i], errs[i] = ids(ns), err
		})
	}
	wg.Wait()
	for i := range 8 {
		if errs[i] != nil || !slices.Equal(got[i], got[0]) {
			t.Fatalf("send %d: %v %v, first %v", i, got[i], errs[i], got[0])
		}
	}
	if p := list(t, s, "c", inbox.Query{Limit: 10}); len(p.Items) != 1 {
		t.Fatalf("8 concurrent sends with one key stored %d", len(p.Items))
	}
}

func testPushed(t *testing.T, s inbox.Store) {
	a := send(t, s, inbox.Send{To: []string{"p1", "p2", "p3"}, Type: "x"})
	got, err := s.Unpushed(ctx, 2)
	if err != nil || !slices.Equal(ids(got), ids(a[:2])) {
		t.Fatalf("Unpushed(2): %v %v, want %v", ids(got), err, ids(a[:2]))
	}
	if err := s.MarkPushed(ctx, ids(a[:2])); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Unpushed(ctx, 10)
	if !slices.Equal(ids(got), ids(a[2:])) {
		t.Fatalf("Unpushed after marking: %v, want %v", ids(got), ids(a[2:]))
	}
	if p := list(t, s, "p1", inbox.Query{Limit: 1}); !p.Items[0].Pushed {
		t.Fatal("a pushed notification lists as not pushed")
	}
}

func testTrimByCount(t *testing.T, s inbox.Store) {
	var keep []int64
	for i := range 12 {
		id := send(t, s, inbox.Send{To: []string{"many"}, Type: "x"})[0].ID
		if i >= 7 {
			keep = append(keep, id)
		}
	}
	send(t, s, inbox.Send{To: []string{"few"}, Type: "x"})
	n, err := s.Trim(ctx, 0, 5, 2)
	if err != nil || n != 7 {
		t.Fatalf("Trim: %d %v, want 7", n, err)
	}
	slices.Reverse(keep)
	if p := list(t, s, "many", inbox.Query{Limit: 100}); !slices.Equal(ids(p.Items), keep) {
		t.Fatalf("kept %v, want %v", ids(p.Items), keep)
	}
	if p := list(t, s, "few", inbox.Query{Limit: 100}); len(p.Items) != 1 {
		t.Fatal("trimmed a user under the limit")
	}
	if p := list(t, s, "many", inbox.Query{Limit: 1}); p.Unread != 5 {
		t.Fatalf("unread count %d after trimming to 5", p.Unread)
	}
}

func testTrimByAge(t *testing.T, s inbox.Store) {
	old := send(t, s, inbox.Send{To: []string{"x", "y"}, Type: "x"})
	if ok, _ := s.MarkRead(ctx, "y", old[1].ID); !ok {
		t.Fatal("MarkRead")
	}
	// Margins for a loaded machine: the new one must stay younger than the
	// age limit until Trim runs.
	time.Sleep(600 * time.Millisecond)
	send(t, s, inbox.Send{To: []string{"x"}, Type: "x"})
	n, err := s.Trim(ctx, 400*time.Millisecond, 0, 1)
	if err != nil || n != 2 {
		t.Fatalf("Trim by age: %d %v, want 2", n, err)
	}
	if p := list(t, s, "x", inbox.Query{Limit: 10}); len(p.Items) != 1 || p.Unread != 1 {
		t.Fatalf("x after trimming: %+v", p)
	}
	if p := list(t, s, "y", inbox.Query{Limit: 10}); len(p.Items) != 0 || p.Unread != 0 {
		t.Fatalf("y after trimming: %+v", p)
	}
}

// The unread count follows every change, across concurrent sends and reads.
func testUnreadCount(t *testing.T, s inbox.Store) {
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 10 {
				if _, _, err := s.Send(ctx, inbox.Send{To: []string{"cnt", "other"}, Type: "x"}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	p := list(t, s, "cnt", inbox.Query{Limit: 100})
	if p.Unread != 40 {
		t.Fatalf("unread %d after 40 sends", p.Unread)
	}
	for _, n := range p.Items[:10] {
		wg.Go(func() { s.MarkRead(ctx, "cnt", n.ID) })
	}
	wg.Wait()
	s.Delete(ctx, "cnt", p.Items[0].ID)  // a read one
	s.Delete(ctx, "cnt", p.Items[39].ID) // an unread one
	if p := list(t, s, "cnt", inbox.Query{Limit: 1}); p.Unread != 29 {
		t.Fatalf("unread %d, want 29", p.Unread)
	}
	if p := list(t, s, "other", inbox.Query{Limit: 1}); p.Unread != 40 {
		t.Fatalf("the other recipient's unread %d, want 40", p.Unread)
	}
}

func testInvalid(t *testing.T, s inbox.Store) {
	long := string(make([]byte, inbox.MaxUserLen+1))
	for _, sd := range []inbox.Send{
		{Type: "x"},
		{To: []string{""}, Type: "x"},
		{To: []string{"a", "a"}, Type: "x"},
		{To: []string{long}, Type: "x"},
		{To: []string{"a"}},
		{To: []string{"a"}, Type: "x", Title: "\xff"},
		{To: []string{"a"}, Type: "x", Data: make([]byte, inbox.MaxDataLen+1)},
		{To: []string{"a"}, Type: "x", Data: []byte("01")}, // not JSON: it would break the user's list
	} {
		if _, _, err := s.Send(ctx, sd); !errors.Is(err, inbox.ErrInvalid) {
			t.Errorf("Send(%.60v): %v, want ErrInvalid", sd, err)
		}
	}
	if _, err := s.List(ctx, "a", inbox.Query{}); !errors.Is(err, inbox.ErrInvalid) {
		t.Errorf("List with limit 0: %v", err)
	}
}

// Text survives the round trip byte for byte: quotes, emoji, newlines.
func testText(t *testing.T, s inbox.Store) {
	sd := inbox.Send{To: []string{"user@example.com", "名前"}, Type: "chat.message", Title: "It's \"here\" 🎉", Body: "line 1\nline 2\t; DROP TABLE x; --", Data: json.RawMessage(`{"s":"\u00e9"}`)}
	send(t, s, sd)
	for _, u := range sd.To {
		n := list(t, s, u, inbox.Query{Limit: 1}).Items[0]
		if n.Title != sd.Title || n.Body != sd.Body || string(n.Data) != string(sd.Data) || n.User != u {
			t.Fatalf("round trip: %+v", n)
		}
	}
}
