// Package mtls is the cluster's one identity: the CA every member trusts, this node's
// certificate, and the mutual TLS 1.3 configurations every node-to-node connection uses (Raft,
// leader forwarding, blob transfer, the scatter endpoint). A peer is accepted only when its
// certificate chains to the cluster CA and names a current member.
//
// The CA is either derived from the gossip key (zero configuration: every node computes the
// same CA key and certificate from the key, and issues its own node certificate at start) or
// given (bring-your-own PKI, PEM files).
package mtls

import (
	"crypto"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
)

// Errors callers test.
var (
	// ErrNotMember: the peer's certificate is valid but names no current member.
	ErrNotMember = errors.New("mtls: peer is not a current cluster member")
	// ErrBadPeer: the peer presented no certificate, or one the cluster CA did not sign.
	ErrBadPeer = errors.New("mtls: peer certificate not signed by the cluster CA")
	// ErrPEM: a PEM file holds no usable certificate or key.
	ErrPEM = errors.New("mtls: malformed PEM")
)

// CA is a certificate authority: its certificate and signing key.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// Fixed fields of the derived CA: every node must produce the same certificate, so nothing in
// it may depend on the clock or on randomness (ed25519 signatures are deterministic).
var (
	derivedNotBefore = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	derivedNotAfter  = time.Date(2120, 1, 1, 0, 0, 0, 0, time.UTC)
)

// DeriveCA derives the cluster CA from the gossip key and the cluster label: HKDF-SHA256 of
// the key gives an ed25519 seed; the self-signed certificate has a fixed serial and validity.
// Two clusters with different keys or labels get different CAs.
func DeriveCA(key []byte, label string) (*CA, error) {
	if len(key) < 16 {
		return nil, fmt.Errorf("mtls: derive CA: key of %d bytes, need at least 16", len(key))
	}
	seed, err := hkdf.Key(sha256.New, key, []byte("wasmpod cluster CA v1"), "label="+label, ed25519.SeedSize)
	if err != nil {
		return nil, fmt.Errorf("mtls: derive CA: %w", err)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	sum := sha256.Sum256(priv.Public().(ed25519.PublicKey))
	tmpl := &x509.Certificate{
		SerialNumber:          new(big.Int).SetBytes(sum[:16]),
		Subject:               pkix.Name{CommonName: "wasmpod cluster CA (derived from the gossip key)", Organization: []string{"wasmpod"}},
		NotBefore:             derivedNotBefore,
		NotAfter:              derivedNotAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		SubjectKeyId:          sum[:20],
	}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		return nil, fmt.Errorf("mtls: derive CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("mtls: derive CA: %w", err)
	}
	return &CA{Cert: cert, Key: priv}, nil
}

// NewCA creates a random CA (for `wasmpod tls ca`) valid for validity.
func NewCA(name string, validity time.Duration) (*CA, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := randSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"wasmpod"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: priv}, nil
}

func randSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// Issue creates a node certificate naming node (its common name and a URI SAN), usable for
// both sides of a connection, valid for validity from now, with a fresh ed25519 key.
func (ca *CA) Issue(node string, validity time.Duration) (tls.Certificate, error) {
	if node == "" {
		return tls.Certificate{}, errors.New("mtls: issue: empty node name")
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := randSerial()
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	notAfter := now.Add(validity)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: node, Organization: []string{"wasmpod node"}},
		NotBefore:    now.Add(-5 * time.Minute), // tolerate clocks a little behind
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("mtls: issue %q: %w", node, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv, Leaf: leaf}, nil
}

// EncodeCert returns the PEM form of a certificate.
func EncodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// EncodeKey returns the PKCS #8 PEM form of a private key.
func EncodeKey(k crypto.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseCA reads a CA from its PEM certificate and key (the key may be nil for a CA that only
// verifies).
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	b, _ := pem.Decode(certPEM)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%w: CA certificate: no CERTIFICATE block", ErrPEM)
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: CA certificate: %v", ErrPEM, err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("%w: CA certificate %q is not a CA (basic constraints)", ErrPEM, cert.Subject.CommonName)
	}
	ca := &CA{Cert: cert}
	if keyPEM != nil {
		kb, _ := pem.Decode(keyPEM)
		if kb == nil {
			return nil, fmt.Errorf("%w: CA key: no PEM block", ErrPEM)
		}
		k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: CA key: %v", ErrPEM, err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%w: CA key cannot sign", ErrPEM)
		}
		ca.Key = s
	}
	return ca, nil
}

// Identity is this node's side of the cluster trust: the CA pool, its certificate, and the
// membership test peers must pass. Safe for concurrent use; IsMember is called on every
// handshake, from any goroutine.
type Identity struct {
	name     string
	pool     *x509.CertPool
	cert     tls.Certificate
	isMember func(name string) bool
	server   *tls.Config
	client   *tls.Config
}

// NewIdentity builds the identity of node name from the CA's certificate and the node's
// certificate; isMember says whether a peer name is a current member (nil accepts every name
// the CA signed). The node certificate must chain to ca and name name.
func NewIdentity(name string, ca *x509.Certificate, cert tls.Certificate, isMember func(string) bool) (*Identity, error) {
	if cert.Leaf == nil && len(cert.Certificate) > 0 {
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return nil, fmt.Errorf("mtls: node certificate: %w", err)
		}
		cert.Leaf = leaf
	}
	if cert.Leaf == nil {
		return nil, errors.New("mtls: no node certificate")
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	id := &Identity{name: name, pool: pool, cert: cert, isMember: isMember}
	if got := NameOf(cert.Leaf); got != name {
		return nil, fmt.Errorf("mtls: node certificate names %q, this node is %q (issue one with `wasmpod tls cert --name %s`)", got, name, name)
	}
	if _, err := id.verify([]*x509.Certificate{cert.Leaf}); err != nil {
		return nil, fmt.Errorf("mtls: node certificate: %w", err)
	}
	id.server = &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{cert},
		ClientAuth:       tls.RequireAnyClientCert, // verified (chain and membership) in VerifyConnection
		VerifyConnection: id.verifyConn,
		// Full-size records from the first byte: dynamic sizing helps a browser's first paint
		// over a WAN, and here only splits a 1 KiB scatter request into two records.
		DynamicRecordSizingDisabled: true,
		// Session tickets are encrypted with a per-process random key (the default): a resumed
		// session still passes VerifyConnection, so a departed member cannot resume its way in.
	}
	id.client = &tls.Config{
		MinVersion:                  tls.VersionTLS13,
		Certificates:                []tls.Certificate{cert},
		InsecureSkipVerify:          true, // the peer is checked in VerifyConnection: chain + member name, not a DNS name
		VerifyConnection:            id.verifyConn,
		ClientSessionCache:          tls.NewLRUClientSessionCache(256),
		DynamicRecordSizingDisabled: true,
	}
	return id, nil
}

// Name is this node's name.
func (id *Identity) Name() string { return id.name }

// NameOf is the node name a certificate carries (its common name).
func NameOf(c *x509.Certificate) string { return c.Subject.CommonName }

func (id *Identity) verify(chain []*x509.Certificate) (string, error) {
	if len(chain) == 0 {
		return "", fmt.Errorf("%w: no certificate", ErrBadPeer)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: id.pool, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}); err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadPeer, err)
	}
	return NameOf(chain[0]), nil
}

func (id *Identity) verifyConn(cs tls.ConnectionState) error {
	name, err := id.verify(cs.PeerCertificates)
	if err != nil {
		return err
	}
	if name != id.name && id.isMember != nil && !id.isMember(name) {
		return fmt.Errorf("%w: %q", ErrNotMember, name)
	}
	return nil
}

// ServerConfig is the configuration of the accepting side (shared; do not modify).
func (id *Identity) ServerConfig() *tls.Config { return id.server }

// ClientConfig is the configuration of the dialing side (shared; do not modify).
func (id *Identity) ClientConfig() *tls.Config { return id.client }

// Server wraps an accepted connection; the handshake runs on first use or Handshake.
func (id *Identity) Server(c net.Conn) *tls.Conn { return tls.Server(c, id.server) }

// Client wraps a dialed connection.
func (id *Identity) Client(c net.Conn) *tls.Conn { return tls.Client(c, id.client) }

// PeerName is the verified node name of c's peer, or "" when c is not a TLS connection (an
// insecure cluster) or its handshake has not completed.
func PeerName(c net.Conn) string {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return ""
	}
	cs := tc.ConnectionState()
	if !cs.HandshakeComplete || len(cs.PeerCertificates) == 0 {
		return ""
	}
	return NameOf(cs.PeerCertificates[0])
}
