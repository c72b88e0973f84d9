// Package search is the scatter/gather example: full-text term search over text files this
// machine already has, split into shards. The leaf and merge are the Go guests in
// plugins/search-leaf and plugins/search-merge; see README.md. The package holds only its
// end-to-end tests.
package search
