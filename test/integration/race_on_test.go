//go:build race

package integration

// raceDetector reports whether the tests run under the race detector, which makes decoding and
// encoding JSON several times slower.
const raceDetector = true
