// Package ketama is a consistent-hash ring in the style of libketama (last.fm), the scheme
// memcached clients and twemproxy use: each server gets 160 points on a 32-bit ring (40 MD5
// digests of "server-i", 4 points each) and a key goes to the first point at or after the
// first 4 bytes of its own MD5 digest. Adding a server to N moves about 1/(N+1) of the keys,
// all of them to the new server.
package ketama

import (
	"crypto/md5"
	"encoding/binary"
	"sort"
)

// PointsPerServer is libketama's 160 points for a server of weight 1.
const PointsPerServer = 160

type point struct {
	hash   uint32
	server int
}

// Ring maps keys to servers. It is immutable once built.
type Ring struct {
	servers []string
	points  []point
}

// New builds a ring over servers (their names, usually "host:port"). Duplicates count once.
func New(servers []string) *Ring {
	r := &Ring{}
	seen := map[string]bool{}
	for _, s := range servers {
		if seen[s] {
			continue
		}
		seen[s] = true
		idx := len(r.servers)
		r.servers = append(r.servers, s)
		for i := 0; i < PointsPerServer/4; i++ {
			d := md5.Sum([]byte(s + "-" + itoa(i)))
			for k := 0; k < 4; k++ {
				r.points = append(r.points, point{binary.LittleEndian.Uint32(d[k*4:]), idx})
			}
		}
	}
	sort.Slice(r.points, func(i, j int) bool {
		if r.points[i].hash != r.points[j].hash {
			return r.points[i].hash < r.points[j].hash
		}
		return r.servers[r.points[i].server] < r.servers[r.points[j].server]
	})
	return r
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b [20]byte
	n := len(b)
	for i > 0 {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
	}
	return string(b[n:])
}

// Servers returns the servers in the order given.
func (r *Ring) Servers() []string { return r.servers }

// Get returns the server key belongs to, or "" for an empty ring.
func (r *Ring) Get(key string) string {
	if len(r.points) == 0 {
		return ""
	}
	d := md5.Sum([]byte(key))
	h := binary.LittleEndian.Uint32(d[:4])
	i := sort.Search(len(r.points), func(i int) bool { return r.points[i].hash >= h })
	if i == len(r.points) {
		i = 0
	}
	return r.servers[r.points[i].server]
}
