package jetstream_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine of a channel (its pumps, its reconnection watch) ends
// with Close, and every test closes what it opens.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
