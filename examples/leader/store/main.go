// Command store is the fenced store of the leader example: a tiny HTTP key-value log that
// admits a write only when its fencing token is at least the highest it has admitted for that
// name (cluster.Fence), so a leader that was paused past its lease cannot overwrite the work of
// its successor. The wasmpod host writes to it on a guest's behalf (the fenced_write import).
//
//	store --listen 127.0.0.1:7070
//
//	PUT /v1/fenced/{name}   header Fencing-Token: N, body: the record -> 200, or 409 if stale
//	GET /v1/fenced/{name}   -> {"highest": N, "writes": [...], "rejected": [...]}
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wasmpod/wasmpod/cluster"
)

// Record is one write the store saw.
type Record struct {
	Token   uint64    `json:"token"`
	Session string    `json:"session"`
	Data    string    `json:"data"`
	Time    time.Time `json:"time"`
}

// Log is what the store holds for one name.
type Log struct {
	Highest  uint64   `json:"highest"`
	Writes   []Record `json:"writes"`
	Rejected []Record `json:"rejected"`
}

type store struct {
	mu    sync.Mutex
	fence cluster.Fence
	logs  map[string]*Log
}

func (s *store) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutPrefix(r.URL.Path, "/v1/fenced/")
	if !ok || name == "" || strings.Contains(name, "/") {
		http.Error(w, "no route", http.StatusNotFound)
		return
	}
	switch r.Method {
	case http.MethodGet:
		s.mu.Lock()
		b, _ := json.Marshal(s.log(name))
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	case http.MethodPut:
		tok, err := strconv.ParseUint(r.Header.Get("Fencing-Token"), 10, 64)
		if err != nil || tok == 0 {
			http.Error(w, "Fencing-Token header: want a positive integer", http.StatusBadRequest)
			return
		}
		data, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rec := Record{Token: tok, Session: r.Header.Get("Wasmpod-Session"), Data: string(data), Time: time.Now()}
		s.mu.Lock()
		defer s.mu.Unlock()
		l := s.log(name)
		// Admit and append under one lock: the check and the write are one transaction.
		if err := s.fence.Admit(name, tok); err != nil {
			l.Rejected = append(l.Rejected, rec)
			w.WriteHeader(http.StatusConflict)
			fmt.Fprintf(w, "stale token %d: highest admitted is %d\n", tok, s.fence.Highest(name))
			return
		}
		l.Highest = tok
		l.Writes = append(l.Writes, rec)
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (s *store) log(name string) *Log {
	l := s.logs[name]
	if l == nil {
		l = &Log{Writes: []Record{}, Rejected: []Record{}}
		s.logs[name] = l
	}
	return l
}

func main() {
	listen := flag.String("listen", "127.0.0.1:7070", "listen address")
	flag.Parse()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "store:", err)
		os.Exit(1)
	}
	fmt.Printf("store listening on %s\n", ln.Addr())
	srv := &http.Server{Handler: &store{logs: map[string]*Log{}}, ReadHeaderTimeout: 5 * time.Second}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-sigs; srv.Close() }()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "store:", err)
		os.Exit(1)
	}
}
