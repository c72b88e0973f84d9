//go:build !race

package runtime_test

// raceSlowdown is how much slower the race detector makes the host's own Go code (the
// instrumenter, the compiler): bounds on CPU time scale by it.
const raceSlowdown = 1
