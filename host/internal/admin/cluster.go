package admin

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/wasmpod/wasmpod/cluster"
)

// Cluster is what the admin API needs of the node's cluster membership and elections
// (*cluster.Node implements it).
type Cluster interface {
	Name() string
	Members() []cluster.Member
	Status() cluster.Status
	Get(ctx context.Context, name string) (cluster.Lease, error)
	Campaign(ctx context.Context, name string, req cluster.CampaignRequest) (cluster.Lease, error)
	Renew(ctx context.Context, name string, req cluster.RenewRequest) (cluster.Lease, error)
	Resign(ctx context.Context, name string, req cluster.ResignRequest) (cluster.Lease, error)
	Watch(ctx context.Context, name string, afterIndex uint64) (cluster.Lease, error)
}

// ElectionError is the body of an election route's error: the lease is set for 409 (someone
// else holds it, or the token is stale), so the caller learns who leads without a second call.
type ElectionError struct {
	Error string         `json:"error"`
	Lease *cluster.Lease `json:"lease,omitempty"`
}

// maxElectionBody bounds a campaign/renew/resign body: three small fields.
const maxElectionBody = 4096

// electionPath splits /v1/election/{name}[/{op}]. ok is false for other paths or bad names.
func electionPath(p string) (name, op string, ok bool) {
	rest, found := strings.CutPrefix(p, "/v1/election/")
	if !found {
		return "", "", false
	}
	name, op, _ = strings.Cut(rest, "/")
	if name == "" || len(name) > 128 || strings.ContainsAny(name, "%?#") || strings.Contains(op, "/") {
		return "", "", false
	}
	return name, op, true
}

// decodeStrict decodes one JSON object of at most maxElectionBody bytes into v, refusing
// unknown fields and trailing data. An empty body leaves v as is.
func decodeStrict(body []byte, v any) error {
	if len(body) > maxElectionBody {
		return fmt.Errorf("%w: body larger than %d bytes", cluster.ErrInvalid, maxElectionBody)
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil
	}
	if err := decodeOne(body, v); err != nil {
		return fmt.Errorf("%w: body: %v", cluster.ErrInvalid, err)
	}
	return nil
}

// errTrailing: a body holds more than one JSON value.
var errTrailing = errors.New("trailing data after the JSON object")

// decodeOne decodes exactly one JSON object from body into v, refusing unknown fields and
// anything after the object (errTrailing).
func decodeOne(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errTrailing
	}
	return nil
}

// parseCampaign reads {"session": S, "ttl_ms": N}; session is required.
func parseCampaign(body []byte) (cluster.CampaignRequest, error) {
	var r cluster.CampaignRequest
	if err := decodeStrict(body, &r); err != nil {
		return r, err
	}
	if r.Session == "" || len(r.Session) > 256 {
		return r, fmt.Errorf(`%w: campaign body needs "session" (1-256 bytes): who holds the lease on this node`, cluster.ErrInvalid)
	}
	if r.TTLMillis < 0 {
		return r, fmt.Errorf("%w: ttl_ms must not be negative", cluster.ErrInvalid)
	}
	return r, nil
}

// parseRenew reads {"session": S, "token": T, "ttl_ms": N}; session and token are required.
func parseRenew(body []byte) (cluster.RenewRequest, error) {
	var r cluster.RenewRequest
	if err := decodeStrict(body, &r); err != nil {
		return r, err
	}
	if r.Session == "" || len(r.Session) > 256 || r.Token == 0 {
		return r, fmt.Errorf(`%w: renew body needs "session" and "token"`, cluster.ErrInvalid)
	}
	if r.TTLMillis < 0 {
		return r, fmt.Errorf("%w: ttl_ms must not be negative", cluster.ErrInvalid)
	}
	return r, nil
}

// parseResign reads {"session": S, "token": T}; both are required.
func parseResign(body []byte) (cluster.ResignRequest, error) {
	var r cluster.ResignRequest
	if err := decodeStrict(body, &r); err != nil {
		return r, err
	}
	if r.Session == "" || len(r.Session) > 256 || r.Token == 0 {
		return r, fmt.Errorf(`%w: resign body needs "session" and "token"`, cluster.ErrInvalid)
	}
	return r, nil
}

// parseWatch reads ?index=N&wait=D: wait defaults to def and is capped at max.
func parseWatch(args *fasthttp.Args, def, limit time.Duration) (uint64, time.Duration, error) {
	var idx uint64
	if v := args.Peek("index"); len(v) > 0 {
		n, err := strconv.ParseUint(string(v), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%w: index=%q: want a non-negative integer", cluster.ErrInvalid, v)
		}
		idx = n
	}
	wait, err := parseWait(args, def, limit)
	return idx, wait, err
}

// parseWait reads ?wait=D: def when absent, capped at limit.
func parseWait(args *fasthttp.Args, def, limit time.Duration) (time.Duration, error) {
	wait := def
	if v := args.Peek("wait"); len(v) > 0 {
		d, err := time.ParseDuration(string(v))
		if err != nil || d < 0 {
			return 0, fmt.Errorf("%w: wait=%q: want a duration like 30s", cluster.ErrInvalid, v)
		}
		wait = d
	}
	return min(wait, limit), nil
}

// serveCluster answers /v1/members, /v1/cluster and /v1/election/...; false if the path is
// none of them.
func (s *Server) serveCluster(ctx *fasthttp.RequestCtx, path, method string) bool {
	name, op, isElection := electionPath(path)
	if path != "/v1/members" && path != "/v1/cluster" && !isElection {
		return false
	}
	c := s.cfg.Cluster
	if c == nil {
		writeError(ctx, fasthttp.StatusServiceUnavailable, errors.New("this host runs no cluster node"))
		return true
	}
	switch {
	case path == "/v1/members" && method == fasthttp.MethodGet:
		writeJSON(ctx, fasthttp.StatusOK, c.Members())
	case path == "/v1/cluster" && method == fasthttp.MethodGet:
		writeJSON(ctx, fasthttp.StatusOK, c.Status())
	case isElection && op == "" && method == fasthttp.MethodGet:
		opCtx, cancel := context.WithTimeout(s.ctx, s.cfg.ElectionOpTimeout)
		defer cancel()
		l, err := c.Get(opCtx, name)
		writeLease(ctx, s.callerOf(&ctx.Request.Header), l, err)
	case isElection && op == "watch" && method == fasthttp.MethodGet:
		idx, wait, err := parseWatch(ctx.QueryArgs(), s.cfg.WatchWait, s.cfg.MaxWatchWait)
		if err != nil {
			writeError(ctx, fasthttp.StatusBadRequest, err)
			return true
		}
		wctx, cancel := context.WithTimeout(s.ctx, wait)
		defer cancel()
		l, err := c.Watch(wctx, name, idx)
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			err = nil // the wait ran out: the current state, same index; the client asks again
		}
		writeLease(ctx, s.callerOf(&ctx.Request.Header), l, err)
	case isElection && method == fasthttp.MethodPost && (op == "campaign" || op == "renew" || op == "resign"):
		who, ok := s.electionCaller(ctx)
		if !ok {
			return true
		}
		s.electionOp(ctx, c, who, name, op)
	case isElection && op != "" && op != "watch" && op != "campaign" && op != "renew" && op != "resign":
		writeError(ctx, fasthttp.StatusNotFound, fmt.Errorf("unknown election operation %q (campaign, renew, resign, watch)", op))
	default:
		writeError(ctx, fasthttp.StatusMethodNotAllowed, fmt.Errorf("no route %s %s", method, path))
	}
	return true
}

func (s *Server) electionOp(ctx *fasthttp.RequestCtx, c Cluster, who caller, name, op string) {
	opCtx, cancel := context.WithTimeout(s.ctx, s.cfg.ElectionOpTimeout)
	defer cancel()
	body := ctx.PostBody()
	var l cluster.Lease
	var err error
	var session string
	switch op {
	case "campaign":
		var r cluster.CampaignRequest
		if r, err = parseCampaign(body); err == nil {
			if session = r.Session; who.mayUse(session) {
				l, err = c.Campaign(opCtx, name, r)
			}
		}
	case "renew":
		var r cluster.RenewRequest
		if r, err = parseRenew(body); err == nil {
			if session = r.Session; who.mayUse(session) {
				l, err = c.Renew(opCtx, name, r)
			}
		}
	case "resign":
		var r cluster.ResignRequest
		if r, err = parseResign(body); err == nil {
			if session = r.Session; who.mayUse(session) {
				l, err = c.Resign(opCtx, name, r)
			}
		}
	}
	if err == nil && !who.mayUse(session) {
		writeError(ctx, fasthttp.StatusForbidden, fmt.Errorf("app %q may only use session %q or sessions starting with %q", who.app, who.app, who.app+"/"))
		return
	}
	writeLease(ctx, who, l, err)
}

// caller is who a request's bearer credential names: the operator (the admin token), an app of
// Config.AppTokens, or nobody.
type caller struct {
	admin bool
	app   string
}

// mayUse reports whether c may campaign, renew and resign as session, and so may see the
// fencing token of a lease session holds: the operator any session, an app its own namespace
// (its name, or its name followed by "/").
func (c caller) mayUse(session string) bool {
	return c.admin || (c.app != "" && (session == c.app || strings.HasPrefix(session, c.app+"/")))
}

// callerOf reads the bearer credential of h. Every token is compared, in constant time, whether
// or not an earlier one matched.
func (s *Server) callerOf(h *fasthttp.RequestHeader) caller {
	var c caller
	got, ok := strings.CutPrefix(string(h.Peek("Authorization")), "Bearer ")
	if !ok || got == "" {
		return c
	}
	c.admin = s.validToken(h.Peek("Authorization"))
	for app, tok := range s.apps() {
		if subtle.ConstantTimeCompare([]byte(got), []byte(tok)) == 1 {
			c.app = app
		}
	}
	return c
}

// electionCaller is the caller of an election operation: apps on the node present their own
// token (Config.AppTokens), operators the admin token. There is no exception for loopback
// clients: every local user can reach loopback. It answers 401 or 403 itself when neither
// token is presented.
func (s *Server) electionCaller(ctx *fasthttp.RequestCtx) (caller, bool) {
	c := s.callerOf(&ctx.Request.Header)
	if c.admin || c.app != "" {
		return c, true
	}
	if s.cfg.Token == "" && len(s.apps()) == 0 {
		writeError(ctx, fasthttp.StatusForbidden, errors.New("election operations are disabled: start wasmpod with --app-token-file (apps) or --token-file (operators)"))
		return c, false
	}
	ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="wasmpod"`)
	writeError(ctx, fasthttp.StatusUnauthorized, errors.New("missing or wrong bearer token: apps on the node use their own token (--app-token-file), operators the admin token"))
	return c, false
}

// ElectionStatus maps a cluster error to an HTTP status.
func ElectionStatus(err error) int {
	switch {
	case err == nil:
		return fasthttp.StatusOK
	case errors.Is(err, cluster.ErrNotLeader), errors.Is(err, cluster.ErrStaleToken):
		return fasthttp.StatusConflict
	case errors.Is(err, cluster.ErrInvalid):
		return fasthttp.StatusBadRequest
	case errors.Is(err, cluster.ErrNoQuorum), errors.Is(err, cluster.ErrClosed),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return fasthttp.StatusServiceUnavailable
	}
	return fasthttp.StatusInternalServerError
}

// writeLease answers a lease, or err with the lease for 409. The fencing token is shown only to
// a caller who may use the holder's session (who could have acquired it); others see 0.
func writeLease(ctx *fasthttp.RequestCtx, who caller, l cluster.Lease, err error) {
	if !who.mayUse(l.Session) {
		l.Token = 0
	}
	status := ElectionStatus(err)
	if err == nil {
		writeJSON(ctx, status, l)
		return
	}
	body := ElectionError{Error: err.Error()}
	if status == fasthttp.StatusConflict {
		body.Lease = &l
	}
	writeJSON(ctx, status, body)
}
