package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"syscall"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// collector is an OTLP/HTTP trace receiver that keeps every span.
type collector struct {
	mu    sync.Mutex
	spans []*tracepb.Span
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var req coltracepb.ExportTraceServiceRequest
	if r.URL.Path != "/v1/traces" || proto.Unmarshal(body, &req) != nil {
		http.Error(w, "not an OTLP trace export", http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			c.spans = append(c.spans, ss.Spans...)
		}
	}
	c.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

// A /fanout traced by two daemons reaches the collector as one rexi.fanout
// span and a rexi.job span per job, on either node, all in one trace with
// the fan-out as the jobs' parent.
func TestOTLPExportLinksFanoutAndJobs(t *testing.T) {
	col := &collector{}
	srv := httptest.NewServer(col)
	defer srv.Close()
	sf := secretFile(t, "s")
	b := startServe(t, "-secret-file", sf, "-name", "b", "-otlp-endpoint", srv.URL)
	a := startServe(t, "-secret-file", sf, "-name", "a", "-peers", "self,"+b.Addr, "-otlp-endpoint", srv.URL)
	waitPeers(t, a, 2)
	if body := a.Get("/fanout?handler=rows&q=4&n=2&rows=3"); bytes.Count([]byte(body), []byte(`"kind":"row"`)) != 12 {
		t.Fatalf("/fanout answered %s, want 12 rows", body)
	}
	for _, p := range []*proc{a, b} { // shutdown flushes the batched spans
		if code := p.Stop(syscall.SIGTERM); code != 0 {
			t.Fatalf("exit %d\n%s", code, p.Stderr)
		}
	}
	col.mu.Lock()
	defer col.mu.Unlock()
	var fan *tracepb.Span
	var jobs []*tracepb.Span
	for _, s := range col.spans {
		switch s.Name {
		case "rexi.fanout":
			if fan != nil {
				t.Fatalf("two rexi.fanout spans")
			}
			fan = s
		case "rexi.job":
			jobs = append(jobs, s)
		}
	}
	if fan == nil || len(jobs) != 8 {
		t.Fatalf("collected a fan-out span: %t and %d job spans, want one and 8\nstderr a:\n%s\nstderr b:\n%s", fan != nil, len(jobs), a.Stderr, b.Stderr)
	}
	for _, j := range jobs {
		if !bytes.Equal(j.TraceId, fan.TraceId) || !bytes.Equal(j.ParentSpanId, fan.SpanId) {
			t.Fatalf("job span trace %x parent %x, want trace %x parent %x", j.TraceId, j.ParentSpanId, fan.TraceId, fan.SpanId)
		}
	}
}
