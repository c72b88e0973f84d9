package queue

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func validFile(name string) File {
	return File{Name: name, SHA256: strings.Repeat("ab", 32), Size: 1}
}

func TestPipelineValidate(t *testing.T) {
	one := []StageDef{{Name: "s"}}
	tests := []struct {
		name string
		p    Pipeline
		ok   bool
	}{
		{"minimal", Pipeline{Name: "p", Stages: one}, true},
		{"at the limits", Pipeline{Name: strings.Repeat("b", 64), Stages: func() []StageDef {
			s := make([]StageDef, 64)
			for i := range s {
				s[i].Name = "s"
			}
			return s
		}(), MaxAttempts: 1000, Backoff: time.Hour}, true},
		{"merge stage", Pipeline{Name: "p.v2_x-y", Stages: []StageDef{{Name: "a"}, {Name: "m", Merge: true}}}, true},
		{"upper case", Pipeline{Name: "Thumbs", Stages: one}, false},
		{"slash", Pipeline{Name: "a/b", Stages: one}, false},
		{"65 characters", Pipeline{Name: strings.Repeat("a", 65), Stages: one}, false},
		{"no stages", Pipeline{Name: "p"}, false},
		{"bad stage name", Pipeline{Name: "p", Stages: []StageDef{{Name: "ok"}, {Name: "Bad"}}}, false},
		{"max attempts too big", Pipeline{Name: "p", Stages: one, MaxAttempts: 1001}, false},
		{"negative backoff", Pipeline{Name: "p", Stages: one, Backoff: -time.Second}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Validate()
			if tt.ok && err != nil {
				t.Fatalf("Validate = %v; want nil", err)
			}
			if !tt.ok && !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate = %v; want ErrInvalid", err)
			}
		})
	}
}

func TestValidateSubmit(t *testing.T) {
	tests := []struct {
		name    string
		request string
		inputs  []File
		ok      bool
	}{
		{"valid", "req-1", []File{validFile("a"), validFile("dir/b.gz")}, true},
		{"no request id", "", []File{validFile("a")}, true},
		{"longest request id", strings.Repeat("r", MaxRequestID), []File{validFile("a")}, true},
		{"request id too long", strings.Repeat("r", MaxRequestID+1), []File{validFile("a")}, false},
		{"no inputs", "", nil, false},
		{"too many inputs", "", make([]File, MaxJobInputs+1), false},
		{"duplicate names", "", []File{validFile("a"), validFile("a")}, false},
		{"bad sha", "", []File{{Name: "a", SHA256: "abc"}}, false},
		{"negative size", "", []File{{Name: "a", SHA256: strings.Repeat("0", 64), Size: -1}}, false},
		{"escaping name", "", []File{validFile("../etc/passwd")}, false},
		{"inputs too large to describe", "", func() []File {
			n := MaxJobBytes/(MaxFileName+100) + 1
			fs := make([]File, n)
			for i := range fs {
				fs[i] = validFile(fmt.Sprintf("%s/%07d", strings.Repeat("n", MaxFileName-8), i))
			}
			return fs
		}(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateSubmit(tt.request, tt.inputs)
			if tt.ok && err != nil {
				t.Fatalf("ValidateSubmit = %v; want nil", err)
			}
			if !tt.ok && !errors.Is(err, ErrInvalid) {
				t.Fatalf("ValidateSubmit = %v; want ErrInvalid", err)
			}
		})
	}
}

func TestValidFileName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"a", true},
		{"bash/changelog.Debian.gz", true},
		{strings.Repeat("n", MaxFileName), true},
		{"", false},
		{strings.Repeat("n", MaxFileName+1), false},
		{"/etc/passwd", false},
		{"..", false},
		{".", false},
		{"../x", false},
		{"a/../../x", false},
		{"a//b", false},
		{"a/", false},
		{"./a", false},
		{`a\b`, false},
		{"a\x00b", false},
	}
	for _, tt := range tests {
		err := ValidFileName(tt.name)
		if tt.ok && err != nil {
			t.Errorf("ValidFileName(%q) = %v; want nil", tt.name, err)
		}
		if !tt.ok && !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidFileName(%q) = %v; want ErrInvalid", tt.name, err)
		}
	}
}

func TestJobCounts(t *testing.T) {
	j := Job{State: JobPartial, Stages: []StageProgress{{Expected: 3, Done: 2, Dead: 1}, {Expected: 1, Done: 1}}}
	if done, dead, total := j.Counts(); done != 3 || dead != 1 || total != 4 {
		t.Fatalf("Counts = %d, %d, %d; want 3, 1, 4", done, dead, total)
	}
	for state, finished := range map[JobState]bool{JobRunning: false, JobDone: true, JobPartial: true} {
		if j := (Job{State: state}); j.IsFinished() != finished {
			t.Errorf("%s: IsFinished = %v", state, !finished)
		}
	}
}
