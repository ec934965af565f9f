package secure

import "testing"

// BenchmarkResponderFirstReply is a node's work for one unauthenticated
// NOISE message 1: start a handshake, read the message, write message 2.
// "prepared" is how the node runs it (Config.Prepared, once per node).
func BenchmarkResponderFirstReply(b *testing.B) {
	init, err := NewHandshake(Config{Key: key(1), Secret: secret}, true)
	if err != nil {
		b.Fatal(err)
	}
	msg1, _, err := init.Write(nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	cfg := Config{Key: key(100), Secret: secret}
	for _, c := range []struct {
		name string
		cfg  Config
	}{{"per-connection", cfg}, {"prepared", cfg.Prepared()}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				h, err := NewHandshake(c.cfg, false)
				if err != nil {
					b.Fatal(err)
				}
				if _, _, err := h.Read(nil, msg1); err != nil {
					b.Fatal(err)
				}
				if _, _, err := h.Write(nil, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
