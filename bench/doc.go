// Package bench holds wasmpod's benchmarks. Every benchmark runs its baselines in the same
// process on the same guest modules (raw wazero, wazero with the naive termination guard,
// extism go-sdk, native Go), so the ratios in RESULTS.md compare like with like.
//
// Run them with `make bench`, which also writes bench/RESULTS.md.
package bench
