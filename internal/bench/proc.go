package bench

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// probe reads a server's resident memory and CPU time: from /proc/<pid> when
// the pid is known (same host), else from the Prometheus process metrics at
// metricsURL.
type probe struct {
	pid        int
	metricsURL string
	client     *http.Client
}

// usage is one reading.
type usage struct {
	rss int64   // bytes
	cpu float64 // user+system seconds since the process started
}

func (p *probe) read(ctx context.Context) (usage, error) {
	if p.pid > 0 {
		return procUsage(p.pid)
	}
	if p.metricsURL == "" {
		return usage{}, fmt.Errorf("no pid and no metrics URL")
	}
	return metricsUsage(ctx, p.client, p.metricsURL)
}

func (p *probe) source() string {
	if p.pid > 0 {
		return fmt.Sprintf("/proc/%d", p.pid)
	}
	return p.metricsURL
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat. It
// is 100 on every Linux architecture Go supports.
const clockTicks = 100

func procUsage(pid int) (usage, error) {
	var u usage
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, err
	}
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v) // "12345 kB"
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return u, fmt.Errorf("VmRSS: %w", err)
			}
			u.rss = kb << 10
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return u, err
	}
	cpu, err := parseStatCPU(string(stat))
	u.cpu = cpu
	return u, err
}

// parseStatCPU returns utime+stime in seconds from a /proc/<pid>/stat line.
// The command name in parentheses may hold spaces, so fields are counted from
// the last ')'.
func parseStatCPU(stat string) (float64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed stat line")
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("malformed stat line")
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("malformed stat times")
	}
	return float64(ut+st) / clockTicks, nil
}

func metricsUsage(ctx context.Context, c *http.Client, url string) (usage, error) {
	var u usage
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return u, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return u, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return u, fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
	}
	found := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		switch name {
		case "process_resident_memory_bytes":
			v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
			if err == nil {
				u.rss = int64(v)
				found++
			}
		case "process_cpu_seconds_total":
			v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
			if err == nil {
				u.cpu = v
				found++
			}
		}
	}
	if err := sc.Err(); err != nil {
		return u, err
	}
	if found < 2 {
		return u, fmt.Errorf("%s has no process_resident_memory_bytes and process_cpu_seconds_total", url)
	}
	return u, nil
}
