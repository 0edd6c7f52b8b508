package main

import (
	"slices"
	"testing"
)

func TestParse(t *testing.T) {
	c, err := parse("aigate=AIGATE_SOCKET=/s HOME=/h aigate run -- env X=1")
	if err != nil {
		t.Fatal(err)
	}
	if c.name != "aigate" || !slices.Equal(c.env, []string{"AIGATE_SOCKET=/s", "HOME=/h"}) ||
		!slices.Equal(c.argv, []string{"aigate", "run", "--", "env", "X=1"}) {
		t.Fatalf("parsed %q env %q argv %q", c.name, c.env, c.argv)
	}
	for _, bad := range []string{"true", "=true", "x=", "x=A=1"} {
		if _, err := parse(bad); err == nil {
			t.Errorf("parse(%q) did not fail", bad)
		}
	}
}
