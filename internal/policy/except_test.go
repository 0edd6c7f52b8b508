package policy

import (
	"strings"
	"testing"
)

// The defaults keep secrets denied and the known-public files that their
// name and glob rules also match (issue 13: Go modules, virtualenvs,
// node_modules, public keys) readable.
func TestDefaultsExceptPublicContent(t *testing.T) {
	p, _ := Merge(nil, nil, false)
	c := mustCompile(t, p)
	for _, tc := range []struct {
		path string
		deny bool
	}{
		// Public content the plain rules denied.
		{"/home/u/go/pkg/mod/google.golang.org/grpc@v1.67.1/credentials/credentials.go", false},
		{"/home/u/go/pkg/mod/google.golang.org/grpc@v1.67.1/credentials/tls/certprovider/pemfile/watcher.go", false},
		{"/home/u/proj/.venv/lib/python3.11/site-packages/certifi/cacert.pem", false},
		{"/home/u/proj/.venv/lib/python3.11/site-packages/pip/_vendor/certifi/cacert.pem", false},
		{"/usr/lib/python3/dist-packages/certifi/cacert.pem", false},
		{"/home/u/proj/node_modules/dotenv/.env", false},
		{"/home/u/proj/node_modules/node-forge/tests/server.key", false},
		{"/etc/ssl/certs/ISRG_Root_X1.pem", false},
		{"/usr/share/ca-certificates/mozilla/ISRG_Root_X1.pem", false},
		{"/home/u/proj/keys/id_ed25519.pub", false},
		{"/home/u/proj/keys/id_rsa.pub", false},
		{"/home/u/proj/config/jwt_public.pem", false},
		{"/home/u/proj/tls/fullchain.pem", false},
		{"/home/u/proj/tls/cert.pem", false},
		// Secrets stay denied, also next to excepted files.
		{"/home/u/.ssh/id_ed25519.pub", true},
		{"/home/u/.ssh/known_hosts", true},
		{"/home/u/proj/.env", true},
		{"/home/u/proj/.env.local", true},
		{"/home/u/proj/keys/id_ed25519", true},
		{"/home/u/proj/tls/privkey.pem", true},
		{"/home/u/proj/tls/server.key", true},
		{"/home/u/proj/config/jwt_private.pem", true},
		{"/home/u/proj/credentials/db.json", true},
		{"/home/u/.config/git/credentials", true},
		{"/home/u/go/pkg/modx/credentials/a.go", true},
		{"/etc/ssl/private/ssl-cert-snakeoil.key", true},
		// Secrets the old defaults missed (issue 13, item 5).
		{"/home/u/.bash_history", true},
		{"/home/u/.zsh_history", true},
		{"/home/u/.python_history", true},
		{"/home/u/.mozilla/firefox/abcd.default/cookies.sqlite", true},
		{"/home/u/.config/google-chrome/Default/Login Data", true},
		{"/home/u/.config/chromium/Default/Cookies", true},
		{"/home/u/.cargo/credentials.toml", true},
		{"/home/u/.pgpass", true},
		{"/home/u/.my.cnf", true},
		{"/home/u/.vault-token", true},
		{"/home/u/.terraform.d/credentials.tfrc.json", true},
		{"/home/u/.m2/settings.xml", true},
		{"/home/u/.gradle/gradle.properties", true},
		{"/home/u/.yarnrc.yml", true},
		{"/home/u/.config/rclone/rclone.conf", true},
		{"/home/u/.kube/cache/discovery/x.json", true},
		{"/home/u/.kube/config", true},
		{"/home/u/.docker/contexts/meta/x/meta.json", true},
		{"/home/u/.local/share/keyrings/login.keyring", true},
		{"/home/u/.local/share/jupyter/runtime/kernel-1.json", true},
		// Caches next to them stay readable.
		{"/home/u/.cargo/registry/src/index.crates.io-6f17d22bba15001f/ring-0.17.8/src/ec/suite_b/ecdsa/ecPublicKey_p256_pkcs8_spki.der", false},
		{"/home/u/.m2/repository/org/x/credentials/1.0/x.pom", false},
	} {
		_, deny := c.MatchOpen(tc.path, false)
		if deny != tc.deny {
			t.Errorf("open(%s): denied=%v, want %v", tc.path, deny, tc.deny)
		}
	}
}

// An except_read entry in a project file loosens the policy: it needs trust.
func TestMergeExceptReadNeedsTrust(t *testing.T) {
	global := mustParse(t, "/home/u/.aigate/config.yaml", "deny_read:\n  - \"*.pem\"\n")
	project := mustParse(t, "/home/u/proj/.aigate.yaml", "except_read:\n  - vendor/\n")
	p, warns := Merge(global, project, false)
	if len(p.ExceptRead) != 0 || len(warns) != 1 || !strings.Contains(warns[0].String(), `.aigate.yaml:2: except_read entry "vendor/" ignored`) {
		t.Errorf("untrusted: except_read %v, warnings %v", patterns(p.ExceptRead), warns)
	}
	p, warns = Merge(global, project, true)
	c := mustCompile(t, p)
	if len(warns) != 0 || len(p.ExceptRead) != 1 {
		t.Fatalf("trusted: except_read %v, warnings %v", patterns(p.ExceptRead), warns)
	}
	if _, deny := c.MatchOpen("/home/u/proj/vendor/x/ca.pem", false); deny {
		t.Error("trusted except_read vendor/ leaves vendor/x/ca.pem denied")
	}
	if _, deny := c.MatchOpen("/home/u/proj/ca.pem", false); !deny {
		t.Error("ca.pem outside vendor/ is readable")
	}
}
