//go:build race

package flows_test

// raceEnabled makes long tests smaller under the race detector, which slows
// them down tenfold; CI runs them once at full size without it.
const raceEnabled = true
