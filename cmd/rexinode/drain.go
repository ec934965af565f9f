package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// drainCmd asks a running daemon to drain (POST /drain) and waits until its
// workers finished or the grace passed: a Kubernetes preStop hook.
func drainCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("drain", stderr)
	admin := fs.String("admin", "127.0.0.1:7071", "the daemon's admin address")
	tokenFile := fs.String("admin-token-file", "", "file holding the admin bearer token")
	grace := fs.Duration("grace", 10*time.Second, "how long to wait for running workers (match the daemon's -drain-grace)")
	useTLS := fs.Bool("admin-tls", false, "the admin address speaks HTTPS (the certificate is not verified: it is the local daemon)")
	if err := fs.parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	scheme := "http"
	tr := &http.Transport{}
	if *useTLS {
		scheme = "https"
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} // #nosec G402 -- a local preStop hook
	}
	ctx, cancel := context.WithTimeout(context.Background(), *grace+5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("%s://%s/drain?wait=%s", scheme, *admin, *grace), nil)
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return fail(exitUsage, "admin token: %v", err)
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(b)))
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return fail(exitUnreachable, "drain: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Fprint(stdout, string(body))
	switch resp.StatusCode {
	case http.StatusOK:
		return nil
	case http.StatusServiceUnavailable:
		return fail(exitFailed, "workers still running after %v", *grace)
	default:
		return fail(exitFailed, "drain: %s", resp.Status)
	}
}
