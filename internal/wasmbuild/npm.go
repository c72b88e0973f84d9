package wasmbuild

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// npmInstallOnce runs `npm ci` with extra flags on a copy of srcDir's package.json and
// package-lock.json, into CacheDir()/PREFIX-HASH, unless that folder already holds want (a path
// relative to it). It returns the absolute path of want. Safe across processes: each installs
// into a private temporary folder and renames it into place; a loser of that race uses the
// winner's folder.
func npmInstallOnce(srcDir, prefix, hash string, flags []string, want string) (string, error) {
	final := filepath.Join(CacheDir(), prefix+"-"+hash[:32])
	target := filepath.Join(final, want)
	if _, err := os.Stat(target); err == nil {
		return target, nil
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return "", errors.New("npm not found (apt-get install npm)")
	}
	if err := os.MkdirAll(CacheDir(), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(CacheDir(), prefix+"-*.tmp")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp) // no-op after a successful rename
	for _, f := range []string{"package.json", "package-lock.json"} {
		b, err := os.ReadFile(filepath.Join(srcDir, f))
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(tmp, f), b, 0o644); err != nil {
			return "", err
		}
	}
	args := append([]string{"ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"}, flags...)
	cmd := exec.Command(npm, args...)
	cmd.Dir = tmp
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("npm %s (in a copy of %s): %v\n%s", strings.Join(args, " "), srcDir, err, b)
	}
	if err := os.Rename(tmp, final); err != nil {
		if _, statErr := os.Stat(target); statErr == nil {
			return target, nil // another process installed it first
		}
		return "", err
	}
	if _, err := os.Stat(target); err != nil {
		return "", fmt.Errorf("npm ci in %s installed no %s: %w", srcDir, want, err)
	}
	return target, nil
}
