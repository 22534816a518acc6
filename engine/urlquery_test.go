package engine

import (
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestURLQueryReadsOptionsAndRefusesBadOnes(t *testing.T) {
	u, _ := url.Parse("x://h?name=a&n=3&d=2s&z=0&srv=a:1&srv=b:2&driver=1")
	q := NewURLQuery("x", u)
	var (
		name string
		n    int
		d, z time.Duration
	)
	q.String("name", &name)
	q.Int("n", 1, 5, &n)
	q.Duration("d", false, &d)
	z = time.Hour
	q.Duration("z", true, &z)
	srv := q.Strings("srv")
	if err := q.Err(false); err != nil {
		t.Fatal(err)
	}
	if name != "a" || n != 3 || d != 2*time.Second || z != 0 || len(srv) != 2 {
		t.Fatalf("read name=%q n=%d d=%v z=%v srv=%v", name, n, d, z, srv)
	}
	if rest := q.Rest().Encode(); rest != "driver=1" {
		t.Fatalf("rest %q, want what no option read", rest)
	}
	if err := q.Err(true, "name", "n"); err == nil || !strings.Contains(err.Error(), `unknown option "driver" (known: name, n)`) {
		t.Fatalf("unknown option: %v", err)
	}

	for query, want := range map[string]string{
		"name=":         "name is empty",
		"name=a&name=b": "name given 2 times",
		"n=0":           `n="0", want 1 to 5`,
		"n=x":           `n="x", want 1 to 5`,
		"d=0":           `d="0", want a positive duration`,
		"d=-1s":         `d="-1s", want a positive duration`,
		"z=-1s":         `z="-1s", want a duration such as 30s, or 0`,
		"d=soon&n=9":    `d="soon"`, // the first bad one
	} {
		u, _ := url.Parse("x://h?" + query)
		q := NewURLQuery("x", u)
		var s string
		var n int
		var d, z time.Duration
		q.Duration("d", false, &d)
		q.String("name", &s)
		q.Int("n", 1, 5, &n)
		q.Duration("z", true, &z)
		err := q.Err(true)
		if err == nil || !strings.HasPrefix(err.Error(), "engine x: ") || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error with %q", query, err, want)
		}
	}
}
