package policy

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseEndpoint(t *testing.T) {
	for _, tc := range []struct {
		in       string
		domain   string
		wildcard bool
		prefix   string
		port     uint16
	}{
		{"github.com", "github.com", false, "", 0},
		{"GitHub.COM.", "github.com", false, "", 0},
		{"api.github.com:443", "api.github.com", false, "", 443},
		{"*.example.com", "example.com", true, "", 0},
		{"*.example.com:8443", "example.com", true, "", 8443},
		{"localhost", "localhost", false, "", 0},
		{"xn--bcher-kva.example", "xn--bcher-kva.example", false, "", 0},
		{"1.2.3.4", "", false, "1.2.3.4/32", 0},
		{"1.2.3.4:443", "", false, "1.2.3.4/32", 443},
		{"10.0.0.0/8", "", false, "10.0.0.0/8", 0},
		{"10.1.2.3/8", "", false, "10.0.0.0/8", 0}, // masked, documented
		{"10.0.0.0/8:5432", "", false, "10.0.0.0/8", 5432},
		{"::1", "", false, "::1/128", 0},
		{"[::1]:8080", "", false, "::1/128", 8080},
		{"2001:db8::/32", "", false, "2001:db8::/32", 0},
		{"[2001:db8::/32]:443", "", false, "2001:db8::/32", 443},
		{"::ffff:1.2.3.4", "", false, "1.2.3.4/32", 0},
		{"::ffff:10.0.0.0/104", "", false, "10.0.0.0/8", 0},
		{"0.0.0.0/0", "", false, "0.0.0.0/0", 0},
	} {
		ep, err := ParseEndpoint(tc.in)
		if err != nil {
			t.Errorf("ParseEndpoint(%q): %v", tc.in, err)
			continue
		}
		var prefix string
		if ep.Prefix.IsValid() {
			prefix = ep.Prefix.String()
		}
		if ep.Domain != tc.domain || ep.Wildcard != tc.wildcard || prefix != tc.prefix || ep.Port != tc.port || ep.Raw != tc.in {
			t.Errorf("ParseEndpoint(%q) = %+v", tc.in, ep)
		}
		again, err := ParseEndpoint(ep.String())
		if err != nil || again.Domain != ep.Domain || again.Prefix != ep.Prefix || again.Port != ep.Port || again.Wildcard != ep.Wildcard {
			t.Errorf("String() %q of %q does not parse back: %+v %v", ep.String(), tc.in, again, err)
		}
	}
}

func TestParseEndpointErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", `allow_net entry "": empty entry`},
		{"*", "allow_net entry \"*\": \"*\" alone is not a domain (to allow every destination write `net: allow`)"},
		{"https://github.com/org", `allow_net entry "https://github.com/org": "https://" is a URL scheme, not part of a host (write the host only: "github.com")`},
		{"github.com/org", `allow_net entry "github.com/org": "github.com/org" is not a prefix such as 10.0.0.0/8 (write the host only, without a path)`},
		{"github.com:0", `invalid port "0" (ports are 1-65535)`},
		{"github.com:65536", `invalid port "65536"`},
		{"github.com:https", `invalid port "https"`},
		{"github.com:", `invalid port ""`},
		{"[::1]8080", `unexpected "8080" after "]"`},
		{"[::1", `missing "]"`},
		{"[1.2.3.4]:80", `"1.2.3.4" is not an IPv6 address (brackets are for IPv6 addresses only)`},
		{"1.2.3.4.5", `invalid IP address "1.2.3.4.5"`},
		{"256.1.1.1", `invalid IP address "256.1.1.1"`},
		{"10.0.0.0/33", `invalid prefix "10.0.0.0/33"`},
		{"fe80::1%eth0", `IPv6 zones are not supported`},
		{"a..b", `empty label in domain "a..b"`},
		{"-a.com", `label "-a" starts or ends with a hyphen`},
		{"a_b.com", `domain "a_b.com" contains '_'`},
		{"bücher.de", `domain "bücher.de" is not ASCII (write its punycode (xn--...) form)`},
		{"api.*.com", `"api.*.com": "*" is only supported as the first label (*.example.com)`},
		{"*.*.com", `"*" is only supported as the first label`},
		{"**.com", `domain "**.com" contains '*'`},
		{"foo.123", `"foo.123" is neither an IP address nor a domain`},
		{strings.Repeat("a", 64) + ".com", `is longer than 63 characters`},
		{strings.Repeat("a.", 127) + "com", `domain longer than 253 characters`},
		{"a b", `contains white space`},
	} {
		_, err := ParseEndpoint(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseEndpoint(%q) = %v\nwant %q", tc.in, err, tc.want)
		}
	}
}

func FuzzEndpoint(f *testing.F) {
	for _, s := range append(defaultAllowNet, "*.a.com:1", "[::1]:80", "10.0.0.0/8:5", "::ffff:1.2.3.4", "1.2.3.4/33") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ep, err := ParseEndpoint(s)
		if err != nil {
			return
		}
		if (ep.Domain == "") == !ep.Prefix.IsValid() {
			t.Fatalf("%q: exactly one of Domain and Prefix must be set: %+v", s, ep)
		}
		if ep.Prefix.IsValid() && (ep.Prefix != ep.Prefix.Masked() || ep.Prefix.Addr().Is4In6() || ep.Prefix.Addr().Zone() != "") {
			t.Fatalf("%q: prefix %v is not canonical", s, ep.Prefix)
		}
		if ep.Domain != "" && (strings.ToLower(ep.Domain) != ep.Domain || strings.HasSuffix(ep.Domain, ".")) {
			t.Fatalf("%q: domain %q is not canonical", s, ep.Domain)
		}
		again, err := ParseEndpoint(ep.String())
		if err != nil || again.Domain != ep.Domain || again.Prefix != ep.Prefix || again.Port != ep.Port || again.Wildcard != ep.Wildcard {
			t.Fatalf("%q: String() %q parses to %+v, %v", s, ep.String(), again, err)
		}
		if ep.Prefix.IsValid() && ep.Prefix.IsSingleIP() {
			c := &Compiled{Net: NetPolicy{Mode: NetDeny, DenyRule: 2, Allow: []NetEntry{{Prefix: ep.Prefix, Port: ep.Port, Rule: 1}}}}
			port := max(ep.Port, 1)
			if _, denied := c.MatchConnect(netip.AddrPortFrom(ep.Prefix.Addr(), port), nil, false); denied {
				t.Fatalf("%q: the allowed address itself is refused", s)
			}
		}
	})
}
