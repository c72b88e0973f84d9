package podspec

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestParseQuantity(t *testing.T) {
	tests := []struct {
		in      string
		want    Quantity
		wantErr string
	}{
		{"0", 0, ""},
		{"65536", 64 * Ki, ""},
		{"1Ki", Ki, ""},
		{"64Mi", 64 * Mi, ""},
		{"4Gi", 4 * Gi, ""},
		{"2Ti", 2 * Ti, ""},
		{"1.5Gi", 1536 * Mi, ""},
		{"0.5Ki", 512, ""},
		{"007Mi", 7 * Mi, ""},
		{"", 0, "empty quantity"},
		{"64MB", 0, `invalid quantity "64MB" (use Ki, Mi or Gi: "64Mi")`},
		{"64M", 0, `(use Ki, Mi or Gi: "64Mi")`},
		{"1G", 0, `(use Ki, Mi or Gi: "1Gi")`},
		{"512k", 0, `"512Ki"`},
		{"64MiB", 0, `"64Mi"`},
		{"100B", 0, `"100"`},
		{"64Pi", 0, "use Ki, Mi or Gi, or plain bytes"},
		{"Mi", 0, "use plain bytes or a number with Ki, Mi or Gi"},
		{"1.Mi", 0, "invalid quantity"},
		{".5Mi", 0, "invalid quantity"},
		{"1.2.3", 0, "invalid quantity"},
		{"1e6", 0, "invalid quantity"},
		{" 1Mi", 0, "invalid quantity"},
		{"-1", 0, "must not be negative"},
		{"1.0001", 0, "not a whole number of bytes"},
		{"9999999999Ti", 0, "too large"},
		{strings.Repeat("9", 41), 0, "too long"},
	}
	for _, tt := range tests {
		got, err := ParseQuantity(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseQuantity(%q) error = %v, want it to contain %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseQuantity(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestQuantityString(t *testing.T) {
	tests := []struct {
		q    Quantity
		want string
	}{
		{0, "0"}, {1, "1"}, {1000, "1000"}, {Ki, "1Ki"}, {1536, "1536"}, {1536 * Ki, "1536Ki"},
		{64 * Mi, "64Mi"}, {1536 * Mi, "1536Mi"}, {4 * Gi, "4Gi"}, {Ti, "1Ti"}, {-Ki, "-1024"},
	}
	for _, tt := range tests {
		if got := tt.q.String(); got != tt.want {
			t.Errorf("Quantity(%d).String() = %q, want %q", int64(tt.q), got, tt.want)
		}
		if tt.q < 0 {
			continue
		}
		back, err := ParseQuantity(tt.q.String())
		if err != nil || back != tt.q {
			t.Errorf("ParseQuantity(%q) = %d, %v; want %d", tt.q.String(), back, err, int64(tt.q))
		}
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{"0", 0, ""},
		{"5s", 5 * time.Second, ""},
		{"1m30s", 90 * time.Second, ""},
		{"250ms", 250 * time.Millisecond, ""},
		{"1.5h", 90 * time.Minute, ""},
		{"5", 0, `invalid duration "5" (use a number with a unit`},
		{"1d", 0, `there is no day unit`},
		{"soon", 0, "invalid duration"},
		{"-1s", 0, "must not be negative"},
		{"", 0, "invalid duration"},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseDuration(%q) error = %v, want it to contain %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got.Std() != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
		if back, err := ParseDuration(got.String()); err != nil || back != got {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", got.String(), back, err, got)
		}
	}
}

func TestParsePriority(t *testing.T) {
	tests := []struct {
		in      string
		want    Priority
		wantErr bool
	}{
		{"high", PriorityHigh, false}, {"normal", 0, false}, {"low", PriorityLow, false},
		{"42", 42, false}, {"-7", -7, false}, {"urgent", 0, true}, {"HIGH", 0, true}, {"1.5", 0, true},
	}
	for _, tt := range tests {
		got, err := ParsePriority(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParsePriority(%q) = %d, %v; want %d (error %v)", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
	for p, want := range map[Priority]string{PriorityHigh: "high", PriorityNormal: "normal", PriorityLow: "low", 5: "5"} {
		if got := p.String(); got != want {
			t.Errorf("Priority(%d).String() = %q, want %q", int32(p), got, want)
		}
	}
}

func TestScalarsJSON(t *testing.T) {
	type doc struct {
		Q Quantity `json:"q"`
		D Duration `json:"d"`
		P Priority `json:"p"`
	}
	in := doc{Q: 64 * Mi, D: Duration(1500 * time.Millisecond), P: PriorityHigh}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"q":"64Mi","d":"1.5s","p":1000}`; string(b) != want {
		t.Errorf("json = %s, want %s", b, want)
	}
	var out doc
	if err := json.Unmarshal(b, &out); err != nil || out != in {
		t.Errorf("json round trip = %+v, %v; want %+v", out, err, in)
	}
	if err := json.Unmarshal([]byte(`{"q":"64MB"}`), &out); err == nil {
		t.Error("json.Unmarshal accepted quantity 64MB")
	}
	if err := json.Unmarshal([]byte(`{"d":"5"}`), &out); err == nil {
		t.Error("json.Unmarshal accepted duration 5")
	}
}

func TestMemoryPages(t *testing.T) {
	tests := []struct {
		mem  Quantity
		want uint32
	}{
		{0, 0}, {-1, 0}, {64 * Ki, 1}, {100 * Ki, 1}, {128 * Ki, 2}, {64 * Mi, 1024}, {4 * Gi, 65536}, {8 * Gi, 65536},
	}
	for _, tt := range tests {
		if got := (Resources{Memory: tt.mem}).MemoryPages(); got != tt.want {
			t.Errorf("MemoryPages(%s) = %d, want %d", tt.mem, got, tt.want)
		}
	}
}

func TestBackoffDelay(t *testing.T) {
	b := DefaultRestartBackoff()
	tests := []struct {
		failures int
		want     time.Duration
	}{
		{0, 10 * time.Second}, {1, 10 * time.Second}, {2, 20 * time.Second}, {3, 40 * time.Second},
		{5, 160 * time.Second}, {6, 5 * time.Minute}, {100, 5 * time.Minute},
	}
	for _, tt := range tests {
		if got := b.Delay(tt.failures); got != tt.want {
			t.Errorf("Delay(%d) = %v, want %v", tt.failures, got, tt.want)
		}
	}
	short := Backoff{Initial: Duration(time.Millisecond), Max: Duration(3 * time.Millisecond)}
	if got := short.Delay(3); got != 3*time.Millisecond {
		t.Errorf("short Delay(3) = %v, want 3ms", got)
	}
}

func TestYAMLSafe(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"a":"b"}`, `{"a":"b"}`},
		{"\"\x7f\"", `"\u007f"`},
		{"\"a\u0085b\"", `"a\u0085b"`},
		{"\"\ufeff\"", `"\ufeff"`},
		{"\"é€😀\"", "\"é€😀\""},
		{"\"\u2028\"", `"\u2028"`},
	}
	for _, tt := range tests {
		if got := string(yamlSafe([]byte(tt.in))); got != tt.want {
			t.Errorf("yamlSafe(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
