package version

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// StateFormatFile is the stamp in a state directory: the StateFormat of the newest binary that
// ran on it, one decimal number.
const StateFormatFile = "FORMAT"

// ErrStateFormat means a state directory was written in a format newer than this binary reads
// (a downgrade across a format change).
var ErrStateFormat = errors.New("state directory format too new")

// StampStateDir checks the state format stamp of dir, which must exist, and stamps it with this
// binary's StateFormat. A directory without a stamp is format 1 (every release before the
// stamp wrote format 1). A stamp newer than StateFormat is refused with ErrStateFormat, naming
// both formats and this binary's version; nothing is written then.
func StampStateDir(dir string) error {
	path := filepath.Join(dir, StateFormatFile)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("state dir %s: %w", dir, err)
	default:
		n, perr := strconv.Atoi(strings.TrimSpace(string(b)))
		if perr != nil || n < 1 {
			return fmt.Errorf("state dir %s: %s holds %q, not a state format number", dir, StateFormatFile, strings.TrimSpace(string(b)))
		}
		if n > StateFormat {
			return fmt.Errorf("%w: state dir %s was written by a wasmpod with state format %d; this one (%s) reads formats up to %d: run a release with state format %d or later (a downgrade across a state format change is not possible)",
				ErrStateFormat, dir, n, Get().Version, StateFormat, n)
		}
		if n == StateFormat {
			return nil
		}
	}
	tmp, err := os.CreateTemp(dir, StateFormatFile+".*")
	if err != nil {
		return fmt.Errorf("state dir %s: stamp: %w", dir, err)
	}
	_, err = tmp.WriteString(strconv.Itoa(StateFormat) + "\n")
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("state dir %s: stamp: %w", dir, err)
	}
	return nil
}
