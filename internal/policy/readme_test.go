package policy_test

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/aigate-dev/aigate/internal/dns"
	"github.com/aigate-dev/aigate/internal/policy"
)

// The README shows what `aigate init` writes, abridged. Every key, value
// and list entry it shows must be what the file really holds, and the
// keys the file leaves commented out must be commented out in the README
// too, with the same values. A list that ends in "..." is abridged.
func TestREADMEConfigMatchesDefaults(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	block := configBlock(t, string(readme))
	shown := parseMap(t, "README", block)
	written := parseMap(t, "DefaultYAML", string(policy.DefaultYAML()))

	for k := range written {
		if _, ok := shown[k]; !ok {
			t.Errorf("the README's config block lacks %s, which init writes", k)
		}
	}
	for k, v := range shown {
		w, ok := written[k]
		if !ok {
			t.Errorf("the README's config block shows %s, which init does not write (or writes commented out)", k)
			continue
		}
		list, isList := v.([]any)
		if !isList {
			if fmt.Sprint(v) != fmt.Sprint(w) {
				t.Errorf("%s: README shows %v, init writes %v", k, v, w)
			}
			continue
		}
		wl, _ := w.([]any)
		abridged := len(list) > 0 && list[len(list)-1] == "..."
		if abridged {
			list = list[:len(list)-1]
		}
		for _, e := range list {
			if !slices.Contains(wl, e) {
				t.Errorf("%s: README shows %v, init does not write it", k, e)
			}
		}
		if !abridged && len(list) != len(wl) {
			t.Errorf("%s: README shows %d entries and no \"...\", init writes %d: %v", k, len(list), len(wl), wl)
		}
	}

	// Commented-out keys: same values on both sides.
	for _, line := range strings.Split(block, "\n") {
		if !strings.HasPrefix(line, "# ") || !strings.Contains(line, ": {") {
			continue
		}
		key := strings.TrimPrefix(line[:strings.Index(line, ":")], "# ")
		got := parseMap(t, "README", strings.TrimPrefix(line, "# "))[key]
		want := parseMap(t, "DefaultYAML", commentedKey(t, string(policy.DefaultYAML()), key))[key]
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("commented-out %s: README shows %v, init writes %v", key, got, want)
		}
	}

	// The commented dns values are the defaults that apply.
	d, _ := parseMap(t, "DefaultYAML", commentedKey(t, string(policy.DefaultYAML()), "dns"))["dns"].(map[string]any)
	for name, want := range map[string]time.Duration{"min_ttl": dns.DefaultMinTTL, "max_ttl": dns.DefaultMaxTTL} {
		got, err := time.ParseDuration(fmt.Sprint(d[name]))
		if err != nil || got != want {
			t.Errorf("init's commented dns.%s is %v; the default that applies is %v", name, d[name], want)
		}
	}
}

// configBlock is the first yaml code block of the Configuration section.
func configBlock(t *testing.T, readme string) string {
	t.Helper()
	_, rest, ok := strings.Cut(readme, "\n## Configuration\n")
	if ok {
		_, rest, ok = strings.Cut(rest, "```yaml\n")
	}
	if ok {
		rest, _, ok = strings.Cut(rest, "```")
	}
	if !ok {
		t.Fatal("README: no ```yaml block under ## Configuration")
	}
	return rest
}

// commentedKey returns "key:" and its indented lines from a commented-out
// block ("# key:\n#   a: 1\n"), uncommented.
func commentedKey(t *testing.T, text, key string) string {
	t.Helper()
	var out []string
	in := false
	for _, line := range strings.Split(text, "\n") {
		switch {
		case line == "# "+key+":":
			in = true
		case in && strings.HasPrefix(line, "#   "):
		default:
			in = false
			continue
		}
		if in {
			out = append(out, strings.TrimPrefix(line, "# "))
		}
	}
	if len(out) == 0 {
		t.Fatalf("DefaultYAML has no commented-out %s block", key)
	}
	return strings.Join(out, "\n") + "\n"
}

func parseMap(t *testing.T, what, text string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(text), &m); err != nil {
		t.Fatalf("%s: %v\n%s", what, err, text)
	}
	return m
}
