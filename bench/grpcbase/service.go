// Command grpcbase is the gRPC-go baseline of rexi's anchor workloads: the
// same W-cast, W-stream, W-reap and W-conc with the same semantics, on
// gRPC-go with default options (HTTP/2, protobuf messages). It lives in its
// own module so that rexi does not depend on gRPC.
//
//	grpcbase serve -listen 127.0.0.1:0 -live 127.0.0.1:0   a worker node
//	grpcbase bench -nodes a,b,c -live a,b,c -workload w-stream -json
//
// The service is declared by hand (no protoc): Cast is a unary call and
// Stream a bidirectional stream, both carrying google.protobuf.BytesValue.
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Stream messages, first byte of BytesValue.value:
//
//	client → server: 'J' + rows u32 + size u32 (the job), 'S' start,
//	                 'C' cancel, 'A' + n u32 (ack n rows)
//	server → client: 'I' (init: waiting for S or C), 'R' + row, 'L' (last)
const window = 5

type server struct {
	live    atomic.Int64 // handlers running, for W-reap
	started atomic.Int64 // handlers started, ever
	idleAt  atomic.Int64 // unix nanos when live last reached 0
	mu      sync.Mutex
	zero    chan struct{} // closed when live reaches 0; nil without waiters
}

func (s *server) start() {
	s.live.Add(1)
	s.started.Add(1)
}

func (s *server) done() {
	if s.live.Add(-1) != 0 {
		return
	}
	s.idleAt.Store(time.Now().UnixNano()) // as it happens, like rexi's node
	s.mu.Lock()
	if s.zero != nil {
		close(s.zero)
		s.zero = nil
	}
	s.mu.Unlock()
}

// Live, Started and WaitNoLive make the server a live.Counter.
func (s *server) Live() int64    { return s.live.Load() }
func (s *server) Started() int64 { return s.started.Load() }

// IdleSince is when the last handler ended; false while one runs.
func (s *server) IdleSince() (time.Time, bool) {
	at := s.idleAt.Load()
	if s.live.Load() != 0 || at == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, at), true
}

// WaitNoLive blocks until no handler runs or ctx ends.
func (s *server) WaitNoLive(ctx context.Context) error {
	for {
		s.mu.Lock()
		if s.live.Load() == 0 {
			s.mu.Unlock()
			return nil
		}
		if s.zero == nil {
			s.zero = make(chan struct{})
		}
		ch := s.zero
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

var serviceDesc = grpc.ServiceDesc{
	ServiceName: "rexibench.Worker",
	HandlerType: (*any)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "Cast", Handler: castHandler}},
	Streams: []grpc.StreamDesc{{StreamName: "Stream", Handler: streamHandler,
		ServerStreams: true, ClientStreams: true}},
	Metadata: "rexibench.proto",
}

// castHandler echoes the request (W-cast: a 64-byte reply).
func castHandler(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
	s := srv.(*server)
	s.start()
	defer s.done()
	in := new(wrapperspb.BytesValue)
	if err := dec(in); err != nil {
		return nil, err
	}
	return wrapperspb.Bytes(in.Value), nil
}

// streamHandler is the fabric_streams worker: INIT, wait for START or
// CANCEL, rows with at most `window` un-acked, LAST.
func streamHandler(srv any, st grpc.ServerStream) error {
	s := srv.(*server)
	s.start()
	defer s.done()
	job := new(wrapperspb.BytesValue)
	if err := st.RecvMsg(job); err != nil {
		return err
	}
	if len(job.Value) != 9 || job.Value[0] != 'J' {
		return errors.New("bad job message")
	}
	rows := int(binary.BigEndian.Uint32(job.Value[1:]))
	size := int(binary.BigEndian.Uint32(job.Value[5:]))
	if err := st.SendMsg(wrapperspb.Bytes([]byte{'I'})); err != nil {
		return err
	}
	in := new(wrapperspb.BytesValue)
	if err := st.RecvMsg(in); err != nil {
		return err
	}
	if len(in.Value) == 0 || in.Value[0] != 'S' {
		return nil // cancelled
	}
	row := make([]byte, 1+size)
	row[0] = 'R'
	unacked := 0
	for i := 0; i < rows; i++ {
		for unacked >= window {
			if err := st.RecvMsg(in); err != nil {
				return err
			}
			if len(in.Value) == 5 && in.Value[0] == 'A' {
				unacked -= int(binary.BigEndian.Uint32(in.Value[1:]))
			}
		}
		if err := st.SendMsg(wrapperspb.Bytes(row)); err != nil {
			return err
		}
		unacked++
	}
	return st.SendMsg(wrapperspb.Bytes([]byte{'L'}))
}
