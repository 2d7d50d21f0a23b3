//go:build race

package storetest

// raceEnabled: the race detector makes every byte copied costly, so the
// suite writes less large content (still more than a part).
const raceEnabled = true
