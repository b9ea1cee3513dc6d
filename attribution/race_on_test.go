//go:build race

package attribution

// raceEnabled scales the heaviest randomized tests down under the race
// detector, which slows them about tenfold.
const raceEnabled = true
