// Command search-leaf is the leaf of examples/search: full-text term search over one shard of
// documents with counts.
//
// The shard's documents are the regular files under /data, a read-only mount the pod spec (or
// runtime.ModuleConfig.Mounts) grants; a document's name is its path relative to /data. Each
// instance indexes them once at start (wasmpod_start): terms are maximal runs of ASCII letters
// and digits, lower-cased.
//
// Input: "<k> <term> [<term>...]" (the terms are tokenized like the documents). A document's
// score is the total number of occurrences of the distinct query terms in it; documents with
// score 0 are not matches. Output: the line "k <k>", then the top k matches, one per line as
// "<count>\t<name>", by count descending then name ascending. That order is total, so the
// merge's top k of the leaves' top k is exactly the global top k.
package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	wasmpod "github.com/wasmpod/wasmpod/guest-sdk/go"
	"github.com/wasmpod/wasmpod/guest-sdk/go/leaf"
)

const root = "/data"

type posting struct {
	doc   int32
	count int32
}

var (
	docs  []string
	index map[string][]posting
	out   []byte
)

// tokens calls fn for each term of text: maximal runs of ASCII letters and digits, lower-cased.
func tokens(text []byte, fn func(term []byte)) {
	var buf []byte
	flush := func() {
		if len(buf) > 0 {
			fn(buf)
			buf = buf[:0]
		}
	}
	for _, c := range text {
		switch {
		case c >= 'a' && c <= 'z' || c >= '0' && c <= '9':
			buf = append(buf, c)
		case c >= 'A' && c <= 'Z':
			buf = append(buf, c+('a'-'A'))
		default:
			flush()
		}
	}
	flush()
}

func build() error {
	index = map[string][]posting{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		text, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		name, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		doc := int32(len(docs))
		docs = append(docs, filepath.ToSlash(name))
		counts := map[string]int32{}
		tokens(text, func(t []byte) { counts[string(t)]++ })
		for t, n := range counts {
			index[t] = append(index[t], posting{doc: doc, count: n})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("indexing %s: %w", root, err)
	}
	wasmpod.Infof("search-leaf: indexed %d documents, %d terms", len(docs), len(index))
	return nil
}

func search(in []byte) ([]byte, error) {
	kText, query, _ := strings.Cut(string(in), " ")
	k, err := strconv.Atoi(kText)
	if err != nil || k < 1 || k > 10000 {
		return nil, wasmpod.Code(2, errors.New("query: want \"<k> <term>...\" with k in 1..10000"))
	}
	seen := map[string]bool{}
	scores := map[int32]int64{}
	tokens([]byte(query), func(t []byte) {
		if seen[string(t)] {
			return
		}
		seen[string(t)] = true
		for _, p := range index[string(t)] {
			scores[p.doc] += int64(p.count)
		}
	})
	type hit struct {
		doc   int32
		count int64
	}
	hits := make([]hit, 0, len(scores))
	for d, c := range scores {
		hits = append(hits, hit{d, c})
	}
	sort.Slice(hits, func(i, j int) bool {
		if hits[i].count != hits[j].count {
			return hits[i].count > hits[j].count
		}
		return docs[hits[i].doc] < docs[hits[j].doc]
	})
	out = fmt.Appendf(out[:0], "k %d\n", k)
	for i := 0; i < len(hits) && i < k; i++ {
		out = fmt.Appendf(out, "%d\t%s\n", hits[i].count, docs[hits[i].doc])
	}
	return out, nil
}

func init() {
	wasmpod.OnStart(build)
	leaf.Handle(search)
}

func main() {}
