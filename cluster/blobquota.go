package cluster

import (
	"fmt"
	"sync"
	"time"
)

// blobQuota bounds what each peer may push into this node's blob store ahead of the
// replicated command that refers to it. A file is pushed before its command commits (it must
// be on two nodes before a job or an output names it), so a push cannot wait for the command;
// instead every peer has a quota of files no command of this replica refers to yet, released
// when a command refers to the file or after the store's grace period (when garbage
// collection removes a file still unreferenced). A peer over its quota is refused before a
// byte of content is read. A push of a file this node already has renews the file's grace
// period, so it is charged too (or its charge renewed): what a peer keeps alive by pushing,
// not only what it adds, is bounded.
type blobQuota struct {
	maxBytes int64
	maxFiles int
	grace    time.Duration
	// refs returns the files this replica's jobs and tasks refer to.
	refs func() (map[string]struct{}, error)

	mu    sync.Mutex
	peers map[string][]pendingBlob
}

type pendingBlob struct {
	sha  string
	size int64
	at   time.Time
}

// admit charges a push of sha (size bytes) to peer, or refuses it.
func (q *blobQuota) admit(peer, sha string, size int64) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := time.Now()
	list := q.peers[peer]
	keep := list[:0]
	for _, p := range list {
		if now.Sub(p.at) < q.grace {
			keep = append(keep, p)
		}
	}
	list = keep
	for i, p := range list {
		if p.sha == sha {
			// Charged already (a repeat or a retry of the push): the file's grace period starts
			// again, so does its charge, which then lasts as long as the peer keeps the file
			// alive. The same file is not charged twice.
			list[i].at = now
			q.peers[peer] = list
			return nil
		}
	}
	over := func() bool {
		var sum int64
		for _, p := range list {
			sum += p.size
		}
		return sum+size > q.maxBytes || len(list)+1 > q.maxFiles
	}
	if over() {
		// Only now look at what the replica refers to (a walk of the jobs): the files of
		// committed commands no longer count.
		refs, err := q.refs()
		if err != nil {
			return fmt.Errorf("blob quota: %w", err)
		}
		if _, ok := refs[sha]; ok {
			q.peers[peer] = list
			return nil
		}
		keep := list[:0]
		for _, p := range list {
			if _, ok := refs[p.sha]; !ok {
				keep = append(keep, p)
			}
		}
		list = keep
		if over() {
			q.peers[peer] = list
			return fmt.Errorf("blob quota of %s exceeded: %d files no command refers to yet (limit %d files, %d bytes)",
				peerLabel(peer), len(list), q.maxFiles, q.maxBytes)
		}
	}
	q.peers[peer] = append(list, pendingBlob{sha: sha, size: size, at: now})
	return nil
}

func peerLabel(p string) string {
	if p == "" {
		return "an unauthenticated peer"
	}
	return "node " + p
}
