package bench

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"math"
)

// Chart geometry, in SVG user units.
const (
	svgW      = 960
	svgH      = 760
	padL      = 80
	padR      = 50
	plotW     = svgW - padL - padR
	timeTop   = 90
	timeH     = 260
	histTop   = 450
	histH     = 240
	colorP50  = "#1f77b4"
	colorP99  = "#d62728"
	colorMax  = "#999999"
	colorRate = "#2ca02c"
)

// WriteSVG draws r as a standalone SVG: latency p50/p99/max and deliveries
// per second over the publishing phase, and the histogram of every
// latency on a logarithmic axis.
func WriteSVG(w io.Writer, r *Result) error {
	bw := bufio.NewWriter(w)
	p := func(format string, args ...any) { fmt.Fprintf(bw, format, args...) }
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", svgW, svgH, svgW, svgH)
	p(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	p(`<text x="%d" y="28" font-size="18" font-weight="bold">%s</text>`+"\n", padL, esc(fmt.Sprintf("herald bench: %d streams, %s, %.0f events/s for %.0f s", r.Connections, r.Layout, r.Rate, r.Duration)))
	p(`<text x="%d" y="50">%s</text>`+"\n", padL, esc(fmt.Sprintf("%s · delivered %d of %d (%.0f/s), lost %d, duplicates %d · latency p50 %s, p99 %s, max %s",
		r.Target, r.Delivered, r.Expected, r.DeliveredPerSec, r.Lost, r.Duplicates, ms(r.Latency.P50), ms(r.Latency.P99), ms(r.Latency.Max))))
	timeChart(p, r.Timeline)
	histChart(p, r.Histogram)
	p("</svg>\n")
	return bw.Flush()
}

func timeChart(p func(string, ...any), tl []Second) {
	p(`<text x="%d" y="%d" font-size="14" font-weight="bold">Latency over time (ms, left) and deliveries per second (green, right)</text>`+"\n", padL, timeTop-12)
	frame(p, timeTop, timeH)
	if len(tl) == 0 {
		p(`<text x="%d" y="%d">no events delivered</text>`+"\n", padL+10, timeTop+timeH/2)
		return
	}
	var yMax float64
	var rMax uint64
	for _, s := range tl {
		yMax = max(yMax, s.Max)
		rMax = max(rMax, s.Delivered)
	}
	yTicks := niceTicks(yMax)
	yTop := yTicks[len(yTicks)-1]
	rTicks := niceTicks(float64(rMax))
	rTop := rTicks[len(rTicks)-1]
	n := float64(len(tl))
	x := func(sec float64) float64 { return padL + sec/n*plotW }
	y := func(v, top float64) float64 { return timeTop + timeH - v/top*timeH }
	for _, t := range yTicks {
		p(`<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#eee"/>`+"\n", padL, padL+plotW, y(t, yTop), y(t, yTop))
		p(`<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", padL-6, y(t, yTop)+4, num(t))
	}
	for _, t := range rTicks {
		p(`<text x="%d" y="%.1f" fill="%s">%s</text>`+"\n", padL+plotW+4, y(t, rTop)+4, colorRate, num(t))
	}
	for _, t := range niceTicks(n) {
		p(`<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x(t), timeTop+timeH+16, num(t))
	}
	p(`<text x="%d" y="%d" text-anchor="middle">seconds since publishing began</text>`+"\n", padL+plotW/2, timeTop+timeH+34)
	line := func(color string, width float64, val func(Second) float64, top float64) {
		p(`<polyline fill="none" stroke="%s" stroke-width="%.1f" points="`, color, width)
		for _, s := range tl {
			p("%.1f,%.1f ", x(float64(s.Second)+0.5), y(val(s), top))
		}
		p(`"/>` + "\n")
	}
	line(colorRate, 1, func(s Second) float64 { return float64(s.Delivered) }, rTop)
	line(colorMax, 1, func(s Second) float64 { return s.Max }, yTop)
	line(colorP99, 2, func(s Second) float64 { return s.P99 }, yTop)
	line(colorP50, 2, func(s Second) float64 { return s.P50 }, yTop)
	legend(p, padL+10, timeTop+16, []string{colorP50, colorP99, colorMax, colorRate}, []string{"p50", "p99", "max", "deliveries/s"})
}

func histChart(p func(string, ...any), buckets []Bucket) {
	p(`<text x="%d" y="%d" font-size="14" font-weight="bold">Latency histogram (events per bucket; ms, logarithmic)</text>`+"\n", padL, histTop-12)
	frame(p, histTop, histH)
	if len(buckets) == 0 {
		return
	}
	lo := math.Max(float64(buckets[0].LowUS), 1)
	last := buckets[len(buckets)-1]
	hi := float64(last.LowUS + last.WidthUS)
	// Whole decades, so the ticks fall on 0.01, 0.1, 1, 10 … ms.
	lo = math.Pow(10, math.Floor(math.Log10(lo)))
	hi = math.Pow(10, math.Ceil(math.Log10(hi)))
	x := func(us float64) float64 {
		return padL + (math.Log10(math.Max(us, lo))-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))*plotW
	}
	var cMax uint64
	for _, b := range buckets {
		cMax = max(cMax, b.Count)
	}
	cTicks := niceTicks(float64(cMax))
	cTop := cTicks[len(cTicks)-1]
	y := func(c float64) float64 { return histTop + histH - c/cTop*histH }
	for _, t := range cTicks {
		p(`<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#eee"/>`+"\n", padL, padL+plotW, y(t), y(t))
		p(`<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", padL-6, y(t)+4, num(t))
	}
	for d := lo; d <= hi*1.001; d *= 10 {
		p(`<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#eee"/>`+"\n", x(d), x(d), histTop, histTop+histH)
		p(`<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x(d), histTop+histH+16, num(d/1000))
	}
	p(`<text x="%d" y="%d" text-anchor="middle">publish → receive latency (ms)</text>`+"\n", padL+plotW/2, histTop+histH+34)
	for _, b := range buckets {
		x0, x1 := x(float64(b.LowUS)), x(float64(b.LowUS+b.WidthUS))
		p(`<rect x="%.2f" y="%.1f" width="%.2f" height="%.1f" fill="%s"/>`+"\n", x0, y(float64(b.Count)), math.Max(x1-x0, 0.8), float64(histH)-(y(float64(b.Count))-histTop), colorP50)
	}
}

func frame(p func(string, ...any), top, h int) {
	p(`<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#333"/>`+"\n", padL, top, plotW, h)
}

func legend(p func(string, ...any), x, y int, colors, names []string) {
	for i := range colors {
		p(`<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s" stroke-width="3"/>`, x, x+18, y-4, y-4, colors[i])
		p(`<text x="%d" y="%d">%s</text>`+"\n", x+22, y, names[i])
		x += 40 + 7*len(names[i])
	}
}

// niceTicks returns 0 and evenly spaced round values (1, 2 or 5 × 10^k apart)
// up to the first one at or above top.
func niceTicks(top float64) []float64 {
	if top <= 0 {
		return []float64{0, 1}
	}
	raw := top / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	ticks := []float64{0}
	for v := step; ; v += step {
		ticks = append(ticks, v)
		if v >= top*(1-1e-9) {
			return ticks
		}
	}
}

// num formats a tick label without trailing zeros.
func num(v float64) string {
	switch {
	case v >= 1e6 && math.Mod(v, 1e5) == 0:
		return fmt.Sprintf("%gM", v/1e6)
	case v >= 1e4 && math.Mod(v, 1e3) == 0:
		return fmt.Sprintf("%gk", v/1e3)
	}
	return fmt.Sprintf("%g", math.Round(v*1000)/1000)
}

func esc(s string) string { return html.EscapeString(s) }
