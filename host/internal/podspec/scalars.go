package podspec

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// nodeDecoder is implemented by the types that read themselves from a YAML scalar. The error's
// message is put after the field path; it must say what was wrong with the value.
type nodeDecoder interface {
	decodeNode(n *yaml.Node) error
}

// Quantity is a number of bytes written in Kubernetes quantity syntax: plain bytes ("65536") or
// a binary suffix ("64Ki", "64Mi", "1Gi", "1Ti"); a decimal fraction is allowed when the result
// is a whole number of bytes ("1.5Gi"). Decimal suffixes (k, M, G, MB, ...) are refused: in a
// memory limit 64M (64,000,000 bytes) is almost always a typo for 64Mi. In YAML and JSON a
// Quantity is a string; [Quantity.String] gives the canonical form (the largest exact suffix).
type Quantity int64

// Binary multiples, for writing quantities in Go: 64 * podspec.Mi.
const (
	Ki Quantity = 1 << 10
	Mi Quantity = 1 << 20
	Gi Quantity = 1 << 30
	Ti Quantity = 1 << 40
)

var quantitySuffixes = []struct {
	suffix string
	mult   Quantity
}{{"Ti", Ti}, {"Gi", Gi}, {"Mi", Mi}, {"Ki", Ki}}

// decimalSuffixes are suffixes people write for bytes that a Quantity refuses, each with the
// binary suffix to suggest instead.
var decimalSuffixes = map[string]string{
	"k": "Ki", "K": "Ki", "M": "Mi", "G": "Gi", "T": "Ti",
	"kB": "Ki", "KB": "Ki", "MB": "Mi", "GB": "Gi", "TB": "Ti",
	"KiB": "Ki", "MiB": "Mi", "GiB": "Gi", "TiB": "Ti",
	"B": "", "b": "",
}

// ParseQuantity parses s as described for [Quantity].
func ParseQuantity(s string) (Quantity, error) {
	if s == "" {
		return 0, errors.New("empty quantity (use e.g. \"64Mi\")")
	}
	if len(s) > 40 {
		return 0, fmt.Errorf("invalid quantity %q: too long", truncate(s))
	}
	if strings.HasPrefix(s, "-") {
		return 0, fmt.Errorf("invalid quantity %q: must not be negative", s)
	}
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	num, suffix := s[:i], s[i:]
	if !validDecimal(num) {
		return 0, fmt.Errorf("invalid quantity %q (use plain bytes or a number with Ki, Mi or Gi, e.g. \"64Mi\")", s)
	}
	mult := Quantity(1)
	if suffix != "" {
		found := false
		for _, q := range quantitySuffixes {
			if suffix == q.suffix {
				mult, found = q.mult, true
				break
			}
		}
		if !found {
			if alt, ok := decimalSuffixes[suffix]; ok {
				return 0, fmt.Errorf("invalid quantity %q (use Ki, Mi or Gi: %q)", s, num+alt)
			}
			return 0, fmt.Errorf("invalid quantity %q (use Ki, Mi or Gi, or plain bytes)", s)
		}
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, fmt.Errorf("invalid quantity %q", s)
	}
	r.Mul(r, new(big.Rat).SetInt64(int64(mult)))
	if !r.IsInt() {
		return 0, fmt.Errorf("invalid quantity %q: not a whole number of bytes", s)
	}
	if !r.Num().IsInt64() {
		return 0, fmt.Errorf("invalid quantity %q: too large", s)
	}
	return Quantity(r.Num().Int64()), nil
}

// validDecimal reports whether s is digits with at most one inner decimal point.
func validDecimal(s string) bool {
	intPart, frac, hasDot := strings.Cut(s, ".")
	if intPart == "" || strings.Trim(intPart, "0123456789") != "" {
		return false
	}
	if hasDot && (frac == "" || strings.Trim(frac, "0123456789") != "") {
		return false
	}
	return true
}

// String returns the canonical form: the largest binary suffix that divides the value exactly,
// or plain bytes. It parses back to the same value.
func (q Quantity) String() string {
	if q == 0 {
		return "0"
	}
	if q < 0 {
		// Only reachable for a Quantity built in Go; validation rejects it.
		return strconv.FormatInt(int64(q), 10)
	}
	for _, s := range quantitySuffixes {
		if q%s.mult == 0 {
			return strconv.FormatInt(int64(q/s.mult), 10) + s.suffix
		}
	}
	return strconv.FormatInt(int64(q), 10)
}

// Bytes returns the quantity as a number of bytes.
func (q Quantity) Bytes() int64 { return int64(q) }

// MarshalText encodes the canonical form, so JSON shows "64Mi".
func (q Quantity) MarshalText() ([]byte, error) { return []byte(q.String()), nil }

// UnmarshalText parses a quantity, so encoding/json can read what MarshalText wrote.
func (q *Quantity) UnmarshalText(b []byte) error {
	v, err := ParseQuantity(string(b))
	if err != nil {
		return err
	}
	*q = v
	return nil
}

func (q *Quantity) decodeNode(n *yaml.Node) error {
	switch n.ShortTag() {
	case "!!str":
		v, err := ParseQuantity(n.Value)
		if err != nil {
			return err
		}
		*q = v
		return nil
	case "!!int":
		var v int64
		if err := n.Decode(&v); err != nil {
			return fmt.Errorf("invalid quantity %s: too large", n.Value)
		}
		if v < 0 {
			return fmt.Errorf("invalid quantity %s: must not be negative", n.Value)
		}
		*q = Quantity(v)
		return nil
	}
	return fmt.Errorf("expected a quantity such as \"64Mi\", got %s", describe(n))
}

// Duration is a time span written as a Go duration string: "300ms", "5s", "1m30s", "2h". A bare
// number is refused (except 0) because its unit would be a guess. In YAML and JSON a Duration is
// a string; [Duration.String] gives the canonical form.
type Duration time.Duration

// ParseDuration parses s as described for [Duration]. Negative durations are refused.
func ParseDuration(s string) (Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		msg := fmt.Sprintf("invalid duration %q (use a number with a unit: ns, us, ms, s, m or h, e.g. \"5s\")", truncate(s))
		if strings.HasSuffix(s, "d") {
			msg = fmt.Sprintf("invalid duration %q (there is no day unit: use hours, e.g. \"24h\")", truncate(s))
		}
		return 0, errors.New(msg)
	}
	if d < 0 {
		return 0, fmt.Errorf("invalid duration %q: must not be negative", s)
	}
	return Duration(d), nil
}

// Std returns the duration as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String returns the canonical form, time.Duration's: "5s", "1m30s", "0s".
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText encodes the canonical form, so JSON shows "5s".
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses a duration, so encoding/json can read what MarshalText wrote.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

func (d *Duration) decodeNode(n *yaml.Node) error {
	switch n.ShortTag() {
	case "!!str":
		v, err := ParseDuration(n.Value)
		if err != nil {
			return err
		}
		*d = v
		return nil
	case "!!int", "!!float":
		if n.Value == "0" {
			*d = 0
			return nil
		}
		return fmt.Errorf("invalid duration %s: a duration needs a unit (e.g. \"%ss\")", n.Value, n.Value)
	}
	return fmt.Errorf("expected a duration such as \"5s\", got %s", describe(n))
}

// Priority orders modules when the node is oversubscribed: a module with a higher priority keeps
// running longer. Like a Kubernetes PriorityClass value it is a signed integer, higher is more
// important, and the default is 0. In YAML it may also be a named class:
//
//	high   = 1000 (PriorityHigh)
//	normal = 0    (PriorityNormal, the default)
//	low    = -1000 (PriorityLow)
//
// Integers must lie within [MinPriority, MaxPriority]. In JSON a Priority is always a number.
type Priority int32

// Named priority classes and the allowed range (Kubernetes' range for user priority classes).
const (
	PriorityHigh   Priority = 1000
	PriorityNormal Priority = 0
	PriorityLow    Priority = -1000
	MaxPriority    Priority = 1_000_000_000
	MinPriority    Priority = -1_000_000_000
)

var priorityNames = map[string]Priority{"high": PriorityHigh, "normal": PriorityNormal, "low": PriorityLow}

// ParsePriority parses a class name (high, normal, low) or a decimal integer.
func ParsePriority(s string) (Priority, error) {
	if p, ok := priorityNames[s]; ok {
		return p, nil
	}
	if v, err := strconv.ParseInt(s, 10, 32); err == nil {
		return Priority(v), nil
	}
	return 0, fmt.Errorf("invalid priority %q (use high, normal, low or an integer)", truncate(s))
}

// String returns the class name for the named values and the number otherwise.
func (p Priority) String() string {
	for name, v := range priorityNames {
		if v == p {
			return name
		}
	}
	return strconv.FormatInt(int64(p), 10)
}

func (p *Priority) decodeNode(n *yaml.Node) error {
	switch n.ShortTag() {
	case "!!int":
		var v int64
		if err := n.Decode(&v); err != nil || v < math.MinInt32 || v > math.MaxInt32 {
			return fmt.Errorf("priority %s is out of range [%d, %d]", n.Value, MinPriority, MaxPriority)
		}
		*p = Priority(v)
		return nil
	case "!!str":
		if v, ok := priorityNames[n.Value]; ok {
			*p = v
			return nil
		}
		if s := suggestValue(n.Value, []string{"high", "normal", "low"}); s != "" {
			return fmt.Errorf("invalid priority %q (did you mean %q?)", truncate(n.Value), s)
		}
		if _, err := strconv.ParseInt(n.Value, 10, 64); err == nil {
			return fmt.Errorf("invalid priority %q (a number must not be quoted)", n.Value)
		}
		return fmt.Errorf("invalid priority %q (use high, normal, low or an integer)", truncate(n.Value))
	}
	return fmt.Errorf("invalid priority %s (use high, normal, low or an integer)", describe(n))
}

// truncate shortens s for an error message.
func truncate(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "..."
}
