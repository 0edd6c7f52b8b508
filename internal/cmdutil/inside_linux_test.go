package cmdutil

import "testing"

func TestSandboxOf(t *testing.T) {
	for _, tc := range []struct {
		cg, want string
	}{
		{"/aigate/s1-p42", "s1-p42"},
		{"/aigate/s12-p4279/sub/deeper", "s12-p4279"},
		{"/system.slice/x.service/aigate/s3-p7", "s3-p7"},
		{"/aigate", ""},
		{"/aigate/agent", ""},
		{"/user.slice/user-1000.slice/session-2.scope", ""},
		{"/notaigate/s1-p42", ""},
		{"/", ""},
	} {
		got, ok := sandboxOf(tc.cg)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("sandboxOf(%q) = %q, %v; want %q", tc.cg, got, ok, tc.want)
		}
	}
}
