package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/rexi-go/rexi/internal/live"
)

// flagSet wraps flag.FlagSet so that every flag can also come from an
// environment variable (REXI_ + its name in upper case, dashes as
// underscores) and from a JSON config file, with flags > env > file >
// default.
type flagSet struct {
	*flag.FlagSet
	help io.Writer // where -h prints the flags
}

func newFlagSet(name string, stderr io.Writer) flagSet {
	fs := flag.NewFlagSet("rexinode "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned and printed once, by run
	return flagSet{fs, stderr}
}

func envName(flagName string) string {
	return "REXI_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parse applies, in order, the config file named by -config (or
// REXI_CONFIG), the environment, and args.
func (fs flagSet) parse(args []string) error {
	fs.VisitAll(func(f *flag.Flag) {
		f.Usage += " [$" + envName(f.Name) + "]"
	})
	configPath := os.Getenv("REXI_CONFIG")
	for i, a := range args {
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && name == "config" {
			if hasVal {
				configPath = val
			} else if i+1 < len(args) {
				configPath = args[i+1]
			}
		}
	}
	if configPath != "" {
		if err := fs.applyFile(configPath); err != nil {
			return fail(exitUsage, "config %s: %v", configPath, err)
		}
	}
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := os.LookupEnv(envName(f.Name)); ok && f.Name != "config" && envErr == nil {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = fail(exitUsage, "$%s=%q: %v", envName(f.Name), v, err)
			}
		}
	})
	if envErr != nil {
		return envErr
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(fs.help, "usage: %s [flags]\n\n", fs.Name())
			fs.SetOutput(fs.help)
			fs.PrintDefaults()
			return err
		}
		return fail(exitUsage, "%v (%s -h lists the flags)", err, fs.Name())
	}
	if fs.NArg() > 0 {
		return fail(exitUsage, "unexpected arguments %q", fs.Args())
	}
	return nil
}

// applyFile sets flags from a JSON object whose keys are flag names.
func (fs flagSet) applyFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // 16777216 stays an integer, not 1.6777216e+07
	if err := dec.Decode(&m); err != nil {
		return fmt.Errorf("not a JSON object of flag names: %w", err)
	}
	for k, v := range m {
		if fs.Lookup(k) == nil || k == "config" {
			return fmt.Errorf("unknown setting %q", k)
		}
		s := fmt.Sprint(v)
		if list, ok := v.([]any); ok {
			parts := make([]string, len(list))
			for i, x := range list {
				parts[i] = fmt.Sprint(x)
			}
			s = strings.Join(parts, ",")
		}
		if err := fs.Set(k, s); err != nil {
			typ, _ := flag.UnquoteUsage(fs.Lookup(k))
			if typ == "" {
				typ = "boolean"
			}
			return fmt.Errorf("%q: want a %s%s, got %v", k, typ, example[typ], v)
		}
	}
	return nil
}

// example shows a JSON value of a flag's type, for config errors.
var example = map[string]string{
	"duration": ` (a string such as "5s")`,
	"int":      " (a number such as 16777216)",
	"float":    " (a number such as 0.25)",
	"boolean":  " (true or false)",
	"string":   "",
}

// secretFlags registers -secret and -secret-file; resolve returns the
// secret, preferring the file.
type secretFlags struct {
	secret, file *string
}

func addSecretFlags(fs flagSet) secretFlags {
	return secretFlags{
		secret: fs.String("secret", "", "cluster shared secret (prefer -secret-file or the environment over the command line)"),
		file:   fs.String("secret-file", "", "file holding the cluster shared secret (trailing newline ignored)"),
	}
}

func (s secretFlags) resolve() ([]byte, error) {
	if *s.file != "" {
		b, err := os.ReadFile(*s.file)
		if err != nil {
			return nil, fail(exitUsage, "secret file: %v", err)
		}
		b = []byte(strings.TrimRight(string(b), "\r\n"))
		if len(b) == 0 {
			return nil, fail(exitUsage, "secret file %s is empty", *s.file)
		}
		return b, nil
	}
	if *s.secret == "" {
		return nil, fail(exitUsage, "no secret: set -secret-file, $REXI_SECRET_FILE or $REXI_SECRET")
	}
	return []byte(*s.secret), nil
}

// adminClientFlags are how a command reaches daemons' admin endpoints
// (rexinode drain and bench): the bearer token and HTTPS.
type adminClientFlags struct {
	tokenFile *string
	tls       *bool
	caFile    *string
}

func addAdminClientFlags(fs flagSet) adminClientFlags {
	return adminClientFlags{
		tokenFile: fs.String("admin-token-file", "", "file holding the admin bearer token (the daemon's -admin-token-file)"),
		tls: fs.Bool("admin-tls", false, "the admin address speaks HTTPS; without -admin-ca-file its certificate is not verified, "+
			"so anyone on the path could read the token"),
		caFile: fs.String("admin-ca-file", "", "PEM certificates (a CA, or the daemon's self-signed certificate) the admin "+
			"address's certificate must verify against; implies -admin-tls"),
	}
}

// client reads the token and CA files; a mistake in them is a usage
// error.
func (f adminClientFlags) client() (*live.AdminClient, error) {
	var token []byte
	if *f.tokenFile != "" {
		var err error
		if token, err = live.ReadAdminToken(*f.tokenFile); err != nil {
			return nil, fail(exitUsage, "admin token: %v", err)
		}
	}
	var tlsConf *tls.Config
	switch {
	case *f.caFile != "":
		pem, err := os.ReadFile(*f.caFile)
		if err != nil {
			return nil, fail(exitUsage, "admin CA: %v", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fail(exitUsage, "admin CA: no PEM certificate in %s", *f.caFile)
		}
		tlsConf = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	case *f.tls:
		// Asked for: an operator pointing at a daemon whose self-signed
		// certificate they have not distributed. The flag's help says what
		// that costs.
		tlsConf = &tls.Config{InsecureSkipVerify: true} // #nosec G402 -- see above
	}
	return live.NewAdminClient(token, tlsConf), nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fail(exitUsage, "log level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// addLogFormat registers -log-format.
func addLogFormat(fs flagSet) *string {
	return fs.String("log-format", "text", "log format: text or json (one JSON object per line)")
}

func checkLogFormat(f string) error {
	if f != "text" && f != "json" {
		return fail(exitUsage, "-log-format %q: want text or json", f)
	}
	return nil
}

// splitHostPort parses HOST:PORT with a numeric port.
func splitHostPort(s string) (string, int, error) {
	host, ps, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("port %q: want 1..65535", ps)
	}
	return host, port, nil
}
