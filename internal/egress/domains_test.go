//go:build linux

package egress

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/policy"
)

func TestResolveDomains(t *testing.T) {
	r := fakeResolver{
		"api.example.test": {netip.MustParseAddr("::ffff:192.0.2.1"), netip.MustParseAddr("2001:db8::7")},
	}
	got, err := ResolveDomains(context.Background(), []policy.DomainEntry{
		{Name: "api.example.test", Port: 443, Rule: 1},
		{Name: "api.example.test", Rule: 2},
		{Name: "example.test", Wildcard: true, Rule: 3},
		{Name: "gone.example.test", Rule: 4},
	}, r)
	if err == nil || !strings.Contains(err.Error(), "gone.example.test") {
		t.Fatalf("error %v, want one naming gone.example.test", err)
	}
	want := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::7")}
	if len(got) != 1 || !slices.Equal(got["api.example.test"], want) {
		t.Fatalf("resolved %v, want api.example.test -> %v (unmapped), wildcards skipped", got, want)
	}
}
