package coord

import (
	"errors"
	"math"
	"runtime"
	"sync"

	"github.com/rexi-go/rexi/frame"
)

const ringSize = uint64(math.MaxUint32) + 1

// StreamOptions configure Stream.
type StreamOptions struct {
	RecvOptions
	// Replace is called when a job fails (EXIT, node down, overload) and
	// its range has no live copy left — or, when the worker had delivered
	// rows, no copy that could carry on from them (the others, which would
	// start the range over, are cancelled). It returns jobs to submit in
	// its place, typically the same range on other nodes; failed.Rows tells
	// how many rows that worker delivered, so a replacement can resume
	// after them and no row arrives twice. Nil, or no jobs, means the fan-out
	// fails with ErrProgressImpossible.
	Replace func(failed WorkerInfo, cause error) ([]Job, error)
}

// Stream runs a streaming fan-out over the submitted jobs, like
// fabric_streams:start followed by the row loop. Each job serves the
// range of the ring in its Job.Range; the first worker to send STREAM_INIT
// for a range is chosen, later ones for a covered range get CANCEL at once,
// and when the chosen workers cover the ring exactly once they all get
// START. fn then sees every row (KindRow) and each chosen worker's LAST
// (KindLast); a job that answers with a REPLY instead of streaming serves
// its range with it (fn sees the first KindReply per range), so Stream
// runs a cast fan-out too, one answer per range. A failed job whose
// range has no copy left calls opts.Replace. Stream returns nil when every
// range's chosen worker has sent LAST.
func (co *Coordinator) Stream(opts StreamOptions, fn func(Message) error) error {
	defer runtime.KeepAlive(co) // no cleanup (reaping) while a receive loop runs
	s := co.s
	r := streamRuns.Get().(*streamRun)
	defer r.recycle()
	r.co, r.s, r.opts, r.fn = co, s, opts, fn
	return s.loop(opts.RecvOptions, r.pending, r.handle, func() bool { return false })
}

// streamRuns recycles Stream's state, its candidates' map and its scratch
// arrays: a fan-out that allocates little runs the garbage collector
// rarely (see buffers).
var streamRuns = sync.Pool{New: func() any { return &streamRun{cands: map[Range]int32{}} }}

// recycle empties r and hands it to the next Stream; maps and arrays grown
// past maxPooledJobs entries are left to the garbage collector.
func (r *streamRun) recycle() {
	cands := r.cands
	if len(cands) > maxPooledJobs || cap(r.ranges) > maxPooledJobs {
		return
	}
	clear(cands)
	*r = streamRun{cands: cands, fixed: r.fixed[:0], ranges: r.ranges[:0], candIdx: r.candIdx[:0], chosen: r.chosen[:0]}
	streamRuns.Put(r)
}

// streamRun is the state of one Stream call.
type streamRun struct {
	co    *Coordinator
	s     *state
	opts  StreamOptions
	fn    func(Message) error
	cands map[Range]int32 // candidates by range: the first INIT per range
	// candLen and fixedLen are the ring lengths covered by candidates and
	// by chosen (started or done) workers; a tiling is only searched for
	// once their sum could cover the ring.
	candLen, fixedLen uint64
	running           int // started and not done

	// Scratch arrays of layout and tiling, reused from call to call.
	fixed, ranges   []Range
	candIdx, chosen []int
}

func rangeLen(r Range) uint64 { return uint64(r.Hi) - uint64(r.Lo) + 1 }

func (r *streamRun) handle(m *Message) (bool, error) {
	i := int32(m.Worker.Slot)
	sl := &r.s.slots[i]
	switch m.Kind {
	case KindStreamInit:
		r.onInit(i)
		return false, r.maybeStart()
	case KindRow:
		if sl.st != slotStarted {
			return false, nil // only chosen workers stream
		}
		return false, r.fn(*m)
	case KindLast, KindReply: // a job that replies serves its range as a LAST without rows would
		if c, ok := r.cands[sl.rng]; ok && c == i && !sl.chosen {
			// A candidate ending before its START: it is no longer one,
			// and may serve its range below like any LAST without rows.
			delete(r.cands, sl.rng)
			r.candLen -= rangeLen(sl.rng)
		}
		switch {
		case sl.chosen:
			r.running--
		case !r.claimable(sl.rng):
			return false, nil // a redundant copy that finished without streaming
		default: // LAST without any row: chosen and done at once
			sl.chosen = true
			r.fixedLen += rangeLen(sl.rng)
		}
		if err := r.fn(*m); err != nil || r.s.closed { // Close in fn released the slots
			return false, err
		}
		// A range served without rows may be the piece that completes the
		// ring: the candidates waiting on the other ranges start now.
		if err := r.maybeStart(); err != nil {
			return false, err
		}
		return r.running == 0 && r.fixedLen == ringSize, nil
	case KindExit, KindNodeDown, KindOverload:
		return false, r.onFail(i, m.Worker, m.Err)
	}
	return false, nil
}

// onInit makes worker i a candidate, or cancels it when its range is
// already served.
func (r *streamRun) onInit(i int32) {
	sl := &r.s.slots[i]
	if sl.st != slotPending {
		return
	}
	if !r.claimable(sl.rng) {
		r.s.control(i, frame.TypeCancel)
		return
	}
	sl.st = slotCandidate
	r.cands[sl.rng] = i
	r.candLen += rangeLen(sl.rng)
}

// claimable: no candidate has exactly this range and no chosen worker
// overlaps it.
func (r *streamRun) claimable(rg Range) bool {
	if _, dup := r.cands[rg]; dup || r.fixedLen == ringSize {
		return false
	}
	if r.fixedLen == 0 {
		return true
	}
	for j := range r.s.slots {
		if sl := &r.s.slots[j]; sl.chosen && sl.st != slotFailed && sl.rng.overlaps(rg) {
			return false
		}
	}
	return true
}

// maybeStart starts the candidates that complete the ring, if they do.
func (r *streamRun) maybeStart() error {
	if r.fixedLen == ringSize || r.fixedLen+r.candLen < ringSize {
		return nil // complete already, or cannot be yet
	}
	fixed, ranges, cands := r.layout(false)
	chosen, ok := tiling(fixed, ranges, cands, r.chosen)
	r.chosen = chosen
	if !ok {
		return nil
	}
	for _, c := range chosen {
		i := int32(c)
		r.s.slots[i].chosen = true
		r.s.control(i, frame.TypeStart)
		r.fixedLen += rangeLen(r.s.slots[i].rng)
		r.running++
	}
	// The STARTs go out now, not after the rest of the batch: the workers
	// wait for them, and a batch that completes the ring often holds other
	// nodes' INITs still to be dispatched (and CANCELled below).
	r.s.pushQueued()
	// The ring is complete: every other candidate is redundant.
	for rg, i := range r.cands {
		if r.s.slots[i].st == slotCandidate {
			r.s.control(i, frame.TypeCancel)
		}
		delete(r.cands, rg)
	}
	r.candLen = 0
	return nil
}

// layout lists the chosen ranges, every job's range, and the indices of
// candidates (plus pending jobs when withPending), in r's scratch arrays:
// valid until the next call.
func (r *streamRun) layout(withPending bool) (fixed, ranges []Range, cands []int) {
	fixed, ranges, cands = r.fixed[:0], r.ranges[:0], r.candIdx[:0]
	defer func() { r.fixed, r.ranges, r.candIdx = fixed, ranges, cands }()
	for j := range r.s.slots {
		sl := &r.s.slots[j]
		ranges = append(ranges, sl.rng)
		switch {
		case sl.chosen && sl.st != slotFailed:
			fixed = append(fixed, sl.rng)
		case sl.st == slotCandidate, withPending && sl.st == slotPending:
			cands = append(cands, j)
		}
	}
	// Candidates in the order their INITs arrived come first.
	return fixed, ranges, cands
}

// onFail handles a job that ended without LAST.
func (r *streamRun) onFail(i int32, w WorkerInfo, cause error) error {
	sl := &r.s.slots[i]
	if c, ok := r.cands[sl.rng]; ok && c == i {
		delete(r.cands, sl.rng)
		r.candLen -= rangeLen(sl.rng)
	}
	if sl.chosen { // a hole opens in the ring
		r.fixedLen -= rangeLen(sl.rng)
		r.running--
		if sl.rows > 0 {
			r.retireCopies(i)
		}
	}
	for !r.progressPossible() {
		if r.opts.Replace == nil {
			return r.progressError(cause)
		}
		jobs, err := r.opts.Replace(w, cause)
		if err != nil {
			return errors.Join(err, cause)
		}
		if len(jobs) == 0 {
			return r.progressError(cause)
		}
		if _, err := r.co.Submit(jobs...); err != nil {
			return err
		}
	}
	return r.maybeStart()
}

// retireCopies cancels the copies of worker i's range not yet chosen
// (their STREAM_INIT was late): i delivered rows before it failed, and a
// copy would start the range over, so rows would arrive twice. Replace
// resumes the range instead, after failed.Rows.
func (r *streamRun) retireCopies(i int32) {
	rg := r.s.slots[i].rng
	if _, ok := r.cands[rg]; ok {
		delete(r.cands, rg)
		r.candLen -= rangeLen(rg)
	}
	for j := range r.s.slots {
		if o := &r.s.slots[j]; int32(j) != i && o.rng == rg && (o.st == slotPending || o.st == slotCandidate) {
			r.s.control(int32(j), frame.TypeCancel)
		}
	}
}

func (r *streamRun) progressPossible() bool {
	fixed, ranges, cands := r.layout(true)
	chosen, ok := tiling(fixed, ranges, cands, r.chosen)
	r.chosen = chosen
	return ok
}

func (r *streamRun) progressError(cause error) error {
	fixed, ranges, cands := r.layout(true)
	for _, c := range cands {
		fixed = append(fixed, ranges[c])
	}
	return &ProgressError{Missing: gaps(fixed), Cause: cause}
}

// pending lists, for a timeout, the workers the fan-out still waits for.
func (r *streamRun) pending() []WorkerInfo {
	var out []WorkerInfo
	complete := r.fixedLen == ringSize
	for j := range r.s.slots {
		st := r.s.slots[j].st
		if st == slotStarted || (!complete && (st == slotPending || st == slotCandidate)) {
			// started and not done, or still needed to complete the ring
			out = append(out, r.s.info(int32(j)))
		}
	}
	return out
}
