package admin

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// ErrAppTokens: an app token file is malformed.
var ErrAppTokens = errors.New("app token file")

var appNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// minAppToken is the shortest app token accepted: 16 bytes (128 bits as hex, 96 as base64)
// cannot be guessed over a network.
const minAppToken = 16

// ParseAppTokens reads an app token file: one app a line, "NAME TOKEN" (blank lines and lines
// starting with # skipped). NAME is the app's session namespace (1-64 of A-Z a-z 0-9 . _ -,
// starting with a letter or digit); TOKEN is at least 16 bytes without spaces. Names and tokens
// are unique. Every bad line is named.
func ParseAppTokens(r io.Reader) (map[string]string, error) {
	apps := map[string]string{}
	byToken := map[string]string{}
	var problems []string
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		switch {
		case len(f) != 2:
			problems = append(problems, fmt.Sprintf("line %d: want NAME TOKEN", n))
		case !appNameRE.MatchString(f[0]):
			problems = append(problems, fmt.Sprintf("line %d: app name %q: want 1-64 of A-Z a-z 0-9 . _ -", n, f[0]))
		case len(f[1]) < minAppToken:
			problems = append(problems, fmt.Sprintf("line %d: app %s: token shorter than %d bytes", n, f[0], minAppToken))
		case apps[f[0]] != "":
			problems = append(problems, fmt.Sprintf("line %d: app %s listed twice", n, f[0]))
		case byToken[f[1]] != "":
			problems = append(problems, fmt.Sprintf("line %d: app %s has app %s's token", n, f[0], byToken[f[1]]))
		default:
			apps[f[0]], byToken[f[1]] = f[1], f[0]
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrAppTokens, err)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrAppTokens, strings.Join(problems, "; "))
	}
	return apps, nil
}

// checkAppTokens refuses an app set in which an app holds the admin token: that app would be the
// operator.
func checkAppTokens(adminToken string, apps map[string]string) error {
	for app, tok := range apps {
		if adminToken != "" && tok == adminToken {
			return fmt.Errorf("%w: app %s has the admin token", ErrAppTokens, app)
		}
	}
	return nil
}

// apps is the current app credentials: the last SetAppTokens, else Config.AppTokens.
func (s *Server) apps() map[string]string {
	if p := s.appTokens.Load(); p != nil {
		return *p
	}
	return s.cfg.AppTokens
}

// SetAppTokens replaces the election sidecar's app credentials (Config.AppTokens) of a running
// server: every request from then on is checked against apps, so a removed app's token stops
// working at once and a new one starts. A set in which an app has the admin token is refused
// (ErrAppTokens) and the current one stays. Safe to call while requests are served; apps must
// not be changed afterwards.
func (s *Server) SetAppTokens(apps map[string]string) error {
	if err := checkAppTokens(s.cfg.Token, apps); err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	s.appTokens.Store(&apps)
	return nil
}

// ReloadAppTokens reads an app token file (ParseAppTokens) and makes it the app credentials.
// A file that cannot be read or has a bad line is refused with an error naming the file and
// every bad line, and the current tokens keep working: nothing is half-applied.
func (s *Server) ReloadAppTokens(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("app token file: %w", err)
	}
	defer f.Close()
	apps, err := ParseAppTokens(f)
	if err == nil {
		err = s.SetAppTokens(apps)
	}
	if err != nil {
		return fmt.Errorf("app token file %s: %w", file, err)
	}
	s.log.Info("app tokens reloaded", "file", file, "apps", len(apps))
	return nil
}

// appTokenSettle is how long an app token file must stay unchanged before a watcher reloads it:
// an editor's write, or a write and a rename into place, ends well within it.
const appTokenSettle = 200 * time.Millisecond

// WatchAppTokens reloads file (ReloadAppTokens) each time its content changes, once its
// directory has been quiet for appTokenSettle, until Shutdown. A refused file is logged as an
// error and the current tokens stay. It watches the file's directory and compares the content
// (read through symbolic links) with what it last saw, rather than events naming the file: an
// editor's rename into place names it, but a Kubernetes ConfigMap or Secret volume is updated by
// swapping a symbolic link two levels up (..data), and no event names the file at all.
func (s *Server) WatchAppTokens(file string) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("admin: watching the app token file: %w", err)
	}
	file = filepath.Clean(file)
	if err := w.Add(filepath.Dir(file)); err != nil {
		w.Close()
		return fmt.Errorf("admin: watching the app token file: %w", err)
	}
	seen := contentHash(file) // what the tokens in force were read from (or its absence)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer w.Close()
		settle := time.NewTimer(time.Hour)
		settle.Stop()
		defer settle.Stop()
		for {
			select {
			case <-s.ctx.Done():
				return
			case _, ok := <-w.Events:
				if !ok {
					return
				}
				settle.Reset(appTokenSettle)
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				s.log.Warn("app token file watch", "file", file, "err", err)
			case <-settle.C:
				now := contentHash(file)
				if now == seen {
					continue // another file of the directory, or the same content again
				}
				seen = now
				if err := s.ReloadAppTokens(file); err != nil {
					s.log.Error("app token file refused; the previous app tokens stay", "err", err)
				}
			}
		}
	}()
	return nil
}

// contentHash is the sha256 of file's content, or the read error's text when it cannot be read
// (so that a file that stays missing is reported once, not at every event of its directory).
func contentHash(file string) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return "error: " + err.Error()
	}
	sum := sha256.Sum256(b)
	return string(sum[:])
}
