package policy

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ParseEndpoint parses one allow_net entry:
//
//	example.com            the name itself (not its subdomains), any port
//	example.com:443        one port only
//	*.example.com          every name below example.com, not example.com itself
//	1.2.3.4, 1.2.3.4:443   one address
//	10.0.0.0/8             a prefix; host bits are masked off, so 10.1.2.3/8
//	                       means 10.0.0.0/8 (what a router would do), no error
//	10.0.0.0/8:443         a prefix, one port
//	::1, [::1]:8080        IPv6 needs brackets when a port follows
//	2001:db8::/32, [2001:db8::/32]:443
//
// Domains are RFC 1123 host names: letters, digits and hyphens, lower-cased,
// a trailing dot dropped. Non-ASCII names must be written in their punycode
// (xn--) form. IPv4-mapped IPv6 addresses and prefixes are stored as IPv4.
// Ports are 1-65535.
func ParseEndpoint(s string) (Endpoint, error) {
	ep, err := parseEndpoint(s)
	if err != nil {
		return Endpoint{}, err
	}
	return ep, nil
}

func parseEndpoint(s string) (Endpoint, *Error) {
	bad := func(hint, format string, args ...any) (Endpoint, *Error) {
		return Endpoint{}, valueError(hint, "allow_net entry %q: "+format, append([]any{s}, args...)...)
	}
	if s == "" {
		return bad("write a domain such as api.github.com or an address such as 10.0.0.0/8", "empty entry")
	}
	if msg := checkChars(s); msg != "" {
		return bad("", "%s", msg)
	}
	if strings.ContainsAny(s, " \t") {
		return bad("write one domain or address per entry", "contains white space")
	}
	if scheme, rest, ok := strings.Cut(s, "://"); ok {
		host, _, _ := strings.Cut(rest, "/")
		return bad(fmt.Sprintf("write the host only: %q", host), "%q is a URL scheme, not part of a host", scheme+"://")
	}
	if s == "*" {
		return bad("to allow every destination write `net: allow`", "\"*\" alone is not a domain")
	}

	host, portStr, hasPort := s, "", false
	switch {
	case s[0] == '[':
		end := strings.Index(s, "]")
		if end < 0 {
			return bad("write [2001:db8::1]:443", "missing \"]\"")
		}
		host, portStr = s[1:end], s[end+1:]
		if portStr != "" {
			if portStr[0] != ':' {
				return bad("write [2001:db8::1]:443", "unexpected %q after \"]\"", portStr)
			}
			portStr, hasPort = portStr[1:], true
		}
		if !strings.Contains(host, ":") {
			return bad("brackets are for IPv6 addresses only", "%q is not an IPv6 address", host)
		}
	case strings.Count(s, ":") == 1:
		host, portStr, _ = strings.Cut(s, ":")
		hasPort = true
	}

	ep := Endpoint{Raw: s}
	if hasPort {
		p, err := strconv.ParseUint(portStr, 10, 16)
		if err != nil || p == 0 || portStr[0] == '+' {
			return bad("ports are 1-65535", "invalid port %q", portStr)
		}
		ep.Port = uint16(p)
	}

	if strings.Contains(host, "/") {
		pfx, err := netip.ParsePrefix(host)
		if err != nil {
			if !strings.Contains(host, ":") && !looksNumeric(host) {
				return bad("write the host only, without a path", "%q is not a prefix such as 10.0.0.0/8", host)
			}
			return bad("write a prefix such as 10.0.0.0/8 or 2001:db8::/32", "invalid prefix %q", host)
		}
		ep.Prefix = canonicalPrefix(pfx)
		return ep, nil
	}
	if strings.Contains(host, ":") || looksNumeric(host) {
		addr, err := netip.ParseAddr(host)
		if err != nil {
			return bad("write an address such as 10.1.2.3 or 2001:db8::1", "invalid IP address %q", host)
		}
		if addr.Zone() != "" {
			return bad("remove the %zone", "IPv6 zones are not supported")
		}
		addr = addr.Unmap()
		ep.Prefix = netip.PrefixFrom(addr, addr.BitLen())
		return ep, nil
	}

	name := strings.TrimSuffix(strings.ToLower(host), ".")
	if rest, ok := strings.CutPrefix(name, "*."); ok {
		ep.Wildcard, name = true, rest
	}
	if msg, hint := checkDomain(name); msg != "" {
		return bad(hint, "%s", msg)
	}
	ep.Domain = name
	return ep, nil
}

// canonicalPrefix masks off host bits and turns IPv4-mapped prefixes into
// IPv4 ones, so that equal networks compare equal.
func canonicalPrefix(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked()
}

// looksNumeric reports whether s is made of digits and dots only: an IPv4
// address, or a mistyped one, but never a host name.
func looksNumeric(s string) bool {
	s, _, _ = strings.Cut(s, "/")
	return strings.Trim(s, "0123456789.") == ""
}

// checkDomain returns why name is not an RFC 1123 host name, and a hint.
func checkDomain(name string) (msg, hint string) {
	if name == "" {
		return "empty domain", ""
	}
	if len(name) > 253 {
		return "domain longer than 253 characters", ""
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		switch {
		case l == "":
			return fmt.Sprintf("empty label in domain %q", name), ""
		case l == "*":
			return fmt.Sprintf("%q: \"*\" is only supported as the first label (*.example.com)", name), ""
		case len(l) > 63:
			return fmt.Sprintf("label %q is longer than 63 characters", l), ""
		case l[0] == '-' || l[len(l)-1] == '-':
			return fmt.Sprintf("label %q starts or ends with a hyphen", l), ""
		}
		for _, r := range l {
			switch {
			case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			case r > 127:
				return fmt.Sprintf("domain %q is not ASCII", name), "write its punycode (xn--...) form"
			default:
				return fmt.Sprintf("domain %q contains %q", name, r), "domains hold letters, digits, hyphens and dots"
			}
		}
	}
	if looksNumeric(labels[len(labels)-1]) {
		return fmt.Sprintf("%q is neither an IP address nor a domain", name), ""
	}
	return "", ""
}
