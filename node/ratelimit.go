package node

// tokenBucket admits up to rate events a second, with a burst of one
// second's worth. The node's is used under n.mu (admitLocked).
type tokenBucket struct {
	tokens float64
	last   int64 // unix nanos of the last refill; 0 before the first take
}

// take spends a token if one is left at now.
func (b *tokenBucket) take(now int64, rate int) bool {
	if b.last == 0 {
		b.tokens = float64(rate)
	} else if elapsed := now - b.last; elapsed > 0 {
		b.tokens = min(float64(rate), b.tokens+float64(elapsed)*float64(rate)/1e9)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
