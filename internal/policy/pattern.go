package policy

import (
	"fmt"
	"path"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// File patterns (deny_read, deny_write, deny_exec, their allow_ inverses and
// allow_unix) follow gitignore where the kernel can enforce it, and are
// stricter where gitignore would leave a secret readable. docs/patterns.md is
// the user-facing version of this comment; keep the two in step.
//
// A pattern without a slash, apart from a trailing one, is a name:
//
//	.env          any file or directory named .env, at any depth, and
//	              everything beneath a directory of that name
//	secrets/      the same as "secrets": a deny list over-matches on purpose,
//	              so a *file* named secrets is denied too
//	*.pem         any file whose name ends in ".pem"       (suffix glob)
//	id_rsa*       any file whose name starts with "id_rsa" (prefix glob),
//	              id_rsa.pub included
//
// Names match anywhere in the file system, not only below the project root:
// an agent can cd anywhere, so ~/other-project/.env is protected too. A name
// glob matches the final path component only; a plain name matches any
// component, so "secrets" also covers secrets/a/b.
//
// A pattern with a slash elsewhere is anchored:
//
//	config/prod.yaml   relative to the project root; ./x anchors a single name
//	/etc/shadow        absolute (NOT the project root, unlike gitignore)
//	~/.ssh/            below the invoking user's home; "~" alone is the home
//
// and matches that path and everything beneath it. "**/x" is the same as "x",
// and "x/**" the same as "x/". Supported globs are exactly one "*" at the start
// or the end of a name pattern. Everything else that gitignore or shells know
// is rejected with an error saying what to write instead, because every
// accepted form must be matched by the BPF programs: "?", "[...]", "{a,b}",
// "\" escapes, "!" negation, "**" anywhere but the ends, two "*", "*" alone,
// "prefix*suffix", any "*" in an anchored pattern, ".." segments, "~user/",
// control characters, white space at either end of a name, and paths longer than
// maxPathLen bytes. Names with spaces or non-ASCII letters are fine.

// maxPathLen bounds every compiled value: the kernel's path keys hold 252
// bytes and a terminating NUL, with room to spare for the "/" separators the
// programs add.
const maxPathLen = 250

// patternKind says how a pattern is anchored, which decides the FileSet it
// compiles to.
type patternKind uint8

const (
	kindName    patternKind = iota + 1 // FileSet.Names
	kindPrefix                         // FileSet.NamePrefix
	kindSuffix                         // FileSet.NameSuffix
	kindProject                        // FileSet.Paths, below Env.ProjectRoot
	kindHome                           // FileSet.Paths, below Env.Home
	kindAbs                            // FileSet.Paths
)

// pattern is a checked pattern in normal form: two spellings of the same
// pattern ("secrets/" and "**/secrets") have equal patterns.
type pattern struct {
	kind patternKind
	// value is the name, the prefix or suffix without "*", or the cleaned
	// path: relative ("." for the root itself) for kindProject and kindHome,
	// absolute for kindAbs.
	value string
}

// CheckPattern reports whether s is a supported file pattern, and if not,
// why and what to write instead.
func CheckPattern(s string) error {
	if _, err := parsePattern(s); err != nil {
		return err
	}
	return nil
}

// parsePattern checks s and returns its normal form. Valid patterns are
// remembered (patternMemo): merging the default policy parsed each of its
// ~150 patterns again for every rule list it appended to, a tenth of the
// agent's CPU per sandbox (perf, 2026-12-06).
func parsePattern(s string) (pattern, *Error) {
	if patternMemoOff {
		return parsePatternUncached(s)
	}
	if p, ok := patternCache.get(s); ok {
		return p, nil
	}
	p, err := parsePatternUncached(s)
	if err == nil {
		patternCache.put(s, p)
	}
	return p, err
}

// patternMemo maps valid pattern strings to their normal form. A pattern
// is a comparable value and parsing is a pure function of the string, so
// a remembered answer is the one parsing would give; errors are not kept
// (a caller may annotate the *Error it gets). Bounded: the agent parses
// every user's config files, so the map is emptied when it is full.
type patternMemo struct {
	mu sync.RWMutex
	m  map[string]pattern
}

// maxMemoPatterns bounds patternMemo; the default policy has ~150.
const maxMemoPatterns = 8192

var patternCache patternMemo

// patternMemoOff turns the memo off, for the benchmark that compares.
var patternMemoOff bool

func (c *patternMemo) get(s string) (pattern, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	p, ok := c.m[s]
	return p, ok
}

func (c *patternMemo) put(s string, p pattern) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxMemoPatterns {
		c.m = make(map[string]pattern)
	}
	c.m[s] = p
}

func (c *patternMemo) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}

func parsePatternUncached(s string) (pattern, *Error) {
	bad := func(hint, format string, args ...any) (pattern, *Error) {
		return pattern{}, valueError(hint, "pattern %q: "+format, append([]any{s}, args...)...)
	}
	if s == "" {
		return bad("write a file name such as .env, or a path such as ~/.ssh/", "empty pattern")
	}
	if err := checkChars(s); err != "" {
		return bad("", "%s", err)
	}
	for _, seg := range strings.Split(s, "/") {
		if strings.TrimSpace(seg) != seg {
			return bad("remove the spaces around the name", "leading or trailing white space")
		}
		// gitignore reads a leading "!" as negation; so would a user.
		if strings.HasPrefix(seg, "!") {
			return bad("to cancel an inherited deny rule, list the same pattern under allow_read, allow_write or allow_exec",
				"\"!\" negation is not supported")
		}
	}
	if i := strings.IndexAny(s, `?[]{}\`); i >= 0 {
		return bad(`only one "*" at the start or end of a name is supported, e.g. *.pem or id_rsa*`,
			"%q is glob syntax that aigate does not support", s[i])
	}

	kind, body := kindProject, s
	switch {
	case s == "~" || strings.HasPrefix(s, "~/"):
		kind, body = kindHome, strings.TrimPrefix(strings.TrimPrefix(s, "~"), "/")
	case s[0] == '~':
		user, _, _ := strings.Cut(s[1:], "/")
		return bad(fmt.Sprintf("write the absolute path, e.g. /home/%s/...", user),
			"\"~%s\" (another user's home) is not supported", user)
	case s[0] == '/':
		kind, body = kindAbs, s[1:]
	}

	// "dir/**" means "dir/", and trailing slashes mean nothing more than the
	// name itself (see the doc comment).
	for {
		trimmed := strings.TrimSuffix(strings.TrimRight(body, "/"), "/**")
		if trimmed == "**" && kind != kindProject {
			trimmed = "" // "~/**" is "~/", "/**" is "/"
		}
		if trimmed == body {
			break
		}
		body = trimmed
	}
	if kind == kindProject {
		anyDepth := false
		for strings.HasPrefix(body, "**/") {
			body, anyDepth = strings.TrimLeft(body[len("**/"):], "/"), true
		}
		switch {
		case body == "" || body == "**":
			return bad("deny the directories you mean, e.g. secrets/ or ~/.ssh/", "matches every file")
		case anyDepth && strings.Contains(body, "/"):
			// gitignore would match a/b at any depth; the kernel can only
			// match single names at any depth.
			return bad(fmt.Sprintf("write %q for the path below the project root, or the name %q at any depth",
				body, body[strings.LastIndex(body, "/")+1:]), "a path below \"**/\" cannot be enforced in the kernel")
		case !strings.Contains(body, "/") && (body != "." || !strings.Contains(s, "/")):
			return nameGlob(s, body)
		}
	}

	segs := strings.Split(body, "/")
	for _, seg := range segs {
		switch {
		case seg == "..":
			return bad("write the path without \"..\", e.g. an absolute path", "\"..\" segments are not supported")
		case strings.Contains(seg, "**"):
			return bad(`"**" is only supported at the start ("**/name") or the end ("dir/**")`, "unsupported \"**\"")
		case strings.Contains(seg, "*"):
			return bad(anchoredGlobHint(s), "a \"*\" in an anchored pattern cannot be enforced in the kernel")
		}
	}
	clean := path.Clean("/" + body)
	if kind == kindAbs {
		if clean == "/" {
			return bad("deny the directories you mean instead, e.g. /etc/", "matches every file")
		}
		if len(clean) > maxPathLen {
			return bad("", "longer than %d bytes", maxPathLen)
		}
		return pattern{kind: kindAbs, value: clean}, nil
	}
	rel := strings.TrimPrefix(clean, "/")
	if rel == "" {
		rel = "."
	}
	if len(rel) > maxPathLen {
		return bad("", "longer than %d bytes", maxPathLen)
	}
	return pattern{kind: kind, value: rel}, nil
}

// nameGlob handles a pattern that is a single name, possibly with one "*".
func nameGlob(s, name string) (pattern, *Error) {
	bad := func(hint, format string, args ...any) (pattern, *Error) {
		return pattern{}, valueError(hint, "pattern %q: "+format, append([]any{s}, args...)...)
	}
	if len(name) > maxPathLen {
		return bad("", "longer than %d bytes", maxPathLen)
	}
	switch n := strings.Count(name, "*"); {
	case name == ".":
		return bad(`write "./" for the project root`, "\".\" is not a file name")
	case name == "..":
		return bad("write the path without \"..\", e.g. an absolute path", "\"..\" segments are not supported")
	case name == "*":
		return bad("deny the directories you mean, e.g. secrets/ or ~/.ssh/", "matches every file")
	case n > 1:
		return bad(`use one "*", at the start (*.pem) or at the end (id_rsa*), and one entry per form`,
			"more than one \"*\" cannot be enforced in the kernel")
	case n == 0:
		return pattern{kind: kindName, value: name}, nil
	case name[0] == '*':
		return pattern{kind: kindSuffix, value: name[1:]}, nil
	case name[len(name)-1] == '*':
		return pattern{kind: kindPrefix, value: name[:len(name)-1]}, nil
	}
	pre, suf, _ := strings.Cut(name, "*")
	return bad(fmt.Sprintf("write %q or %q", pre+"*", "*"+suf),
		"\"prefix*suffix\" cannot be enforced in the kernel")
}

// anchoredGlobHint suggests the two enforceable rules closest to an anchored
// pattern with a "*": the directory before the first "*", or the last name.
func anchoredGlobHint(s string) string {
	star := strings.Index(s, "*")
	dir := s[:strings.LastIndex(s[:star], "/")+1]
	last := s[strings.LastIndex(strings.TrimRight(s, "/"), "/")+1:]
	last = strings.TrimRight(last, "/")
	if dir == "" || dir == "/" {
		return fmt.Sprintf("deny the name glob %q", last)
	}
	if strings.Contains(last, "*") {
		return fmt.Sprintf("deny the directory %q or the name glob %q", dir, last)
	}
	return fmt.Sprintf("deny the directory %q or the name %q", dir, last)
}

// checkChars returns why s holds a character no pattern may hold, or "".
func checkChars(s string) string {
	if !utf8.ValidString(s) {
		return "not valid UTF-8"
	}
	for _, r := range s {
		if r == 0 {
			return "contains a NUL byte"
		}
		if unicode.IsControl(r) {
			return fmt.Sprintf("contains the control character %U", r)
		}
	}
	return ""
}

// String returns the canonical spelling of p.
func (p pattern) String() string {
	// A name that starts with "~" would read as a home directory on its own;
	// "**/" keeps it a name at any depth.
	if p.kind == kindName || p.kind == kindPrefix {
		if strings.HasPrefix(p.value, "~") {
			return "**/" + p.stringName()
		}
	}
	return p.stringName()
}

func (p pattern) stringName() string {
	switch p.kind {
	case kindName:
		return p.value
	case kindPrefix:
		return p.value + "*"
	case kindSuffix:
		return "*" + p.value
	case kindHome:
		if p.value == "." {
			return "~/"
		}
		return "~/" + p.value
	case kindAbs:
		return p.value
	}
	// A project-relative path keeps its "./" where dropping it would change
	// the meaning: a single name (any depth), or a first segment that reads
	// as the home directory ("./~/x") or as "**".
	if !strings.Contains(p.value, "/") || strings.HasPrefix(p.value, "~") || strings.HasPrefix(p.value, "**/") {
		return "./" + p.value
	}
	return p.value
}
