package gitdirs

import (
	"bytes"
	"strings"
)

// setting is one key of a git config file; section and key lower case.
type setting struct{ section, sub, key, value string }

// name is how git spells it: "section.sub.key".
func (v setting) name() string {
	if v.sub == "" {
		return v.section + "." + v.key
	}
	return v.section + "." + v.sub + "." + v.key
}

// cline is one logical line of a git config file: its bytes as written
// (its newline included, and the lines a trailing backslash continues
// its value on), and the key it sets, if any.
type cline struct {
	raw []byte
	// head > 0: raw[:head] is a section header ("[core]"); a key may
	// follow it on the same line.
	head int
	set  bool // the line sets v; else blank, a comment or a header alone
	v    setting
	// unsure: aigate cannot tell what git makes of the line (a header
	// it cannot parse, a key outside any section or with a name git
	// would refuse), so it counts as a setting git does not write itself.
	unsure bool
}

// unknownSection is the section of the keys after a header aigate could
// not parse: none of them is taken for one git writes itself.
const unknownSection = "?"

// splitConfig splits a git config file into its logical lines, read as
// git's config.c reads them: [section], [section "sub"] (quoted, with
// escapes) and [section.sub] headers, a key on the header's line, names
// case-insensitive, values optionally quoted, # and ; comments outside
// quotes, a backslash before the newline continuing a value on the next
// line, CRLF line ends, a UTF-8 byte order mark. Where it could read a
// file otherwise than git it errs towards "unsure": a key git sees and
// this does not would be missed by Risky and StripRisky.
func splitConfig(data []byte) []cline {
	var out []cline
	if bom := []byte("\xef\xbb\xbf"); bytes.HasPrefix(data, bom) {
		out = append(out, cline{raw: bom})
		data = data[len(bom):]
	}
	section, sub := "", ""
	for pos := 0; pos < len(data); {
		end := lineEnd(data, pos)
		line := string(data[pos:end])
		t := strings.TrimLeft(line, " \t")
		c := cline{}
		if strings.HasPrefix(t, "[") {
			sec, sb, n, ok := parseHeader(t)
			if !ok {
				section, sub = unknownSection, ""
				out = append(out, cline{raw: data[pos:end], unsure: true})
				pos = end
				continue
			}
			section, sub = sec, sb
			c.head = len(line) - len(t) + n
			t = t[n:]
		}
		if body := strings.TrimSpace(t); body != "" && body[0] != '#' && body[0] != ';' {
			start := pos + c.head
			for end < len(data) && continued(string(data[start:end])) {
				end = lineEnd(data, end)
			}
			c.set = true
			c.v = parseKey(section, sub, string(data[start:end]))
			c.unsure = section == "" || section == unknownSection || !validKey(c.v.key)
		}
		c.raw = data[pos:end]
		out = append(out, c)
		pos = end
	}
	return out
}

// lineEnd is where the line starting at from ends, after its newline.
func lineEnd(data []byte, from int) int {
	if i := bytes.IndexByte(data[from:], '\n'); i >= 0 {
		return from + i + 1
	}
	return len(data)
}

// parseHeader reads the section header t starts with; n is the length
// of the header in t.
func parseHeader(t string) (section, sub string, n int, ok bool) {
	i := 1
	for i < len(t) && (isAlnum(t[i]) || t[i] == '-' || t[i] == '.') {
		i++
	}
	name := t[1:i]
	if i < len(t) && t[i] == ']' {
		section = name
		if s, b, dotted := strings.Cut(name, "."); dotted {
			section, sub = s, strings.ToLower(b)
		}
		return strings.ToLower(section), sub, i + 1, section != ""
	}
	for i < len(t) && (t[i] == ' ' || t[i] == '\t') {
		i++
	}
	if name == "" || strings.Contains(name, ".") || i >= len(t) || t[i] != '"' {
		return "", "", 0, false
	}
	var b strings.Builder
	for i++; i < len(t) && t[i] != '"'; i++ {
		if t[i] == '\n' {
			return "", "", 0, false
		}
		if t[i] == '\\' && i+1 < len(t) {
			i++
		}
		b.WriteByte(t[i])
	}
	if i+1 >= len(t) || t[i+1] != ']' {
		return "", "", 0, false
	}
	return strings.ToLower(name), b.String(), i + 2, true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// validKey: git takes a key that starts with a letter and holds letters,
// digits and '-'; it refuses the file otherwise.
func validKey(k string) bool {
	if k == "" || !(k[0] >= 'a' && k[0] <= 'z') {
		return false
	}
	for i := 0; i < len(k); i++ {
		if !isAlnum(k[i]) && k[i] != '-' {
			return false
		}
	}
	return true
}

// parseKey reads one key line (through its continuations).
func parseKey(section, sub, s string) setting {
	k, _, _ := strings.Cut(s, "=")
	k, _, _ = strings.Cut(k, "\n")
	val, _ := scanValue(s)
	return setting{section: section, sub: sub, key: strings.ToLower(strings.TrimSpace(k)), value: val}
}

// continued says whether the key line s, through its last newline, goes
// on on the next line.
func continued(s string) bool {
	if !strings.HasSuffix(s, "\n") {
		return false
	}
	_, cont := scanValue(s)
	return cont
}

// scanValue reads a key line's value as git's parse_value does: after
// "=", quotes removed, escapes resolved, a comment dropped, a backslash
// before a newline joining the next line. cont: s ends right after such
// a backslash and newline, so the value goes on after s.
func scanValue(s string) (value string, cont bool) {
	_, v, ok := strings.Cut(s, "=")
	if !ok {
		return "true", false
	}
	var b strings.Builder
	quoted, comment := false, false
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\r' && i+1 < len(v) && v[i+1] == '\n' {
			continue
		}
		switch {
		case c == '\n':
			return strings.TrimSpace(b.String()), false
		case comment:
		case c == '\\' && i+1 < len(v):
			i++
			if v[i] == '\r' && i+1 < len(v) && v[i+1] == '\n' {
				i++
			}
			if v[i] == '\n' {
				if i+1 == len(v) {
					return strings.TrimSpace(b.String()), true
				}
				continue
			}
			b.WriteByte(v[i])
		case c == '"':
			quoted = !quoted
		case !quoted && (c == '#' || c == ';'):
			comment = true
		default:
			b.WriteByte(c)
		}
	}
	return strings.TrimSpace(b.String()), false
}

// parseConfig is the keys the config file cfg sets.
func parseConfig(cfg string) []setting {
	var out []setting
	for _, c := range splitConfig(readSmall(cfg)) {
		if c.set {
			out = append(out, c.v)
		}
	}
	return out
}

// riskyKey says whether git does not write the key c sets itself when it
// makes a repository, clone or submodule (harmless), or aigate cannot
// tell which key it is.
func riskyKey(c cline) bool {
	return c.unsure || (c.set && !harmless[c.v.section+"."+c.v.key])
}

// riskyName is how Risky and StripRisky name what riskyKey found.
func (c cline) riskyName() string {
	switch {
	case c.set && c.v.section == unknownSection:
		return c.v.key + " (after it)"
	case c.set && c.v.section == "":
		return c.v.key + " (outside any section)"
	case c.set:
		return c.v.name()
	}
	return "a line aigate cannot read"
}

// StripRisky is the git config data without the keys riskyKey names,
// every other byte kept as it was (comments, layout, order): a key
// written on its section's header line loses only the key. removed
// names what went, as git spells it ("core.fsmonitor"), in order.
func StripRisky(data []byte) (out []byte, removed []string) {
	out = make([]byte, 0, len(data))
	for _, c := range splitConfig(data) {
		if !riskyKey(c) {
			out = append(out, c.raw...)
			continue
		}
		removed = append(removed, c.riskyName())
		if c.head > 0 {
			out = append(out, c.raw[:c.head]...)
			out = append(out, '\n')
		}
	}
	return out, removed
}
