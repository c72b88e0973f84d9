// Command extism-go is an Extism plugin written with extism go-pdk, run unchanged by wasmpod's
// runtime (ABIExtism) in its tests. It plays every bytes-in, bytes-out role:
//
//	leaf    sums the input bytes into a little-endian uint64 (the same leaf as plugins/benchleaf)
//	merge   joins the present parts of a merge input framed as in guest-sdk/ABI.md section 2.1
//	        with newlines, prefixed by "missing=N\n" when parts are missing (as plugins/echo);
//	        malformed framing is an error (code 1)
//	handle  commands: "config:<key>" returns that config value (error if missing),
//	        "fetch:<url>" GETs the URL and returns "<status> <body>", "post:<url>" POSTs
//	        "ping" with a header and returns "<status> <content-type header> <body>",
//	        "fail:<msg>" sets an error, "log:<msg>" logs msg at info, "logall:<msg>" logs
//	        "<level> <msg>" at each of trace, debug, info, warn and error, "echo:<x>" returns
//	        x, "count:<var>" adds one to the integer var and returns it, "setvar:<var>=<n>"
//	        stores n bytes in the var, "getvar:<var>" returns its length, "delvar:<var>"
//	        removes it, "fill:<path>:<n>" writes n bytes to the file path (WASI) and returns n,
//	        "read:<path>" returns the file's contents; anything else is an error
//	noop    does nothing (for benchmarks)
//	count_vowels, run_test
//	        odd export names, as real plugins have them: count_vowels returns the number of
//	        ASCII vowels of the input, run_test returns "passed"
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o extism-go.wasm .
package main

import (
	"encoding/binary"
	"errors"
	"os"
	"strconv"
	"strings"

	"github.com/extism/go-pdk"
)

//go:wasmexport leaf
func leaf() int32 {
	var s uint64
	for _, b := range pdk.Input() {
		s += uint64(b)
	}
	var out [8]byte
	binary.LittleEndian.PutUint64(out[:], s)
	pdk.Output(out[:])
	return 0
}

//go:wasmexport merge
func merge() int32 {
	out, err := join(pdk.Input())
	if err != nil {
		pdk.SetError(err)
		return 1
	}
	pdk.Output(out)
	return 0
}

func join(in []byte) ([]byte, error) {
	if len(in) < 4 {
		return nil, errors.New("malformed merge input: no part count")
	}
	n := binary.LittleEndian.Uint32(in)
	in = in[4:]
	var present [][]byte
	missing := 0
	for i := uint32(0); i < n; i++ {
		if len(in) < 4 {
			return nil, errors.New("malformed merge input: truncated part length")
		}
		l := binary.LittleEndian.Uint32(in)
		in = in[4:]
		if l == 0xFFFFFFFF {
			missing++
			continue
		}
		if uint64(l) > uint64(len(in)) {
			return nil, errors.New("malformed merge input: part longer than the input")
		}
		present = append(present, in[:l])
		in = in[l:]
	}
	if len(in) != 0 {
		return nil, errors.New("malformed merge input: trailing bytes")
	}
	var out []byte
	if missing > 0 {
		out = append(out, "missing="+strconv.Itoa(missing)+"\n"...)
	}
	for i, p := range present {
		if i > 0 {
			out = append(out, '\n')
		}
		out = append(out, p...)
	}
	return out, nil
}

//go:wasmexport handle
func handle() int32 {
	cmd, arg, _ := strings.Cut(pdk.InputString(), ":")
	switch cmd {
	case "echo":
		pdk.OutputString(arg)
	case "config":
		v, ok := pdk.GetConfig(arg)
		if !ok {
			pdk.SetErrorString("no config key " + arg)
			return 4
		}
		pdk.OutputString(v)
	case "fetch":
		resp := pdk.NewHTTPRequest(pdk.MethodGet, arg).Send()
		pdk.OutputString(strconv.Itoa(int(resp.Status())) + " " + string(resp.Body()))
	case "fail":
		pdk.SetErrorString(arg)
		return 7
	case "post":
		resp := pdk.NewHTTPRequest(pdk.MethodPost, arg).SetHeader("X-Plugin", "extism-go").SetBody([]byte("ping")).Send()
		pdk.OutputString(strconv.Itoa(int(resp.Status())) + " " + resp.Headers()["content-type"] + " " + string(resp.Body()))
	case "log":
		pdk.Log(pdk.LogInfo, arg)
	case "logall":
		for _, l := range []struct {
			level pdk.LogLevel
			name  string
		}{{pdk.LogTrace, "trace"}, {pdk.LogDebug, "debug"}, {pdk.LogInfo, "info"}, {pdk.LogWarn, "warn"}, {pdk.LogError, "error"}} {
			pdk.Log(l.level, l.name+" "+arg)
		}
	case "count":
		n := pdk.GetVarInt(arg) + 1
		pdk.SetVarInt(arg, n)
		pdk.OutputString(strconv.Itoa(n))
	case "setvar":
		name, size, _ := strings.Cut(arg, "=")
		n, err := strconv.Atoi(size)
		if err != nil {
			pdk.SetError(err)
			return 3
		}
		pdk.SetVar(name, make([]byte, n))
	case "getvar":
		pdk.OutputString(strconv.Itoa(len(pdk.GetVar(arg))))
	case "delvar":
		pdk.RemoveVar(arg)
	case "fill":
		path, size, _ := strings.Cut(arg, ":")
		n, err := strconv.Atoi(size)
		if err == nil {
			err = os.WriteFile(path, make([]byte, n), 0o644)
		}
		if err != nil {
			pdk.SetError(err)
			return 5
		}
		pdk.OutputString(strconv.Itoa(n))
	case "read":
		b, err := os.ReadFile(arg)
		if err != nil {
			pdk.SetError(err)
			return 5
		}
		pdk.Output(b)
	case "spin":
		for {
			spin++
		}
	default:
		pdk.SetErrorString("unknown command: " + cmd)
		return 2
	}
	return 0
}

var spin uint64 // written by spin so the loop has an effect

//go:wasmexport noop
func noop() int32 { return 0 }

//go:wasmexport count_vowels
func countVowels() int32 {
	n := 0
	for _, c := range pdk.Input() {
		if strings.IndexByte("aeiouAEIOU", c) >= 0 {
			n++
		}
	}
	pdk.OutputString(strconv.Itoa(n))
	return 0
}

//go:wasmexport run_test
func runTest() int32 {
	pdk.OutputString("passed")
	return 0
}

func main() {}
