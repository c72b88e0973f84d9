package podspec

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// ErrInvalidSpec is wrapped by every problem found in a pod spec: syntax, strict decoding and
// validation alike. errors.Is(err, ErrInvalidSpec) tells a bad spec apart from an I/O error
// (for which errors.Is(err, fs.ErrNotExist) and friends work as usual).
var ErrInvalidSpec = errors.New("invalid pod spec")

// FieldError is one problem in a spec, located by file, line and field path.
type FieldError struct {
	// File is the spec's file name as given to [Load]; empty for [Parse].
	File string
	// Line is the 1-based line of the field (for a missing field, of the object that should hold
	// it); 0 when unknown, e.g. for a Pod built in Go.
	Line int
	// Path names the field the way kubectl does: spec.modules[1].resources.memory. Map keys
	// that are not plain words are quoted: metadata.labels["app.kubernetes.io/name"]. Empty for
	// problems of the document as a whole (syntax, empty file).
	Path string
	// Msg says what is wrong, and how to fix it when that is not obvious.
	Msg string
}

// Error formats the problem as "file:line: path: message", leaving out the parts that are unknown.
func (e *FieldError) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		b.WriteString(e.File + ": ")
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap makes errors.Is(err, ErrInvalidSpec) true.
func (e *FieldError) Unwrap() error { return ErrInvalidSpec }

// SpecError lists every problem found in a spec, ordered by line. It is what [Parse], [Load] and
// [Pod.Validate] return for a bad spec; it behaves like the result of errors.Join over its
// problems (one per line of Error(), and errors.Is/As see each of them).
type SpecError struct {
	Problems []*FieldError
}

// Error returns one problem per line.
func (e *SpecError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap exposes the problems to errors.Is and errors.As.
func (e *SpecError) Unwrap() []error {
	errs := make([]error, len(e.Problems))
	for i, p := range e.Problems {
		errs[i] = p
	}
	return errs
}

// maxProblems bounds the problems listed for one spec: nobody reads more, and a generated file
// with a problem on every line must not produce megabytes of messages.
const maxProblems = 200

// problems collects FieldErrors for one spec.
type problems struct {
	file    string
	list    []*FieldError
	dropped int
}

func (ps *problems) add(line int, path, format string, args ...any) {
	if len(ps.list) >= maxProblems {
		ps.dropped++
		return
	}
	ps.list = append(ps.list, &FieldError{File: ps.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// err returns nil when there is no problem, else a *SpecError sorted by line (problems without a
// line last), keeping discovery order among equals.
func (ps *problems) err() error {
	if len(ps.list) == 0 {
		return nil
	}
	list := append([]*FieldError(nil), ps.list...)
	key := func(e *FieldError) int {
		if e.Line == 0 {
			return int(^uint(0) >> 1)
		}
		return e.Line
	}
	sort.SliceStable(list, func(i, j int) bool { return key(list[i]) < key(list[j]) })
	if ps.dropped > 0 {
		list = append(list, &FieldError{File: ps.file, Msg: fmt.Sprintf("%d more problems not listed", ps.dropped)})
	}
	return &SpecError{Problems: list}
}

// k8sHints maps field names a Kubernetes user is likely to write to the wasmpod field that plays
// their part, with a note shown in the error. A hint is offered only where its target field is
// known, so "image" is explained inside a module but not inside metadata.
//
// A hint without a target explains that the field has no counterpart; it is offered where its
// context field is known.
var k8sHints = map[string]struct{ target, note, context string }{
	"httpGet":   {"", "a probe calls the module's wasmpod_health export; set only its timing: periodSeconds, timeoutSeconds, ...", "periodSeconds"},
	"exec":      {"", "a probe calls the module's wasmpod_health export; set only its timing: periodSeconds, timeoutSeconds, ...", "periodSeconds"},
	"tcpSocket": {"", "a probe calls the module's wasmpod_health export; set only its timing: periodSeconds, timeoutSeconds, ...", "periodSeconds"},
	"grpc":      {"", "a probe calls the module's wasmpod_health export; set only its timing: periodSeconds, timeoutSeconds, ...", "periodSeconds"},
	"ports":     {"", "modules do not listen on ports: the host routes requests to main", "wasm"},

	"containers":     {"modules", "a pod's containers are its modules", ""},
	"initContainers": {"modules", "use a module with role: sidecar for something that starts before main", ""},
	"image":          {"wasm", "a module runs a .wasm file instead of a container image", ""},
	"env":            {"config", "a module reads its settings from config, with the config_get import", ""},
	"args":           {"config", "a module reads its settings from config, with the config_get import", ""},
	"command":        {"config", "a module reads its settings from config, with the config_get import", ""},
	"limits":         {"memory", "set memory, timeout, concurrency and minInstances directly under resources", ""},
	"requests":       {"memory", "set memory, timeout, concurrency and minInstances directly under resources", ""},
	"namespace":      {"name", "wasmpod has no namespaces", ""},
	"volume":         {"volumes", "", ""},
	"mounts":         {"volumeMounts", "", ""},
}

// unknownFieldMsg builds the message for an unknown field, suggesting the closest known one when
// the match is obvious and listing the known fields otherwise.
func unknownFieldMsg(name string, known []string) string {
	if h, ok := k8sHints[name]; ok && h.target == "" && slices.Contains(known, h.context) {
		return fmt.Sprintf("unknown field %q (%s)", name, h.note)
	}
	if s, note := suggestField(name, known); s != "" {
		if note != "" {
			return fmt.Sprintf("unknown field %q; did you mean %q? (%s)", name, s, note)
		}
		return fmt.Sprintf("unknown field %q; did you mean %q?", name, s)
	}
	return fmt.Sprintf("unknown field %q (known fields: %s)", name, strings.Join(known, ", "))
}

// suggestField returns the known field name probably meant by name, and a note, or "".
func suggestField(name string, known []string) (string, string) {
	isKnown := func(f string) bool { return f != "" && slices.Contains(known, f) }
	for _, k := range known {
		if strings.EqualFold(k, name) {
			return k, ""
		}
	}
	if h, ok := k8sHints[name]; ok && isKnown(h.target) {
		return h.target, h.note
	}
	best, bestNote, bestDist := "", "", maxTypoDistance(name)+1
	try := func(candidate, target, note string) {
		if d := editDistance(strings.ToLower(name), strings.ToLower(candidate)); d < bestDist {
			best, bestNote, bestDist = target, note, d
		}
	}
	for _, k := range known {
		try(k, k, "")
	}
	aliases := make([]string, 0, len(k8sHints))
	for a := range k8sHints {
		aliases = append(aliases, a)
	}
	sort.Strings(aliases)
	for _, a := range aliases {
		if h := k8sHints[a]; isKnown(h.target) {
			try(a, h.target, h.note)
		}
	}
	return best, bestNote
}

// suggestValue returns the element of valid equal to s ignoring case, or the closest one within
// typo distance, or "".
func suggestValue(s string, valid []string) string {
	best, bestDist := "", maxTypoDistance(s)+1
	for _, v := range valid {
		if strings.EqualFold(v, s) {
			return v
		}
		if len(valid) > maxSuggestCandidates {
			// Thousands of names (volumes of a huge spec): only exact matches, so validation
			// stays linear instead of an edit distance per pair.
			continue
		}
		if d := editDistance(strings.ToLower(s), strings.ToLower(v)); d < bestDist {
			best, bestDist = v, d
		}
	}
	return best
}

// maxSuggestCandidates bounds the names suggestValue compares by edit distance.
const maxSuggestCandidates = 64

// maxTypoDistance is how many edits still count as an obvious typo of a word of s's length.
func maxTypoDistance(s string) int {
	switch n := len(s); {
	case n <= 2:
		return 0
	case n <= 4:
		return 1
	case n <= 9:
		return 2
	default:
		return 3
	}
}

// editDistance is the optimal string alignment distance between a and b: insertions,
// deletions, substitutions and transpositions of adjacent bytes each cost one.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		// Names that long are not typos of any field; skip the quadratic work.
		if a == b {
			return 0
		}
		return 1 << 20
	}
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
