package policy

import "testing"

func TestErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		e    Error
		want string
	}{
		{Error{File: "f", Line: 3, Msg: "m", Hint: "h"}, "f:3: m (h)"},
		{Error{File: "f", Msg: "m"}, "f: m"},
		{Error{Msg: "m"}, "m"},
		{Error{Line: 2, Msg: "m"}, "line 2: m"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.e, got, tc.want)
		}
	}
}

func TestSuggest(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"deny_reed", "deny_read"}, {"Deny-Read", "deny_read"}, {"denyexec", "deny_exec"},
		{"allow_nets", "allow_net"}, {"mask", "mask_output"}, {"limits", ""}, {"resource_limit", "resource_limits"},
		{"xyz", ""},
	} {
		if got := suggest(tc.in, Keys); got != tc.want {
			t.Errorf("suggest(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
