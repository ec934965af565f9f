package main

import (
	"github.com/rexi-go/rexi/secure"
)

// securityFlags select the Noise keys of a daemon or a client command.
type securityFlags struct {
	keyFile, allowedFile, nodeKeysFile *string
	plaintext                          *bool
}

// addSecurityFlags registers -key-file, -node-keys-file and
// -insecure-plaintext, and for a node -allowed-keys-file.
func addSecurityFlags(fs flagSet, node bool) securityFlags {
	f := securityFlags{
		keyFile:      fs.String("key-file", "", "static private key file (rexinode keygen); default: a random key for this process, nothing derived from the secret"),
		nodeKeysFile: fs.String("node-keys-file", "", "file of node public keys (one per line): only nodes presenting one of them are accepted"),
		plaintext:    fs.Bool("insecure-plaintext", false, "no encryption: the secret authenticates, frames travel in clear (loopback benchmarks and debugging only; the other side must agree)"),
	}
	if node {
		f.allowedFile = fs.String("allowed-keys-file", "", "file of coordinator public keys (one per line): only coordinators presenting one of them are accepted")
	}
	return f
}

// keySet is what the key files hold. A daemon reads them once and gives
// the same keys to its node and to its client of the peers.
type keySet struct {
	key               secure.PrivateKey
	allowed, nodeKeys []secure.PublicKey
}

// keys reads the configured key files.
func (f securityFlags) keys() (ks keySet, err error) {
	if *f.keyFile != "" {
		if ks.key, err = secure.ReadPrivateKeyFile(*f.keyFile); err != nil {
			return keySet{}, fail(exitUsage, "key file: %v", err)
		}
	}
	if f.allowedFile != nil && *f.allowedFile != "" {
		if ks.allowed, err = secure.ReadPublicKeysFile(*f.allowedFile); err != nil {
			return keySet{}, fail(exitUsage, "allowed keys: %v", err)
		}
	}
	if *f.nodeKeysFile != "" {
		if ks.nodeKeys, err = secure.ReadPublicKeysFile(*f.nodeKeysFile); err != nil {
			return keySet{}, fail(exitUsage, "node keys: %v", err)
		}
	}
	return ks, nil
}
