package admin

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
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
