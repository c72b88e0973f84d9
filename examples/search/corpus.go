package search

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// Sources of the corpus: text that every machine of this kind has.
const (
	LicensesDir = "/usr/share/common-licenses"
	DocDir      = "/usr/share/doc"
	// MaxDocPackages bounds how many /usr/share/doc/*/copyright files join the licenses.
	MaxDocPackages = 120
)

// Document is one corpus file: its name (its path inside a shard, as the leaves report it) and
// where it is on this machine.
type Document struct{ Name, Path string }

// Corpus lists the documents: every regular file of /usr/share/common-licenses and the
// copyright files of the first MaxDocPackages packages of /usr/share/doc, in name order.
func Corpus() ([]Document, error) {
	var out []Document
	entries, err := os.ReadDir(LicensesDir)
	if err != nil {
		return nil, fmt.Errorf("corpus: %w", err)
	}
	for _, e := range entries {
		if e.Type().IsRegular() {
			out = append(out, Document{"common-licenses/" + e.Name(), filepath.Join(LicensesDir, e.Name())})
		}
	}
	pkgs, _ := os.ReadDir(DocDir) // no /usr/share/doc: the licenses alone
	n := 0
	for _, p := range pkgs {
		path := filepath.Join(DocDir, p.Name(), "copyright")
		if fi, err := os.Lstat(path); err != nil || !fi.Mode().IsRegular() || n >= MaxDocPackages {
			continue
		}
		out = append(out, Document{"doc/" + p.Name() + "/copyright", path})
		n++
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ShardName is the name of shard i of a split: "s<i>", as in the example's pod files.
func ShardName(i int) string { return fmt.Sprintf("s%d", i) }

// WriteShards deals docs round-robin into n shard directories dir/s0 ... dir/s<n-1> (replacing
// any that exist), each document at its name relative to its shard, and returns each shard's
// documents.
func WriteShards(dir string, docs []Document, n int) ([][]Document, error) {
	if n < 1 {
		return nil, fmt.Errorf("shards: n = %d, want at least 1", n)
	}
	members := make([][]Document, n)
	for i := range n {
		if err := os.RemoveAll(filepath.Join(dir, ShardName(i))); err != nil {
			return nil, fmt.Errorf("shards: %w", err)
		}
	}
	for i, d := range docs {
		s := i % n
		data, err := os.ReadFile(d.Path)
		if err != nil {
			return nil, fmt.Errorf("shards: %w", err)
		}
		dst := filepath.Join(dir, ShardName(s), filepath.FromSlash(d.Name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return nil, fmt.Errorf("shards: %w", err)
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			return nil, fmt.Errorf("shards: %w", err)
		}
		members[s] = append(members[s], d)
	}
	return members, nil
}
