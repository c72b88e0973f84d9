// Command search-merge is the merge of examples/search: the global top k of the leaves' top-k
// lists (see plugins/search-leaf for the format). Each part starts with "k <k>"; the merge uses
// the largest k it sees and skips missing parts (the host flags the answer as partial). Output:
// the top k lines "<count>\t<name>", by count descending then name ascending.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strconv"

	wasmpod "github.com/wasmpod/wasmpod/guest-sdk/go"
	"github.com/wasmpod/wasmpod/guest-sdk/go/merge"
)

type hit struct {
	count int64
	name  []byte
}

var (
	hits []hit
	out  []byte
)

func parse(i int, data []byte, k *int) error {
	line, rest, ok := bytes.Cut(data, []byte("\n"))
	if !ok || !bytes.HasPrefix(line, []byte("k ")) {
		return fmt.Errorf("part %d: no \"k <k>\" header", i)
	}
	pk, err := strconv.Atoi(string(line[2:]))
	if err != nil || pk < 1 {
		return fmt.Errorf("part %d: bad k %q", i, line[2:])
	}
	*k = max(*k, pk)
	for len(rest) > 0 {
		line, rest, _ = bytes.Cut(rest, []byte("\n"))
		c, name, ok := bytes.Cut(line, []byte("\t"))
		n, err := strconv.ParseInt(string(c), 10, 64)
		if !ok || err != nil || len(name) == 0 {
			return fmt.Errorf("part %d: bad line %q", i, line)
		}
		hits = append(hits, hit{n, name})
	}
	return nil
}

func combine(parts []merge.Part) ([]byte, error) {
	hits = hits[:0]
	k := 0
	for i, p := range parts {
		if p.Missing {
			continue
		}
		if err := parse(i, p.Data, &k); err != nil {
			return nil, wasmpod.Code(2, errors.New(err.Error()))
		}
	}
	sort.Slice(hits, func(i, j int) bool {
		if hits[i].count != hits[j].count {
			return hits[i].count > hits[j].count
		}
		return bytes.Compare(hits[i].name, hits[j].name) < 0
	})
	out = out[:0]
	for i := 0; i < len(hits) && i < k; i++ {
		out = strconv.AppendInt(out, hits[i].count, 10)
		out = append(out, '\t')
		out = append(out, hits[i].name...)
		out = append(out, '\n')
	}
	return out, nil
}

func init() { merge.Handle(combine) }

func main() {}
