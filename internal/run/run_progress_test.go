package run

import (
	"bytes"
	"testing"
	"time"
)

func TestSlowNotice(t *testing.T) {
	var fast bytes.Buffer
	stop := slowNotice(&fast, time.Hour, "slow\n")
	stop()
	if fast.Len() != 0 {
		t.Errorf("a fast step printed %q", fast.String())
	}
	var slow bytes.Buffer
	stop = slowNotice(&slow, time.Millisecond, "slow\n")
	time.Sleep(50 * time.Millisecond)
	stop()
	if slow.String() != "slow\n" {
		t.Errorf("a slow step printed %q, want the notice once", slow.String())
	}
}
