package bench

import (
	"bytes"
	"encoding/xml"
	"io"
	"strings"
	"testing"
)

func TestSVGIsWellFormed(t *testing.T) {
	var h Histogram
	for v := int64(100); v < 2_000_000; v = v*11/10 + 1 {
		h.Record(v)
	}
	r := &Result{Target: "http://127.0.0.1:1/<&>", Connections: 10, Layout: "shared", Rate: 5, Duration: 3,
		Timeline:  []Second{{0, 100, 1.5, 9, 12}, {1, 250, 2, 20, 40}, {2, 0, 0, 0, 0}},
		Histogram: h.Buckets(), Latency: h.Summary()}
	for _, res := range []*Result{r, {}} {
		var b bytes.Buffer
		if err := WriteSVG(&b, res); err != nil {
			t.Fatal(err)
		}
		d := xml.NewDecoder(&b)
		for {
			_, err := d.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("not well-formed XML: %v", err)
			}
		}
	}
	var b bytes.Buffer
	_ = WriteSVG(&b, r)
	for _, want := range []string{"<polyline", "<rect x=", "&lt;&amp;&gt;", "p99"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("SVG lacks %q", want)
		}
	}
}

func TestNiceTicks(t *testing.T) {
	for _, c := range []struct {
		top  float64
		last float64
	}{{0, 1}, {1, 1}, {7, 8}, {95, 100}, {2725, 3000}, {0.3, 0.3}} {
		ticks := niceTicks(c.top)
		if got := ticks[len(ticks)-1]; got < c.top || got-c.last > 1e-9 || c.last-got > 1e-9 {
			t.Errorf("niceTicks(%v) = %v, want last %v", c.top, ticks, c.last)
		}
	}
}
