package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/wasmpod/wasmpod/cluster"
)

// Members lists the cluster's members as the host sees them.
func (c *Client) Members(ctx context.Context) ([]cluster.Member, error) {
	var out []cluster.Member
	return out, c.do(ctx, http.MethodGet, "/v1/members", nil, &out)
}

// ClusterStatus returns the host's Raft and gossip view.
func (c *Client) ClusterStatus(ctx context.Context) (cluster.Status, error) {
	var out cluster.Status
	return out, c.do(ctx, http.MethodGet, "/v1/cluster", nil, &out)
}

// Election returns the named lease (leader node, token, expiry).
func (c *Client) Election(ctx context.Context, name string) (cluster.Lease, error) {
	return c.election(ctx, http.MethodGet, name, "", nil, 0)
}

// Campaign asks for the named lease for session; on 409 the error wraps ErrAPI and the
// returned lease says who holds it.
func (c *Client) Campaign(ctx context.Context, name string, req cluster.CampaignRequest) (cluster.Lease, error) {
	return c.election(ctx, http.MethodPost, name, "campaign", req, 0)
}

// Renew extends a lease held with req.Token.
func (c *Client) Renew(ctx context.Context, name string, req cluster.RenewRequest) (cluster.Lease, error) {
	return c.election(ctx, http.MethodPost, name, "renew", req, 0)
}

// Resign gives a lease up.
func (c *Client) Resign(ctx context.Context, name string, req cluster.ResignRequest) (cluster.Lease, error) {
	return c.election(ctx, http.MethodPost, name, "resign", req, 0)
}

// Watch long-polls until the lease's index exceeds index or wait passes (then it returns the
// current lease, same index).
func (c *Client) Watch(ctx context.Context, name string, index uint64, wait time.Duration) (cluster.Lease, error) {
	op := fmt.Sprintf("watch?index=%d&wait=%s", index, wait)
	return c.election(ctx, http.MethodGet, name, op, nil, wait)
}

func (c *Client) election(ctx context.Context, method, name, op string, body any, wait time.Duration) (cluster.Lease, error) {
	var l cluster.Lease
	path := "/v1/election/" + url.PathEscape(name)
	if op != "" {
		path += "/" + op
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return l, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url(path), rd)
	if err != nil {
		return l, err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: wait + 30*time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return l, fmt.Errorf("admin API at %s: %w", c.Base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return l, err
	}
	if resp.StatusCode/100 == 2 {
		return l, json.Unmarshal(b, &l)
	}
	var e struct {
		Error string         `json:"error"`
		Lease *cluster.Lease `json:"lease"`
	}
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		if e.Lease != nil {
			l = *e.Lease
		}
		return l, fmt.Errorf("%w: %s: %s", ErrAPI, resp.Status, e.Error)
	}
	return l, fmt.Errorf("%w: %s: %s", ErrAPI, resp.Status, strings.TrimSpace(string(b)))
}
