package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/1e6) }

func ratio(a, b float64) string {
	if b == 0 {
		return "—"
	}
	return fmt.Sprintf("%.3f", a/b)
}

// cpuPerFanout is the CPU of all four processes per fan-out, in ms.
func cpuPerFanout(r result) float64 {
	if r.TotalRuns == 0 {
		return 0
	}
	return (r.CPUSeconds + r.NodeCPU) * 1000 / float64(r.TotalRuns)
}

func report(results map[string][2]result, workloads []string, out string) error {
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "Run %s on %s (%d cores, %s/%s, %s); 3 node processes + 1 coordinator process per system, on 127.0.0.1.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), host, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version())
	fmt.Fprintf(&b, "| workload | metric | rexi | gRPC-go | rexi / gRPC |\n|---|---|---|---|---|\n")
	for _, w := range workloads {
		p, ok := results[w]
		if !ok {
			continue
		}
		o, g := p[0], p[1]
		if w == "w-conc" {
			fmt.Fprintf(&b, "| %s | fan-outs/s | %.0f | %.0f | %s |\n", w, o.PerSecond, g.PerSecond, ratio(o.PerSecond, g.PerSecond))
			fmt.Fprintf(&b, "| %s | CPU ms / fan-out (all processes) | %.3f | %.3f | %s |\n", w,
				(o.CPUSeconds+o.NodeCPU)*1000/math.Max(1, float64(o.Fanouts)), (g.CPUSeconds+g.NodeCPU)*1000/math.Max(1, float64(g.Fanouts)),
				ratio((o.CPUSeconds+o.NodeCPU)/math.Max(1, float64(o.Fanouts)), (g.CPUSeconds+g.NodeCPU)/math.Max(1, float64(g.Fanouts))))
			continue
		}
		fmt.Fprintf(&b, "| %s | p50 | %s | %s | %s |\n", w, ms(o.P50), ms(g.P50), ratio(float64(o.P50), float64(g.P50)))
		fmt.Fprintf(&b, "| %s | p99 | %s | %s | %s |\n", w, ms(o.P99), ms(g.P99), ratio(float64(o.P99), float64(g.P99)))
		fmt.Fprintf(&b, "| %s | mean | %s | %s | %s |\n", w, ms(o.Mean), ms(g.Mean), ratio(float64(o.Mean), float64(g.Mean)))
		if w == "w-reap" {
			fmt.Fprintf(&b, "| %s | leaked workers | %d | %d | |\n", w, o.Leaked, g.Leaked)
		} else {
			fmt.Fprintf(&b, "| %s | CPU ms / fan-out (all processes) | %.3f | %.3f | %s |\n", w, cpuPerFanout(o), cpuPerFanout(g), ratio(cpuPerFanout(o), cpuPerFanout(g)))
		}
	}
	fmt.Print(b.String())
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "compare.md"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	js, _ := json.MarshalIndent(summaryJSON(results), "", "  ")
	if err := os.WriteFile(filepath.Join(out, "compare.json"), js, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, "latency.svg"), []byte(plot(results)), 0o644)
}

// summaryJSON drops the raw samples.
func summaryJSON(results map[string][2]result) map[string][2]result {
	out := map[string][2]result{}
	for w, p := range results {
		p[0].Samples, p[1].Samples = nil, nil
		out[w] = p
	}
	return out
}

// plot draws latency CDFs (log-scale x) for W-cast, W-stream and W-reap,
// rexi against gRPC, as an SVG.
func plot(results map[string][2]result) string {
	const w, h, pad = 900, 300, 50
	var panels []string
	for _, wl := range []string{"w-cast", "w-stream", "w-reap"} {
		if _, ok := results[wl]; ok {
			panels = append(panels, wl)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`, w, h*len(panels))
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`)
	colors := [2]string{"#d62728", "#1f77b4"}
	names := [2]string{"rexi", "gRPC-go"}
	for pi, wl := range panels {
		y0 := pi * h
		pair := results[wl]
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, r := range pair {
			for _, s := range r.Samples {
				v := math.Log10(float64(s) / 1e3) // µs
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
		lo, hi = math.Floor(lo), math.Ceil(hi)
		if hi <= lo {
			hi = lo + 1
		}
		px := func(v float64) float64 { return pad + (v-lo)/(hi-lo)*(w-2*pad) }
		py := func(p float64) float64 { return float64(y0) + h - pad - p*(h-2*pad) }
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="14">%s latency per fan-out (CDF)</text>`, pad, y0+20, wl)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.0f" x2="%d" y2="%.0f" stroke="black"/>`, pad, py(0), w-pad, py(0))
		fmt.Fprintf(&b, `<line x1="%d" y1="%.0f" x2="%d" y2="%.0f" stroke="black"/>`, pad, py(0), pad, py(1))
		for d := lo; d <= hi; d++ {
			label := fmt.Sprintf("%g µs", math.Pow(10, d))
			if d >= 3 {
				label = fmt.Sprintf("%g ms", math.Pow(10, d-3))
			}
			fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#ddd"/><text x="%.0f" y="%.0f" text-anchor="middle">%s</text>`,
				px(d), py(0), px(d), py(1), px(d), py(0)+15, label)
		}
		for _, p := range []float64{0, 0.5, 0.99} {
			fmt.Fprintf(&b, `<line x1="%d" y1="%.0f" x2="%d" y2="%.0f" stroke="#ddd"/><text x="%d" y="%.0f" text-anchor="end">p%g</text>`,
				pad, py(p), w-pad, py(p), pad-4, py(p)+4, p*100)
		}
		for i, r := range pair {
			s := slices.Clone(r.Samples)
			slices.Sort(s)
			var pts strings.Builder
			step := max(1, len(s)/400)
			for j := 0; j < len(s); j += step {
				fmt.Fprintf(&pts, "%.1f,%.1f ", px(math.Log10(float64(s[j])/1e3)), py(float64(j+1)/float64(len(s))))
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`, colors[i], pts.String())
			fmt.Fprintf(&b, `<text x="%d" y="%.0f" fill="%s">%s</text>`, w-pad-120, py(0.3)+16*float64(i), colors[i], names[i])
		}
	}
	b.WriteString("</svg>\n")
	return b.String()
}
