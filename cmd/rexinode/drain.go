package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/rexi-go/rexi/internal/live"
)

// drainCmd asks a running daemon to drain (POST /drain) and waits until its
// workers finished or the grace passed: a Kubernetes preStop hook.
func drainCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("drain", stderr)
	admin := fs.String("admin", "127.0.0.1:7071", "the daemon's admin address")
	ac := addAdminClientFlags(fs)
	grace := fs.Duration("grace", 10*time.Second, "how long to wait for running workers (match the daemon's -drain-grace)")
	if err := fs.parse(args); err != nil {
		return err
	}
	c, err := ac.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *grace+5*time.Second)
	defer cancel()
	req, err := c.NewRequest(ctx, http.MethodPost, *admin, fmt.Sprintf("/drain?wait=%s", *grace))
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	resp, err := c.Do(req, http.StatusOK, http.StatusServiceUnavailable)
	if err != nil {
		var refused *live.StatusError
		if errors.As(err, &refused) { // reached, but refused: a wrong token, say
			return fail(exitFailed, "drain: %v", err)
		}
		return fail(exitUnreachable, "drain: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Fprint(stdout, string(body))
	if resp.StatusCode == http.StatusServiceUnavailable {
		return fail(exitFailed, "workers still running after %v", *grace)
	}
	return nil
}
