package main

import (
	"fmt"
	"io"
	"os"

	"github.com/rexi-go/rexi/secure"
)

// keygen writes a static key pair: the private key to -out (mode 0600)
// and the public key to -out.pub, and prints the public key.
func keygen(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("keygen", stderr)
	out := fs.String("out", "", "private key file to write; the public key goes to the same name + .pub")
	force := fs.Bool("force", false, "overwrite existing files")
	if err := fs.parse(args); err != nil {
		return err
	}
	if *out == "" {
		return fail(exitUsage, "-out is required")
	}
	k, err := secure.GenerateKey()
	if err != nil {
		return err
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if *force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	for _, f := range []struct {
		path string
		mode os.FileMode
		data []byte
	}{{*out, 0o600, secure.MarshalPrivateKey(k)}, {*out + ".pub", 0o644, secure.MarshalPublicKey(k.Public())}} {
		fh, err := os.OpenFile(f.path, flags, f.mode)
		if err != nil {
			return fail(exitUsage, "%v (use -force to overwrite)", err)
		}
		_, err = fh.Write(f.data)
		if cerr := fh.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "wrote %s (private) and %s.pub\npublic key: %s\n", *out, *out, k.Public())
	return nil
}
