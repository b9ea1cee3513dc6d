//go:build !race

package redirect

// raceEnabled is set under the race detector, whose sync.Pool drops items at
// random, so allocation counts are only asserted without it.
const raceEnabled = false
