package policy

import (
	"strings"
	"testing"
)

func TestParsePatternForms(t *testing.T) {
	for _, tc := range []struct {
		in   string
		kind patternKind
		val  string
	}{
		{".env", kindName, ".env"},
		{"secrets/", kindName, "secrets"},
		{"secrets", kindName, "secrets"},
		{"secrets//", kindName, "secrets"},
		{"**/secrets", kindName, "secrets"},
		{"**/**/secrets/", kindName, "secrets"},
		{"secrets/**", kindName, "secrets"},
		{"*.pem", kindSuffix, ".pem"},
		{"**/*.pem", kindSuffix, ".pem"},
		{"*.pem/", kindSuffix, ".pem"},
		{".env.*", kindPrefix, ".env."},
		{"id_rsa*", kindPrefix, "id_rsa"},
		{"terraform.tfstate*", kindPrefix, "terraform.tfstate"},
		{"my secrets", kindName, "my secrets"},
		{"clé.txt", kindName, "clé.txt"},
		{"foo!bar", kindName, "foo!bar"},
		{"a/b", kindProject, "a/b"},
		{"a/b/", kindProject, "a/b"},
		{"a/b/**", kindProject, "a/b"},
		{"a//b/./c", kindProject, "a/b/c"},
		{"./x", kindProject, "x"},
		{"./", kindProject, "."},
		{".git/hooks/", kindProject, ".git/hooks"},
		{"config/prod.yaml", kindProject, "config/prod.yaml"},
		{"~/.ssh/", kindHome, ".ssh"},
		{"~/.ssh/**", kindHome, ".ssh"},
		{"~/.kube/config", kindHome, ".kube/config"},
		{"~", kindHome, "."},
		{"~/", kindHome, "."},
		{"~/**", kindHome, "."},
		{"/etc/shadow", kindAbs, "/etc/shadow"},
		{"/etc/", kindAbs, "/etc"},
		{"/etc/**", kindAbs, "/etc"},
		{"//etc//x/", kindAbs, "/etc/x"},
	} {
		got, err := parsePattern(tc.in)
		if err != nil {
			t.Errorf("parsePattern(%q): %v", tc.in, err)
			continue
		}
		if got.kind != tc.kind || got.value != tc.val {
			t.Errorf("parsePattern(%q) = %v %q, want %v %q", tc.in, got.kind, got.value, tc.kind, tc.val)
		}
		again, err := parsePattern(got.String())
		if err != nil || again != got {
			t.Errorf("canonical form %q of %q does not parse back: %v %v", got.String(), tc.in, again, err)
		}
	}
}

func TestParsePatternErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", `pattern "": empty pattern (write a file name such as .env, or a path such as ~/.ssh/)`},
		{"a/*.pem", `pattern "a/*.pem": a "*" in an anchored pattern cannot be enforced in the kernel (deny the directory "a/" or the name glob "*.pem")`},
		{"~/.config/*/token", `pattern "~/.config/*/token": a "*" in an anchored pattern cannot be enforced in the kernel (deny the directory "~/.config/" or the name "token")`},
		{"/*.pem", `pattern "/*.pem": a "*" in an anchored pattern cannot be enforced in the kernel (deny the name glob "*.pem")`},
		{"*.p?m", `pattern "*.p?m": '?' is glob syntax that aigate does not support (only one "*" at the start or end of a name is supported, e.g. *.pem or id_rsa*)`},
		{"[ab].pem", `'['`},
		{"*.{pem,key}", `'{'`},
		{`\!x`, `'\\'`},
		{"!.env", `pattern "!.env": "!" negation is not supported (to cancel an inherited deny rule, list the same pattern under allow_read, allow_write or allow_exec)`},
		{"a/**/b", `pattern "a/**/b": unsupported "**" ("**" is only supported at the start ("**/name") or the end ("dir/**"))`},
		{"**/a/b", `pattern "**/a/b": a path below "**/" cannot be enforced in the kernel (write "a/b" for the path below the project root, or the name "b" at any depth)`},
		{"**", `pattern "**": matches every file`},
		{"**/", `matches every file`},
		{"*", `pattern "*": matches every file`},
		{"/", `pattern "/": matches every file`},
		{"/**", `matches every file`},
		{"*.pem*", `pattern "*.pem*": more than one "*" cannot be enforced in the kernel (use one "*", at the start (*.pem) or at the end (id_rsa*), and one entry per form)`},
		{"**.pem", `more than one "*"`},
		{"id_*.pub", `pattern "id_*.pub": "prefix*suffix" cannot be enforced in the kernel (write "id_*" or "*.pub")`},
		{"../x", `pattern "../x": ".." segments are not supported`},
		{"a/../b", `".." segments`},
		{"..", `".." segments`},
		{".", `pattern ".": "." is not a file name (write "./" for the project root)`},
		{"a\x00b", `pattern "a\x00b": contains a NUL byte`},
		{"a\nb", `control character U+000A`},
		{" .env", `pattern " .env": leading or trailing white space`},
		{"a /", `pattern "a /": leading or trailing white space (remove the spaces around the name)`},
		{"~/ x/y", `leading or trailing white space`},
		{".env ", `leading or trailing white space`},
		{"~bob/.ssh", `pattern "~bob/.ssh": "~bob" (another user's home) is not supported (write the absolute path, e.g. /home/bob/...)`},
		{"/" + strings.Repeat("a", 250), `longer than 250 bytes`},
		{strings.Repeat("a", 251), `longer than 250 bytes`},
		{"\xff", `not valid UTF-8`},
	} {
		err := CheckPattern(tc.in)
		if err == nil {
			t.Errorf("CheckPattern(%q) = nil, want %q", tc.in, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CheckPattern(%q) = %q\nwant it to contain %q", tc.in, err, tc.want)
		}
	}
}

func TestPatternLengthLimit(t *testing.T) {
	ok := "/" + strings.Repeat("a", maxPathLen-1)
	if err := CheckPattern(ok); err != nil {
		t.Errorf("a %d-byte path: %v", len(ok), err)
	}
	if err := CheckPattern(strings.Repeat("a", maxPathLen)); err != nil {
		t.Errorf("a %d-byte name: %v", maxPathLen, err)
	}
}

func FuzzCheckPattern(f *testing.F) {
	for _, s := range append(defaultDenyRead, "a/b/", "**/x", "x/**", "./", "~", "/a/../b", "*.p?m", "a/*.pem", "id_*.pub", "~bob/x", " x", "a\x00") {
		f.Add(s)
	}
	env := Env{Home: "/home/u", ProjectRoot: "/home/u/proj"}
	f.Fuzz(func(t *testing.T, s string) {
		pat, perr := parsePattern(s)
		if (perr == nil) != (CheckPattern(s) == nil) {
			t.Fatalf("parsePattern and CheckPattern disagree on %q", s)
		}
		if perr != nil {
			if !strings.Contains(perr.Error(), "pattern ") {
				t.Fatalf("error for %q does not name the pattern: %v", s, perr)
			}
			return
		}
		// The canonical form is a fixed point.
		if again, err := parsePattern(pat.String()); err != nil || again != pat {
			t.Fatalf("canonical form %q of %q parses to %v, %v", pat.String(), s, again, err)
		}
		p := &Policy{DenyRead: []PathRule{{Pattern: s}}, DenyExec: []PathRule{{Pattern: s}}}
		c, err := Compile(p, env)
		if err != nil {
			// Only an expansion that is too long may fail.
			if !strings.Contains(err.Error(), "longer than") && !strings.Contains(err.Error(), "expands to \"/\"") {
				t.Fatalf("Compile(%q): %v", s, err)
			}
			return
		}
		checkCompiled(t, c)
	})
}
