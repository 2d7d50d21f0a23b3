//go:build race

package redirector

// raceEnabled: the race detector slows copies of large blobs tenfold;
// tests that move many MiB move fewer with it.
const raceEnabled = true
