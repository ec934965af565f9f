package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"sync"
)

const (
	ranges = 64 // Q; N is the number of nodes, 3
	nodes  = 3
)

// inbox is what the readers hand the caller: the ids whose INIT arrived,
// how many jobs finished (a reply or a last message) and how many rows
// arrived in this fan-out.
type inbox struct {
	mu    sync.Mutex
	inits []uint64
	done  int
	rows  int
	wake  chan struct{} // one pending wake-up: the caller is woken per batch
}

// coordinator runs fan-outs over one connection per node. Job (r, k) of a
// fan-out whose first id is base has id base + 3r + k and runs on node k.
type coordinator struct {
	conns  []net.Conn
	in     inbox
	failed chan error
	out    [][]byte
	last   uint64 // the last id used
}

func newCoordinator(conns []net.Conn) *coordinator {
	c := &coordinator{
		conns:  conns,
		in:     inbox{wake: make(chan struct{}, 1)},
		failed: make(chan error, len(conns)), // room for every reader: none blocks after we return
		out:    make([][]byte, len(conns)),
	}
	for _, conn := range conns {
		go c.read(conn)
	}
	return c
}

// begin starts a fan-out: every node gets its 64 requests of kind in one
// write. It returns the fan-out's first id.
func (c *coordinator) begin(kind byte) (uint64, error) {
	base := c.last + 1
	c.last += ranges * nodes
	c.in.mu.Lock()
	c.in.done, c.in.rows = 0, 0
	c.in.mu.Unlock()
	for k := range c.conns {
		b := c.out[k][:0]
		for r := range ranges {
			b = appendFrame(b, base+uint64(r*nodes+k), kind, reqBytes)
		}
		c.out[k] = b
	}
	for k, conn := range c.conns {
		if _, err := conn.Write(c.out[k]); err != nil {
			return 0, err
		}
	}
	return base, nil
}

// next waits for the readers' next batch and returns the INITs it holds
// (appended to inits) and how many jobs are done.
func (c *coordinator) next(inits []uint64) ([]uint64, int, error) {
	select {
	case <-c.in.wake:
	case err := <-c.failed:
		return nil, 0, fmt.Errorf("a node's connection failed: %w", err)
	}
	c.in.mu.Lock()
	inits = append(inits, c.in.inits...)
	c.in.inits = c.in.inits[:0]
	done := c.in.done
	c.in.mu.Unlock()
	return inits, done, nil
}

// cast is one W-cast fan-out: done when all 192 replies are in.
func (c *coordinator) cast() error {
	if _, err := c.begin(kindCast); err != nil {
		return err
	}
	for {
		_, done, err := c.next(nil)
		if err != nil || done == ranges*nodes {
			return err
		}
	}
}

// stream is one W-stream fan-out: the first INIT per range is chosen and
// the others get CANCEL at once; once every range is covered the chosen
// jobs get START; done when their 64 last messages are in. INITs of an
// earlier fan-out's jobs, still arriving, get CANCEL too.
func (c *coordinator) stream() error {
	base, err := c.begin(kindDoit)
	if err != nil {
		return err
	}
	var chosen [ranges]uint64 // the id started for each range
	covered, started := 0, false
	var inits []uint64
	for {
		var done int
		inits, done, err = c.next(inits[:0])
		if err != nil {
			return err
		}
		for k := range c.out {
			c.out[k] = c.out[k][:0]
		}
		for _, id := range inits {
			k := (id - 1) % nodes
			if r := (id - base) / nodes; id >= base && chosen[r] == 0 {
				chosen[r] = id
				covered++
				continue
			}
			c.out[k] = appendFrame(c.out[k], id, kindCancel, 0)
		}
		if covered == ranges && !started {
			started = true
			for _, id := range chosen {
				k := (id - 1) % nodes
				c.out[k] = appendFrame(c.out[k], id, kindStart, 0)
			}
		}
		if err := c.flush(); err != nil {
			return err
		}
		if done == ranges {
			c.in.mu.Lock()
			got := c.in.rows
			c.in.mu.Unlock()
			if got != ranges*rows {
				return fmt.Errorf("%d rows arrived, want %d", got, ranges*rows)
			}
			return nil
		}
	}
}

// flush writes what the caller queued for each node, one write per node.
func (c *coordinator) flush() error {
	for k, b := range c.out {
		if len(b) > 0 {
			if _, err := c.conns[k].Write(b); err != nil {
				return err
			}
		}
	}
	return nil
}

// read is a connection's reader: it acknowledges rows on receipt, one
// write of coalesced ACKs per read, and hands INITs and finished jobs to
// the caller, waking it once per read. It ends when the connection does.
func (c *coordinator) read(conn net.Conn) {
	buf := make([]byte, 256<<10)
	var acks []byte
	var inits []uint64
	end := 0
	for {
		n, err := conn.Read(buf[end:])
		if err != nil {
			c.failed <- err
			return
		}
		end += n
		start, done, rowsIn := 0, 0, 0
		acks, inits = acks[:0], inits[:0]
		var rowID uint64 // the job whose rows are being counted
		rowN := 0
		for end-start >= 4 {
			m := int(binary.BigEndian.Uint32(buf[start:]))
			if end-start < 4+m {
				break
			}
			id, kind := binary.BigEndian.Uint64(buf[start+4:]), buf[start+12]
			start += 4 + m
			switch kind {
			case kindReply, kindLast:
				done++
			case kindInit:
				inits = append(inits, id)
			case kindRow:
				rowsIn++
				if id != rowID && rowN > 0 {
					acks = appendAck(acks, rowID, rowN)
					rowN = 0
				}
				rowID = id
				rowN++
			}
		}
		if rowN > 0 {
			acks = appendAck(acks, rowID, rowN)
		}
		end = copy(buf, buf[start:end])
		if len(acks) > 0 {
			if _, err := conn.Write(acks); err != nil {
				c.failed <- err
				return
			}
		}
		c.in.mu.Lock()
		c.in.inits = append(c.in.inits, inits...)
		c.in.done += done
		c.in.rows += rowsIn
		c.in.mu.Unlock()
		select {
		case c.in.wake <- struct{}{}:
		default:
		}
	}
}

// appendAck appends an ACK of n rows for id.
func appendAck(b []byte, id uint64, n int) []byte {
	b = binary.BigEndian.AppendUint32(b, headerLen-4+4)
	b = binary.BigEndian.AppendUint64(b, id)
	b = append(b, kindAck)
	return binary.BigEndian.AppendUint32(b, uint32(n))
}
