//go:build !race

package redirector

const raceEnabled = false
