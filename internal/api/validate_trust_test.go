//go:build linux

package api

import (
	"strings"
	"testing"
)

// A trust request names an action, a clean absolute path (but for get) and,
// to set, a lowercase hex SHA-256; anything else is a bad request.
func TestValidateTrust(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	for _, c := range []struct {
		req  TrustRequest
		want string // "" valid, else part of the message
	}{
		{TrustRequest{Action: TrustGet}, ""},
		{TrustRequest{Action: TrustSet, Path: "/p/.aigate.yaml", SHA256: sum}, ""},
		{TrustRequest{Action: TrustRevoke, Path: "/p/.aigate.yaml"}, ""},
		{TrustRequest{Action: "import", Path: "/p/.aigate.yaml"}, "want get, set or revoke"},
		{TrustRequest{Action: TrustSet, Path: "/p/.aigate.yaml", SHA256: strings.ToUpper(sum)}, "not a lowercase hex"},
		{TrustRequest{Action: TrustSet, Path: "/p/.aigate.yaml", SHA256: sum[:10]}, "not a lowercase hex"},
		{TrustRequest{Action: TrustSet, Path: "p/.aigate.yaml", SHA256: sum}, "clean absolute path"},
		{TrustRequest{Action: TrustRevoke, Path: "/p/../q"}, "clean absolute path"},
	} {
		r := Request{V: Version, Op: OpTrust, Trust: &c.req}
		err := r.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%+v: %v", c.req, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Message, c.want) || err.Code != CodeBadRequest):
			t.Errorf("%+v: got %v, want a bad request saying %q", c.req, err, c.want)
		}
	}
	if err := (&Request{V: Version, Op: OpTrust}).Validate(); err == nil {
		t.Error("a trust request without its body was accepted")
	}
}
