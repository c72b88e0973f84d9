package cluster

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/wasmpod/wasmpod/cluster/internal/membership"
	"github.com/wasmpod/wasmpod/cluster/internal/mtls"
	"github.com/wasmpod/wasmpod/internal/peerhttp/tlsaccept"
)

// TLSConfig is bring-your-own PKI for the node-to-node connections: the cluster CA's
// certificate and this node's certificate and key, PEM. The node certificate must name the
// node (common name = NodeName) and be signed by the CA. Empty: the CA is derived from the
// gossip key. Load the files with LoadTLS; create them with NewCA and IssueNodeCert.
type TLSConfig struct {
	CAPEM, CertPEM, KeyPEM []byte
}

// Configured reports whether certificates were given.
func (t TLSConfig) Configured() bool {
	return len(t.CAPEM) > 0 || len(t.CertPEM) > 0 || len(t.KeyPEM) > 0
}

// LoadTLS reads the CA certificate, node certificate and node key files (PEM).
func LoadTLS(caFile, certFile, keyFile string) (TLSConfig, error) {
	if caFile == "" || certFile == "" || keyFile == "" {
		return TLSConfig{}, fmt.Errorf("%w: TLS needs all three of the CA certificate, the node certificate and its key", ErrInvalid)
	}
	var t TLSConfig
	for _, f := range []struct {
		path string
		dst  *[]byte
	}{{caFile, &t.CAPEM}, {certFile, &t.CertPEM}, {keyFile, &t.KeyPEM}} {
		b, err := os.ReadFile(f.path)
		if err != nil {
			return TLSConfig{}, fmt.Errorf("cluster: TLS: %w", err)
		}
		*f.dst = b
	}
	return t, nil
}

// NodeCertValidity is how long a node certificate issued at start (zero configuration) or by
// IssueNodeCert's default is valid. Revocation is by membership (a certificate is accepted
// only while its name is a current member), so validity only bounds a stolen key's use in a
// cluster whose gossip key was rotated.
const NodeCertValidity = 365 * 24 * time.Hour

// NewCA creates a CA for bring-your-own PKI (what `wasmpod tls ca` writes): PEM certificate
// and PKCS #8 key, ed25519, valid for validity.
func NewCA(name string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	ca, err := mtls.NewCA(name, validity)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = mtls.EncodeKey(ca.Key)
	if err != nil {
		return nil, nil, err
	}
	return mtls.EncodeCert(ca.Cert.Raw), keyPEM, nil
}

// IssueNodeCert signs a certificate naming node with the CA (PEM certificate and key), for
// both sides of node-to-node connections.
func IssueNodeCert(caCertPEM, caKeyPEM []byte, node string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	ca, err := mtls.ParseCA(caCertPEM, caKeyPEM)
	if err != nil {
		return nil, nil, err
	}
	c, err := ca.Issue(node, validity)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = mtls.EncodeKey(c.PrivateKey)
	if err != nil {
		return nil, nil, err
	}
	return mtls.EncodeCert(c.Certificate[0]), keyPEM, nil
}

// multiNode reports whether the configuration can reach other hosts: a join address, or a
// gossip or Raft bind address that is not loopback.
func (c *Config) multiNode() bool {
	if len(c.Join) > 0 {
		return true
	}
	for _, a := range []string{c.BindAddr, c.RaftAddr, c.AdvertiseAddr} {
		if a == "" {
			continue
		}
		h, _, err := net.SplitHostPort(a)
		if err != nil {
			return true
		}
		ip := net.ParseIP(h)
		if h == "localhost" || (ip != nil && ip.IsLoopback()) {
			continue
		}
		return true
	}
	return false
}

// ErrInsecure: a multi-node configuration with neither a gossip key nor certificates.
var ErrInsecure = errors.New("cluster: a multi-node cluster needs a key or certificates")

// checkSecure refuses a multi-node cluster that would run in the clear.
func (c *Config) checkSecure() error {
	if c.InsecureCluster || !c.multiNode() || len(c.GossipKey) > 0 || c.TLS.Configured() {
		return nil
	}
	return fmt.Errorf("%w: this node joins or listens beyond loopback, and every node-to-node port would accept anyone. "+
		"Make a key with `openssl rand -base64 32 > cluster.key` and give every node --gossip-key-file cluster.key "+
		"(TLS between nodes is then derived from it), or give --tls-ca/--tls-cert/--tls-key (`wasmpod tls ca`, `wasmpod tls cert`); "+
		"--insecure-cluster runs without, for a lab", ErrInsecure)
}

// identity builds this node's TLS identity: from the given certificates, else from the
// gossip key, else (a loopback node with neither) from a random secret that only this process
// knows. nil when the cluster runs insecure by request.
func (n *Node) identity() (*mtls.Identity, error) {
	cfg := &n.cfg
	if cfg.InsecureCluster && !cfg.TLS.Configured() {
		return nil, nil
	}
	if cfg.TLS.Configured() {
		ca, err := mtls.ParseCA(cfg.TLS.CAPEM, nil)
		if err != nil {
			return nil, fmt.Errorf("%w: --tls-ca: %w", ErrInvalid, err)
		}
		cert, err := tls.X509KeyPair(cfg.TLS.CertPEM, cfg.TLS.KeyPEM)
		if err != nil {
			return nil, fmt.Errorf("%w: --tls-cert/--tls-key: %w", ErrInvalid, err)
		}
		id, err := mtls.NewIdentity(cfg.NodeName, ca.Cert, cert, n.isMember)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		return id, nil
	}
	secret := cfg.GossipKey
	if len(secret) == 0 {
		secret = make([]byte, 32)
		if _, err := rand.Read(secret); err != nil {
			return nil, err
		}
	}
	ca, err := mtls.DeriveCA(secret, cfg.ClusterLabel)
	if err != nil {
		return nil, err
	}
	cert, err := ca.Issue(cfg.NodeName, NodeCertValidity)
	if err != nil {
		return nil, err
	}
	return mtls.NewIdentity(cfg.NodeName, ca.Cert, cert, n.isMember)
}

// isMember is the revocation check of every handshake: the peer's name must be a member that
// gossip knows and that has not left (alive, suspect, or dead but not yet forgotten: a crashed
// member that comes back is let in again). A member that left gracefully, or was forgotten,
// is refused even with a valid certificate.
func (n *Node) isMember(name string) bool {
	g := n.gossip
	if g == nil {
		return false
	}
	for _, m := range g.Members() {
		if m.Name == name {
			return m.State != membership.StateLeft
		}
	}
	return false
}

// Secure reports whether node-to-node connections use mutual TLS.
func (n *Node) Secure() bool { return n.tls != nil }

// InsecureWarning is a warning for operators when the node runs without TLS between nodes
// (--insecure-cluster), else "".
func (n *Node) InsecureWarning() string {
	if n.tls != nil {
		return ""
	}
	return "insecure cluster: node-to-node connections (Raft, forwarding, blobs, scatter) are neither authenticated nor encrypted (--insecure-cluster)"
}

// SecureListener wraps a listener of another node-to-node service (the scatter endpoint) in
// the cluster's mutual TLS: only current members get past the handshake. It returns ln as is
// in an insecure cluster.
//
// Accept returns a connection only once its handshake has completed, within 5 s (the Raft
// port's bound), and at most 1,024 handshakes (64 per source address) are pending at a time,
// the oldest giving way to new ones: a stranger's idle connections then never take one of the
// server's connection slots, which crypto/tls's own listener (handshake on first read) let an
// outsider fill for the server's 30 s read timeout. See internal/peerhttp/tlsaccept.
func (n *Node) SecureListener(ln net.Listener) net.Listener {
	if n.tls == nil {
		return ln
	}
	return tlsaccept.New(ln, n.tls.ServerConfig(), tlsaccept.DefaultLimits())
}

// DialMember connects to another member's node-to-node service (the scatter endpoint) with
// the cluster's mutual TLS; the handshake is done when it returns. Plain TCP in an insecure
// cluster.
func (n *Node) DialMember(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil || n.tls == nil {
		return c, err
	}
	tc := n.tls.Client(c)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return tc, nil
}
