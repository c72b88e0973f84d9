// Package doctest runs the command blocks of Markdown files as written, so a README whose
// commands broke fails CI.
//
// A command block is an indented code block or a fenced block of sh, bash, shell or console.
// Each must follow (blank lines allowed) a marker comment saying what to do with it:
//
//	<!-- doctest: run -->              run each command in turn; any failure fails the block
//	<!-- doctest: serve -->            the same, but a command that starts a host (wasmpod run,
//	                                   go run ./host/cmd/wasmpod run, make run) is started in the
//	                                   background; the next command runs once it logs "pod
//	                                   running", and at the end of the block it gets SIGTERM and
//	                                   must stop cleanly
//	<!-- doctest: output -->           not commands: sample output
//	<!-- doctest: skip: REASON -->     not runnable here, and why
//
// run and serve take options after the word: in=DIR (the directory the block starts in,
// relative to the base directory; default the base; in=TMP: a new empty directory outside it), needs=TOOL,... (programs it needs), script (run the whole block as one bash
// script, for loops), except "PREFIX" (REASON) (skip the commands starting with PREFIX, saying
// why). A command ending in "#=> TEXT" must print TEXT. A line that is just "cd DIR" moves the
// rest of the block there. Lines ending in a backslash continue on the next line.
package doctest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/wasmpod/wasmpod/internal/podtest"
)

// Block is one command block of a Markdown file.
type Block struct {
	File string // the Markdown file
	Line int    // the line of its first command
	Mode string // run, serve, output or skip
	// Reason is why a skipped block (or an excepted command) does not run.
	Reason string
	In     string   // in=DIR
	Script bool     // script
	Except []string // prefixes of commands not run
	Needs  []string // needs=TOOL,TOOL: programs the block needs on PATH
	Text   []string // the block's lines, unindented
}

// Name is "FILE:LINE".
func (b Block) Name() string { return fmt.Sprintf("%s:%d", filepath.Base(b.File), b.Line) }

var (
	markerRE = regexp.MustCompile(`^<!--\s*doctest:\s*(.*?)\s*-->\s*$`)
	fenceRE  = regexp.MustCompile("^```\\s*([A-Za-z]*)\\s*$")
	exceptRE = regexp.MustCompile(`except "([^"]+)" \(([^)]+)\)`)
	inRE     = regexp.MustCompile(`\bin=(\S+)`)
	needsRE  = regexp.MustCompile(`\bneeds=(\S+)`)
)

// Parse returns the command blocks of a Markdown file. A command block without a marker, or a
// marker without a block, is an error.
func Parse(file string, md []byte) ([]Block, error) {
	lines := strings.Split(string(md), "\n")
	var out []Block
	var errs []error
	var marker string
	markerLine := 0
	take := func(start int, text []string) {
		b := Block{File: file, Line: start + 1, Text: text}
		if marker == "" {
			errs = append(errs, fmt.Errorf("%s:%d: a command block without a <!-- doctest: run|serve|output|skip: REASON --> marker", file, start+1))
			return
		}
		word, rest, _ := strings.Cut(marker, " ")
		word = strings.TrimRight(word, ":,")
		switch word {
		case "run", "serve":
			b.Mode = word
			if m := inRE.FindStringSubmatch(rest); m != nil {
				b.In = m[1]
			}
			b.Script = regexp.MustCompile(`\bscript\b`).MatchString(rest)
			if m := needsRE.FindStringSubmatch(rest); m != nil {
				b.Needs = strings.Split(m[1], ",")
			}
			for _, m := range exceptRE.FindAllStringSubmatch(rest, -1) {
				b.Except = append(b.Except, m[1])
				b.Reason += m[1] + ": " + m[2] + "; "
			}
		case "output":
			b.Mode = word
		case "skip":
			b.Mode, b.Reason = word, strings.TrimSpace(strings.TrimPrefix(marker, "skip:"))
			if b.Reason == "" || b.Reason == "skip" {
				errs = append(errs, fmt.Errorf("%s:%d: a skipped block must say why (<!-- doctest: skip: REASON -->)", file, markerLine))
			}
		default:
			errs = append(errs, fmt.Errorf("%s:%d: unknown doctest marker %q", file, markerLine, marker))
		}
		out = append(out, b)
		marker = ""
	}
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if m := markerRE.FindStringSubmatch(l); m != nil {
			if marker != "" {
				errs = append(errs, fmt.Errorf("%s:%d: a doctest marker with no command block after it", file, markerLine))
			}
			marker, markerLine = m[1], i+1
			continue
		}
		if m := fenceRE.FindStringSubmatch(l); m != nil {
			lang := strings.ToLower(m[1])
			j := i + 1
			for j < len(lines) && !strings.HasPrefix(lines[j], "```") {
				j++
			}
			if lang == "sh" || lang == "bash" || lang == "shell" || lang == "console" {
				take(i+1, lines[i+1:min(j, len(lines))])
			} else if marker != "" && lang != "" {
				errs = append(errs, fmt.Errorf("%s:%d: a doctest marker before a %s block", file, markerLine, lang))
				marker = ""
			}
			i = j
			continue
		}
		if strings.HasPrefix(l, "    ") && strings.TrimSpace(l) != "" && (i == 0 || strings.TrimSpace(lines[i-1]) == "" || markerRE.MatchString(lines[i-1])) && !inList(lines, i) {
			start := i
			var text []string
			for i < len(lines) && (strings.HasPrefix(lines[i], "    ") || strings.TrimSpace(lines[i]) == "" && i+1 < len(lines) && strings.HasPrefix(lines[i+1], "    ")) {
				text = append(text, strings.TrimPrefix(lines[i], "    "))
				i++
			}
			take(start, text)
			i--
			continue
		}
		if marker != "" && strings.TrimSpace(l) != "" {
			errs = append(errs, fmt.Errorf("%s:%d: a doctest marker with no command block after it", file, markerLine))
			marker = ""
		}
	}
	if marker != "" {
		errs = append(errs, fmt.Errorf("%s:%d: a doctest marker with no command block after it", file, markerLine))
	}
	return out, errors.Join(errs...)
}

// inList reports whether the indented line i continues a list item (a Markdown list's
// continuation, not a code block).
func inList(lines []string, i int) bool {
	for j := i - 1; j >= 0; j-- {
		t := lines[j]
		if strings.TrimSpace(t) == "" {
			continue
		}
		trim := strings.TrimLeft(t, " ")
		return strings.HasPrefix(trim, "- ") || strings.HasPrefix(trim, "* ") || regexp.MustCompile(`^\d+\. `).MatchString(trim) ||
			(strings.HasPrefix(t, "  ") && !strings.HasPrefix(t, "    "))
	}
	return false
}

// Commands returns the block's commands: lines joined across trailing backslashes, without
// blank lines and comment-only lines.
func (b Block) Commands() []string {
	var out []string
	var cur string
	for _, l := range b.Text {
		if strings.HasSuffix(l, "\\") {
			cur += strings.TrimSuffix(l, "\\") + " "
			continue
		}
		cur += l
		if t := strings.TrimSpace(cur); t != "" && !strings.HasPrefix(t, "#") {
			out = append(out, t)
		}
		cur = ""
	}
	return out
}

// Env is where blocks run.
type Env struct {
	// Base is the directory blocks start in (in=DIR is relative to it).
	Base string
	// Vars are extra environment variables (NAME=VALUE), e.g. a PATH with the wasmpod binary.
	Vars []string
	// Timeout bounds each command (default 10 minutes).
	Timeout time.Duration
	// Log receives what the block's commands print, for the test's log.
	Log func(format string, args ...any)
}

var serverRE = regexp.MustCompile(`(^|[;&|(]\s*|\s)(wasmpod|go run \./host/cmd/wasmpod|/tmp/wasmpod)\s+run\s|^make run\b`)

// Run runs a run or serve block. It returns nil for output and skip blocks.
func (env Env) Run(ctx context.Context, b Block) error {
	if b.Mode != "run" && b.Mode != "serve" {
		return nil
	}
	if env.Timeout <= 0 {
		env.Timeout = 10 * time.Minute
	}
	if env.Log == nil {
		env.Log = func(string, ...any) {}
	}
	dir := env.Base
	switch b.In {
	case "":
	case "TMP":
		tmp, err := os.MkdirTemp("", "doctest-*")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	default:
		dir = filepath.Join(env.Base, b.In)
	}
	if b.Script {
		script := strings.Join(b.Text, "\n")
		_, err := env.command(ctx, dir, script)
		return err
	}
	var servers []*server
	defer func() {
		for _, s := range servers {
			s.kill()
		}
	}()
	for _, c := range b.Commands() {
		if skipped(c, b.Except) {
			env.Log("$ %s   (not run: excepted)", c)
			continue
		}
		if d, ok := strings.CutPrefix(c, "cd "); ok && !strings.ContainsAny(d, ";&|") {
			dir = filepath.Join(dir, strings.TrimSpace(d))
			env.Log("$ %s", c)
			continue
		}
		cmdText, want, hasWant := strings.Cut(c, "#=>")
		want = strings.TrimSpace(want)
		if b.Mode == "serve" && serverRE.MatchString(cmdText) {
			s, err := env.startServer(dir, strings.TrimSpace(cmdText))
			if err != nil {
				return err
			}
			servers = append(servers, s)
			continue
		}
		out, err := env.command(ctx, dir, cmdText)
		if err != nil {
			return err
		}
		if hasWant && !strings.Contains(out, want) {
			return fmt.Errorf("%s: printed %q, want it to contain %q", strings.TrimSpace(cmdText), out, want)
		}
	}
	for i := len(servers) - 1; i >= 0; i-- {
		if err := servers[i].stop(); err != nil {
			return err
		}
	}
	servers = nil
	return nil
}

func skipped(c string, except []string) bool {
	for _, p := range except {
		if strings.HasPrefix(c, p) {
			return true
		}
	}
	return false
}

// command runs one command (or script) with bash -euo pipefail and returns its output.
func (env Env) command(ctx context.Context, dir, text string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, env.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", text)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env.Vars...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	env.Log("$ %s   (in %s, %s)\n%s", strings.TrimSpace(text), dir, time.Since(start).Round(time.Millisecond), out.String())
	if err != nil {
		return out.String(), fmt.Errorf("%s (in %s): %v\n%s", strings.TrimSpace(text), dir, err, tail(out.String()))
	}
	return out.String(), nil
}

// server is a host started by a serve block.
type server struct {
	text string
	cmd  *exec.Cmd
	out  *podtest.SyncBuffer
	done chan struct{}
	err  error
}

// startServer starts a host command in its own process group and waits until it logs "pod
// running".
func (env Env) startServer(dir, text string) (*server, error) {
	cmd := exec.Command("bash", "-c", text)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env.Vars...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	s := &server{text: text, cmd: cmd, out: &podtest.SyncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = s.out, s.out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", text, err)
	}
	go func() { s.err = cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(env.Timeout)
	for !strings.Contains(s.out.String(), "pod running") {
		select {
		case <-s.done:
			return nil, fmt.Errorf("%s (in %s) exited before serving: %v\n%s", text, dir, s.err, tail(s.out.String()))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.kill()
			return nil, fmt.Errorf("%s (in %s): not serving after %s\n%s", text, dir, env.Timeout, tail(s.out.String()))
		}
	}
	env.Log("$ %s   (in %s, serving in the background)", text, dir)
	return s, nil
}

// stop sends SIGTERM to the host's process group and waits for a clean stop: the host's last
// words are "stopped".
func (s *server) stop() error {
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(60 * time.Second):
		s.kill()
		return fmt.Errorf("%s did not stop within 60s of SIGTERM\n%s", s.text, tail(s.out.String()))
	}
	if !strings.Contains(s.out.String(), "msg=stopped") {
		return fmt.Errorf("%s did not stop cleanly on SIGTERM (%v)\n%s", s.text, s.err, tail(s.out.String()))
	}
	return nil
}

func (s *server) kill() {
	select {
	case <-s.done:
	default:
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
}

func tail(s string) string {
	if len(s) > 4000 {
		return "..." + s[len(s)-4000:]
	}
	return s
}
