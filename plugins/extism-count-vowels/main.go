// Command extism-count-vowels is a plugin written to look like Extism's published "count
// vowels" example, with extism go-pdk: nothing in it knows of wasmpod. Its one function,
// count_vowels, counts the vowels of its input (the config key "vowels" overrides the set,
// default "aeiouAEIOU"), adds them to a running total kept in the var "total", and returns
//
//	{"count": N, "total": T, "vowels": "aeiouAEIOU"}
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o count_vowels.wasm .
package main

import (
	"strings"

	"github.com/extism/go-pdk"
)

type result struct {
	Count  int    `json:"count"`
	Total  int    `json:"total"`
	Vowels string `json:"vowels"`
}

//go:wasmexport count_vowels
func countVowels() int32 {
	vowels, ok := pdk.GetConfig("vowels")
	if !ok {
		vowels = "aeiouAEIOU"
	}
	count := 0
	for _, c := range pdk.InputString() {
		if strings.ContainsRune(vowels, c) {
			count++
		}
	}
	total := pdk.GetVarInt("total") + count
	pdk.SetVarInt("total", total)
	if err := pdk.OutputJSON(result{Count: count, Total: total, Vowels: vowels}); err != nil {
		pdk.SetError(err)
		return 1
	}
	return 0
}

func main() {}
