package flowstest_test

import (
	"testing"

	"github.com/eventflows/flows"
	"github.com/eventflows/flows/flowstest"
)

func TestInMemoryChannelConformance(t *testing.T) {
	flowstest.TestChannel(t, flowstest.ChannelFeatures{Ordered: true, Capacity: 8},
		func(*testing.T) flows.Channel { return flows.NewInMemoryChannel(8) })
}
