// Package goldendoc checks that PROTOCOL.md carries a package's golden
// vectors as they are: a client written from the document alone tests
// against that copy.
package goldendoc

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// Check fails t unless the file at path (a package's testdata) appears
// whole, in a code block, in the PROTOCOL.md one directory up.
func Check(t testing.TB, path string) {
	t.Helper()
	vectors, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join("..", "PROTOCOL.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(doc, append([]byte("```\n"), vectors...)) {
		t.Fatalf("PROTOCOL.md appendix B does not hold %s as it is: copy the file there", path)
	}
}
