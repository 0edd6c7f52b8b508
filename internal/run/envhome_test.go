//go:build linux

package run

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/policy"
)

// The policy's rules at the defaults that the programs' own variables
// move (git's global config, gh's, gpg's, docker's, gcloud's and the
// Azure CLI's directories, the AWS files, the kubeconfig list, npm's
// user config, the password store, libpq's password file) follow the
// user's environment: a file variable yields the file itself (under a
// rule of the whole default directory, ~/.aws/), never a path beneath
// it; each entry of KUBECONFIG is followed; relative and empty values,
// the default itself, /dev/null and "/" are not; and no rule is followed
// to a place that is or holds the home or the project.
func TestEnvRules(t *testing.T) {
	const home, proj = "/home/u", "/home/u/p"
	c := compileDefaults(t, home, proj)
	rule := func(rules []api.RunRule, pattern string) (api.RunRule, bool) {
		i := slices.IndexFunc(rules, func(r api.RunRule) bool { return r.Pattern == pattern })
		if i < 0 {
			return api.RunRule{}, false
		}
		return rules[i], true
	}
	for _, tc := range []struct {
		name       string
		env        []string
		read       map[string]string // pattern -> by
		write      map[string]string
		none, note string // a pattern no list may hold; a note must contain
	}{
		{name: "git's global config", env: []string{"GIT_CONFIG_GLOBAL=/home/u/dotfiles/gitconfig"},
			write: map[string]string{"~/dotfiles/gitconfig": "$GIT_CONFIG_GLOBAL in place of ~/.gitconfig"}, none: "~/dotfiles/gitconfig/"},
		{name: "gh's directory", env: []string{"GH_CONFIG_DIR=/srv/gh"},
			read: map[string]string{"/srv/gh/": "$GH_CONFIG_DIR in place of ~/.config/gh/"}},
		{name: "gpg's home", env: []string{"GNUPGHOME=/home/u/keys/gpg"},
			read: map[string]string{"~/keys/gpg/": "$GNUPGHOME in place of ~/.gnupg/"}},
		{name: "the AWS files", env: []string{"AWS_SHARED_CREDENTIALS_FILE=/data/creds", "AWS_CONFIG_FILE=/data/aws.cfg"},
			read: map[string]string{"/data/creds": "$AWS_SHARED_CREDENTIALS_FILE in place of ~/.aws/", "/data/aws.cfg": "$AWS_CONFIG_FILE in place of ~/.aws/"},
			none: "/data/creds/"},
		{name: "the kubeconfig list", env: []string{"KUBECONFIG=/srv/k/a.yaml:rel.yaml::/srv/k/b.yaml:/home/u/.kube/config"},
			read: map[string]string{"/srv/k/a.yaml": "$KUBECONFIG in place of ~/.kube/", "/srv/k/b.yaml": "$KUBECONFIG in place of ~/.kube/"},
			none: "rel.yaml"},
		{name: "docker, gcloud, azure, pass", env: []string{"DOCKER_CONFIG=/srv/docker", "CLOUDSDK_CONFIG=/srv/gcloud", "AZURE_CONFIG_DIR=/srv/az", "PASSWORD_STORE_DIR=/srv/pass"},
			read: map[string]string{"/srv/docker/": "$DOCKER_CONFIG in place of ~/.docker/", "/srv/gcloud/": "$CLOUDSDK_CONFIG in place of ~/.config/gcloud/",
				"/srv/az/": "$AZURE_CONFIG_DIR in place of ~/.azure/", "/srv/pass/": "$PASSWORD_STORE_DIR in place of ~/.password-store/"}},
		{name: "npm in either case, libpq", env: []string{"NPM_CONFIG_USERCONFIG=/srv/npmrc", "npm_config_userconfig=/srv/npmrc2", "PGPASSFILE=/srv/pgpass"},
			read: map[string]string{"/srv/npmrc": "$NPM_CONFIG_USERCONFIG in place of ~/.npmrc", "/srv/npmrc2": "$npm_config_userconfig in place of ~/.npmrc",
				"/srv/pgpass": "$PGPASSFILE in place of ~/.pgpass"}},
		{name: "zsh's startup files", env: []string{"ZDOTDIR=/home/u/.config/zsh"},
			write: map[string]string{"~/.config/zsh/.zshenv": "$ZDOTDIR in place of ~/.zshenv", "~/.config/zsh/.zprofile": "$ZDOTDIR in place of ~/.zprofile",
				"~/.config/zsh/.zshrc": "$ZDOTDIR in place of ~/.zshrc", "~/.config/zsh/.zlogin": "$ZDOTDIR in place of ~/.zlogin",
				"~/.config/zsh/.zlogout": "$ZDOTDIR in place of ~/.zlogout"}, none: "~/.config/zsh/.bashrc"},
		{name: "containers' logins", env: []string{"REGISTRY_AUTH_FILE=/srv/auth.json"},
			read: map[string]string{"/srv/auth.json": "$REGISTRY_AUTH_FILE in place of ~/.config/containers/auth.json"}},
		{name: "relative and empty", env: []string{"GIT_CONFIG_GLOBAL=gitconfig", "GNUPGHOME=", "AWS_SHARED_CREDENTIALS_FILE=./creds"}},
		{name: "the defaults themselves", env: []string{"GIT_CONFIG_GLOBAL=/home/u/.gitconfig", "GNUPGHOME=/home/u/.gnupg/", "AWS_SHARED_CREDENTIALS_FILE=/home/u/x/../.aws/credentials"}},
		{name: "turned off", env: []string{"GIT_CONFIG_GLOBAL=/dev/null", "AWS_CONFIG_FILE=/dev/null"}, none: "/dev/null"},
		{name: "root", env: []string{"GNUPGHOME=/"}, none: "/", note: "not followed to /"},
		{name: "the home", env: []string{"GNUPGHOME=/home/u"}, none: "~/", note: "is or holds the home or the project"},
		{name: "the project", env: []string{"DOCKER_CONFIG=/home/u/p"}, none: "~/p/", note: "is or holds the home or the project"},
		{name: "above the home", env: []string{"GIT_CONFIG_GLOBAL=/home"}, none: "/home", note: "is or holds the home or the project"},
		{name: "in the project", env: []string{"GIT_CONFIG_GLOBAL=/home/u/p/gitconfig", "AWS_SHARED_CREDENTIALS_FILE=/home/u/p/creds"},
			write: map[string]string{"~/p/gitconfig": "$GIT_CONFIG_GLOBAL in place of ~/.gitconfig"},
			read:  map[string]string{"~/p/creds": "$AWS_SHARED_CREDENTIALS_FILE in place of ~/.aws/"}},
		{name: "already covered", env: []string{"AWS_SHARED_CREDENTIALS_FILE=/home/u/.ssh/creds"}, none: "~/.ssh/creds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, notes := followEnv(c, home, proj, tc.env, nil)
			for list, want := range map[string]map[string]string{"read": tc.read, "write": tc.write} {
				rules := map[string][]api.RunRule{"read": r.Read, "write": r.Write}[list]
				for pattern, by := range want {
					if got, ok := rule(rules, pattern); !ok || got.By != by {
						t.Errorf("%s: %s by %q, got %+v", list, pattern, by, rules)
					}
				}
			}
			n := len(tc.read) + len(tc.write)
			if got := len(r.Read) + len(r.Write); got != n {
				t.Errorf("%d rules, want %d: read %+v, write %+v", got, n, r.Read, r.Write)
			}
			if tc.none != "" {
				for _, rules := range [][]api.RunRule{r.Read, r.Write, r.Exec, r.ExceptRead} {
					if x, ok := rule(rules, tc.none); ok {
						t.Errorf("followed to %s: %+v", tc.none, x)
					}
				}
			}
			if tc.note != "" && !strings.Contains(strings.Join(notes, "\n"), tc.note) {
				t.Errorf("notes %q lack %q", notes, tc.note)
			}
			if tc.note == "" && len(notes) > 0 {
				t.Errorf("notes: %q", notes)
			}
			for _, rules := range [][]api.RunRule{r.Read, r.Write, r.Exec, r.ExceptRead} {
				for _, x := range rules {
					if err := policy.CheckPattern(x.Pattern); err != nil {
						t.Errorf("%s: %v", x.Pattern, err)
					}
				}
			}
		})
	}
	// git's global config is the file itself: only the one rule
	// (~/.gitconfig) follows it, and run's line names the variable.
	r, _ := followEnv(c, home, proj, []string{"GIT_CONFIG_GLOBAL=/srv/gitconfig"}, nil)
	if len(r.Write) != 1 || len(r.Read) != 0 {
		t.Errorf("GIT_CONFIG_GLOBAL: write %+v, read %+v", r.Write, r.Read)
	}
	if got := describeEnv(r); !strings.Contains(got, "$GIT_CONFIG_GLOBAL (/srv/gitconfig)") || !strings.Contains(got, "1 read-only") {
		t.Errorf("describeEnv = %q", got)
	}
	if got := FollowedRule(r.Write[0].By); got != "~/.gitconfig" {
		t.Errorf("FollowedRule(%q) = %q", r.Write[0].By, got)
	}
}

// A file variable that is a symlink is followed where it leads, as the
// LSM backend matches resolved paths.
func TestEnvRulesSymlink(t *testing.T) {
	home := t.TempDir()
	real := filepath.Join(home, "dotfiles", "creds")
	if err := os.MkdirAll(filepath.Dir(real), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(real, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, filepath.Join(home, "creds")); err != nil {
		t.Fatal(err)
	}
	c := compileDefaults(t, home, filepath.Join(home, "p"))
	r, _ := followEnv(c, home, filepath.Join(home, "p"), []string{"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "creds")}, filepath.EvalSymlinks)
	if !slices.ContainsFunc(r.Read, func(x api.RunRule) bool { return x.Pattern == "~/dotfiles/creds" }) {
		t.Errorf("the link is not followed where it leads: %+v", r.Read)
	}
}

// compileDefaults is the default policy compiled for home and proj.
func compileDefaults(t *testing.T, home, proj string) *policy.Compiled {
	t.Helper()
	pol, _ := policy.Merge(nil, nil, false)
	c, err := policy.Compile(pol, policy.Env{Home: home, ProjectRoot: proj})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
