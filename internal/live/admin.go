package live

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
)

// ReadAdminToken reads an admin bearer token file: its content without
// surrounding white space. An empty file is an error: no request could
// carry it.
func ReadAdminToken(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	token := []byte(strings.TrimSpace(string(b)))
	if len(token) == 0 {
		return nil, fmt.Errorf("%s is empty", path)
	}
	return token, nil
}

// AdminClient sends requests to rexinode admin endpoints (and to the
// gRPC baseline's /live), the way rexinode drain and rexinode bench
// share: the bearer token on every request, HTTPS when asked.
type AdminClient struct {
	scheme string
	token  string
	http   *http.Client
}

// NewAdminClient returns a client that sends token, when not empty, as
// "Authorization: Bearer", over HTTPS with tlsConf when it is not nil
// (the caller decides how the admin certificate is verified), else over
// HTTP.
func NewAdminClient(token []byte, tlsConf *tls.Config) *AdminClient {
	c := &AdminClient{scheme: "http", token: string(token),
		http: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}} // a few /live long-polls per node
	if tlsConf != nil {
		c.scheme = "https"
		c.http.Transport.(*http.Transport).TLSClientConfig = tlsConf
	}
	return c
}

// NewRequest builds a request for path (with its query) at the admin
// address addr (host:port), carrying the token.
func (c *AdminClient) NewRequest(ctx context.Context, method, addr, path string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.scheme+"://"+addr+path, nil)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req, nil
}

// Do sends req. An answer whose status is not among want (default: 200
// OK) is closed and returned as a *StatusError, so that a missing token
// (401) or a guarded endpoint off loopback (403) is reported as such, not
// as a malformed answer.
func (c *AdminClient) Do(req *http.Request, want ...int) (*http.Response, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if len(want) == 0 {
		want = []int{http.StatusOK}
	}
	if slices.Contains(want, resp.StatusCode) {
		return resp, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return nil, &StatusError{Method: req.Method, URL: req.URL.String(), Status: resp.Status, Code: resp.StatusCode,
		Body: strings.TrimSpace(string(b))}
}

// CloseIdleConnections closes the client's kept-alive connections.
func (c *AdminClient) CloseIdleConnections() { c.http.CloseIdleConnections() }

// StatusError is an admin answer with an unexpected HTTP status.
type StatusError struct {
	Method, URL string
	Status      string // as the server sent it: "401 Unauthorized"
	Code        int
	Body        string // its start: rexinode says there why it refused
}

// Error names the request and the status, and what the server said.
func (e *StatusError) Error() string {
	s := fmt.Sprintf("%s %s: %s", e.Method, e.URL, e.Status)
	if e.Body != "" {
		s += ": " + e.Body
	}
	return s
}
