package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/1e6) }

// cpuPerFanout is the CPU of all four processes per fan-out, in ms.
func cpuPerFanout(r result) float64 {
	if r.TotalRuns == 0 {
		return 0
	}
	return (r.CPUSeconds + r.NodeCPU) * 1000 / float64(r.TotalRuns)
}

// report prints and writes the table: one column per system (names, in
// the order of each round's rows), then each rexi variant's ratio to the
// gRPC baseline (the system at index baseline) and, for the variants after
// the first, to the first. With several rounds each cell is the median of
// the rounds' figures (a ratio: of each round's ratio, so that both sides
// of it come from one sitting) and leaked workers are summed; each
// round's own table follows. The text also goes to stdout.
func report(stdout io.Writer, names []string, baseline int, runs []map[string][]result, workloads []string, out string) error {
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "Run %s on %s (%d cores, %s/%s, %s); 3 node processes + 1 coordinator process per system, on 127.0.0.1.",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), host, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version())
	if len(runs) > 1 {
		fmt.Fprintf(&b, " Medians of %d rounds (a ratio: the median of each round's ratio; leaked workers: the sum); each round's table follows.", len(runs))
	}
	b.WriteString("\n\n")
	table(&b, names, baseline, runs, workloads)
	if len(runs) > 1 {
		for k := range runs {
			fmt.Fprintf(&b, "\nRound %d:\n\n", k+1)
			table(&b, names, baseline, runs[k:k+1], workloads)
		}
	}
	fmt.Fprint(stdout, b.String())
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "compare.md"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	js, _ := json.MarshalIndent(summaryJSON(names, runs), "", "  ")
	if err := os.WriteFile(filepath.Join(out, "compare.json"), js, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, "latency.svg"), []byte(plot(names, baseline, merged(runs))), 0o644)
}

// median of vs (the mean of the middle two for an even count).
func median(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// table writes the markdown table of runs (one round or several: see
// report).
func table(b *strings.Builder, names []string, baseline int, runs []map[string][]result, workloads []string) {
	var variants []int // the rexi systems, in order
	for i := range names {
		if i != baseline {
			variants = append(variants, i)
		}
	}
	head := []string{"workload", "metric"}
	head = append(head, names...)
	for _, i := range variants {
		head = append(head, names[i]+" / gRPC")
	}
	for _, i := range variants[1:] {
		head = append(head, names[i]+" / "+names[variants[0]])
	}
	fmt.Fprintf(b, "| %s |\n|%s\n", strings.Join(head, " | "), strings.Repeat("---|", len(head)))
	row := func(w, metric string, val func(result) float64, show func(float64) string) {
		over := func(f func(rs []result) float64) float64 {
			vs := make([]float64, len(runs))
			for k, r := range runs {
				vs[k] = f(r[w])
			}
			return median(vs)
		}
		ratioOf := func(i, base int) string {
			for _, r := range runs {
				if val(r[w][base]) == 0 {
					return "—"
				}
			}
			return fmt.Sprintf("%.3f", over(func(rs []result) float64 { return val(rs[i]) / val(rs[base]) }))
		}
		cells := []string{w, metric}
		for i := range names {
			cells = append(cells, show(over(func(rs []result) float64 { return val(rs[i]) })))
		}
		for _, i := range variants {
			cells = append(cells, ratioOf(i, baseline))
		}
		for _, i := range variants[1:] {
			cells = append(cells, ratioOf(i, variants[0]))
		}
		fmt.Fprintf(b, "| %s |\n", strings.Join(cells, " | "))
	}
	msOf := func(f func(result) time.Duration) func(result) float64 {
		return func(r result) float64 { return float64(f(r)) }
	}
	showMs := func(v float64) string { return ms(time.Duration(v)) }
	show3 := func(v float64) string { return fmt.Sprintf("%.3f", v) }
	for _, w := range workloads {
		if _, ok := runs[0][w]; !ok {
			continue
		}
		if w == "w-conc" {
			row(w, "fan-outs/s", func(r result) float64 { return r.PerSecond }, func(v float64) string { return fmt.Sprintf("%.0f", v) })
			row(w, "CPU ms / fan-out (all processes)", func(r result) float64 {
				return (r.CPUSeconds + r.NodeCPU) * 1000 / math.Max(1, float64(r.Fanouts))
			}, show3)
			continue
		}
		row(w, "p50", msOf(func(r result) time.Duration { return r.P50 }), showMs)
		row(w, "p99", msOf(func(r result) time.Duration { return r.P99 }), showMs)
		row(w, "mean", msOf(func(r result) time.Duration { return r.Mean }), showMs)
		if w == "w-reap" {
			cells := []string{w, "leaked workers"}
			for i := range names {
				var leaked int64
				for _, r := range runs {
					leaked += r[w][i].Leaked
				}
				cells = append(cells, fmt.Sprint(leaked))
			}
			for range len(head) - len(cells) {
				cells = append(cells, "")
			}
			fmt.Fprintf(b, "| %s |\n", strings.Join(cells, " | "))
		} else {
			row(w, "CPU ms / fan-out (all processes)", cpuPerFanout, show3)
		}
	}
}

// merged is every round's samples together, per workload and system, for
// the plot.
func merged(runs []map[string][]result) map[string][]result {
	out := map[string][]result{}
	for w, rs := range runs[0] {
		row := make([]result, len(rs))
		for i := range rs {
			for _, r := range runs {
				row[i].Samples = append(row[i].Samples, r[w][i].Samples...)
			}
		}
		out[w] = row
	}
	return out
}

// summaryJSON drops the raw samples: one entry per round, each workload →
// system → result.
func summaryJSON(names []string, runs []map[string][]result) []map[string]map[string]result {
	var out []map[string]map[string]result
	for _, results := range runs {
		round := map[string]map[string]result{}
		for w, rs := range results {
			round[w] = map[string]result{}
			for i, r := range rs {
				r.Samples = nil
				round[w][names[i]] = r
			}
		}
		out = append(out, round)
	}
	return out
}

// plot draws latency CDFs (log-scale x) for W-cast, W-stream and W-reap,
// every system, as an SVG.
func plot(names []string, baseline int, results map[string][]result) string {
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
	colors := []string{"#d62728", "#ff9896", "#9467bd", "#2ca02c", "#1f77b4"}
	color := func(i int) string {
		switch {
		case i == baseline:
			return colors[len(colors)-1] // gRPC keeps its blue
		case i > baseline:
			i-- // the variants share the other colours, in order
		}
		return colors[i%(len(colors)-1)]
	}
	for pi, wl := range panels {
		y0 := pi * h
		pair := results[wl] // one result per system
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
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`, color(i), pts.String())
			fmt.Fprintf(&b, `<text x="%d" y="%.0f" fill="%s">%s</text>`, w-pad-200, py(0.3)+16*float64(i), color(i), names[i])
		}
	}
	b.WriteString("</svg>\n")
	return b.String()
}
