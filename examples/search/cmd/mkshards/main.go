// Command mkshards writes the shard directories of examples/search: the corpus (the files of
// /usr/share/common-licenses and up to 120 /usr/share/doc/*/copyright files) dealt round-robin
// into -n directories s0 ... s<n-1> under -o, which the example's pod files mount read-only.
//
//	go run ./examples/search/cmd/mkshards -n 6 -o examples/search/shards
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/wasmpod/wasmpod/examples/search"
)

func main() {
	n := flag.Int("n", 6, "number of shards")
	out := flag.String("o", "examples/search/shards", "output directory")
	flag.Parse()
	docs, err := search.Corpus()
	if err == nil {
		var members [][]search.Document
		if members, err = search.WriteShards(*out, docs, *n); err == nil {
			for i, m := range members {
				fmt.Printf("%s/%s: %d documents\n", *out, search.ShardName(i), len(m))
			}
			return
		}
	}
	fmt.Fprintln(os.Stderr, "mkshards:", err)
	os.Exit(1)
}
