package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/wasmpod/wasmpod/cluster"
	"github.com/wasmpod/wasmpod/internal/regfile"
)

// newTLSCmd is `wasmpod tls`: a CA and node certificates for mutual TLS between cluster nodes
// (bring-your-own PKI, for operators who have none). With only --gossip-key-file nodes need
// none of this: they derive the cluster CA from the key.
func newTLSCmd() *cobra.Command {
	root := &cobra.Command{Use: "tls", Short: "Create a cluster CA and node certificates for --tls-ca/--tls-cert/--tls-key"}
	var (
		dir      string
		name     string
		validity time.Duration
		force    bool
	)
	ca := &cobra.Command{
		Use:   "ca",
		Short: "Create a cluster CA: ca.pem (give it to every node as --tls-ca) and ca-key.pem (keep it off the nodes)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			certPEM, keyPEM, err := cluster.NewCA(name, validity)
			if err != nil {
				return err
			}
			cp, kp := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
			if err := writeNew(cp, certPEM, 0o644, force); err != nil {
				return err
			}
			if err := writeNew(kp, keyPEM, 0o600, force); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s and %s\nnext: wasmpod tls cert --name NODE for each node\n", cp, kp)
			return nil
		},
	}
	ca.Flags().StringVar(&dir, "dir", ".", "directory to write ca.pem and ca-key.pem into")
	ca.Flags().StringVar(&name, "name", "wasmpod cluster CA", "the CA's common name")
	ca.Flags().DurationVar(&validity, "validity", 10*365*24*time.Hour, "how long the CA is valid")
	ca.Flags().BoolVar(&force, "force", false, "overwrite existing files")

	var (
		caFile, caKey, node string
		certDir             string
		certValidity        time.Duration
		certForce           bool
	)
	cert := &cobra.Command{
		Use:   "cert",
		Short: "Issue a node certificate: NODE.pem and NODE-key.pem (--tls-cert and --tls-key of the node started with --node-name NODE)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if node == "" {
				return errors.New("--name: the node's name (its --node-name) is required")
			}
			cb, err := regfile.Read(caFile, maxSmallFile)
			if err != nil {
				return fmt.Errorf("--ca: %w (create one with `wasmpod tls ca`)", err)
			}
			kb, err := regfile.Read(caKey, maxSmallFile)
			if err != nil {
				return fmt.Errorf("--ca-key: %w", err)
			}
			certPEM, keyPEM, err := cluster.IssueNodeCert(cb, kb, node, certValidity)
			if err != nil {
				return err
			}
			cp, kp := filepath.Join(certDir, node+".pem"), filepath.Join(certDir, node+"-key.pem")
			if err := writeNew(cp, certPEM, 0o644, certForce); err != nil {
				return err
			}
			if err := writeNew(kp, keyPEM, 0o600, certForce); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s and %s\nstart the node with --node-name %s --tls-ca %s --tls-cert %s --tls-key %s\n",
				cp, kp, node, caFile, cp, kp)
			return nil
		},
	}
	cf := cert.Flags()
	cf.StringVar(&node, "name", "", "the node's name (its --node-name); required")
	cf.StringVar(&caFile, "ca", "ca.pem", "the CA certificate")
	cf.StringVar(&caKey, "ca-key", "ca-key.pem", "the CA's private key")
	cf.StringVar(&certDir, "dir", ".", "directory to write the certificate and key into")
	cf.DurationVar(&certValidity, "validity", cluster.NodeCertValidity, "how long the certificate is valid")
	cf.BoolVar(&certForce, "force", false, "overwrite existing files")
	root.AddCommand(ca, cert)
	return root
}

// writeNew writes a file, refusing to replace one unless force.
func writeNew(path string, b []byte, mode os.FileMode, force bool) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, mode)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s exists (use --force to replace it)", path)
		}
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
