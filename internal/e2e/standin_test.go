//go:build linux

package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/aigate-dev/aigate/internal/testutil"
)

// A stand-in internet: a network namespace of the test's whose loopback
// holds a resolver's address and a server's, so that names resolve and
// HTTPS connects as on the internet while no packet leaves the namespace.
const (
	standinServer   = "198.18.0.10" // every name resolves here
	standinResolver = "198.18.0.53" // the namespace's /etc/resolv.conf names it
)

// standin serves the stand-in internet: the resolver answers every name
// with standinServer, which speaks HTTPS for any name with a certificate
// from the test's own CA (handed to Claude Code as NODE_EXTRA_CA_CERTS),
// answers Claude Code's connectivity checks, and plays the mock model on
// /v1/messages.
type standin struct {
	ns *testutil.NetNS
	// ca is the file of the CA certificate the server's certificates
	// chain to.
	ca string
	// resolv is the resolv.conf that names the stand-in resolver.
	resolv string

	mu    sync.Mutex
	names map[string]bool // asked of the resolver
	hosts map[string]bool // HTTPS requests' Host
}

var standinSeq int

// startStandin makes the namespace and its servers, removed when the test
// ends. Programs run in it through wrap.
func startStandin(t *testing.T, mock *claudeMock) *standin {
	t.Helper()
	standinSeq++
	name := fmt.Sprintf("aigate-e2e-%d-%d", os.Getpid(), standinSeq)
	s := &standin{
		ns:    testutil.NewNetNS(t, name, standinServer+"/32", standinResolver+"/32"),
		names: map[string]bool{},
		hosts: map[string]bool{},
	}
	// wrap's bind mount needs a file to mount on. The VM's guest has no
	// /etc/resolv.conf: an empty one, while this test runs, changes
	// nothing for the others (an agent treats both alike: no DNS proxy).
	if _, err := os.Lstat("/etc/resolv.conf"); errors.Is(err, fs.ErrNotExist) {
		if err := os.WriteFile("/etc/resolv.conf", nil, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove("/etc/resolv.conf") })
	}
	s.resolv = filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(s.resolv, []byte("nameserver "+standinResolver+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	caKey, ca, caPEM := newCA(t)
	// Not *.pem: the defaults refuse those names to the sandbox.
	s.ca = filepath.Join(t.TempDir(), "standin-ca.crt")
	if err := os.WriteFile(s.ca, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	var certMu sync.Mutex
	certs := map[string]*tls.Certificate{}
	tlsConf := &tls.Config{GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		certMu.Lock()
		defer certMu.Unlock()
		if c, ok := certs[hello.ServerName]; ok {
			return c, nil
		}
		c, err := leafCert(caKey, ca, hello.ServerName)
		if err == nil {
			certs[hello.ServerName] = c
		}
		return c, err
	}}

	var pc net.PacketConn
	var ln net.Listener
	s.ns.Do(func() {
		var err error
		if pc, err = net.ListenPacket("udp4", standinResolver+":53"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp4", standinServer+":443"); err != nil {
			t.Fatal(err)
		}
	})
	dnsSrv := &mdns.Server{PacketConn: pc, Handler: mdns.HandlerFunc(s.resolve)}
	go dnsSrv.ActivateAndServe()
	t.Cleanup(func() { dnsSrv.Shutdown() })
	httpSrv := &http.Server{TLSConfig: tlsConf, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.hosts[r.Host] = true
		s.mu.Unlock()
		switch {
		case strings.HasSuffix(r.URL.Path, "/v1/messages"):
			mock.serve(w, r)
		case r.URL.Path == "/api/hello" || r.URL.Path == "/v1/oauth/hello":
			// The connectivity checks of Claude Code's first start.
			w.WriteHeader(http.StatusOK)
		default:
			http.NotFound(w, r)
		}
	})}
	go httpSrv.ServeTLS(ln, "", "")
	t.Cleanup(func() { httpSrv.Close() })
	return s
}

// wrap returns argv run in the stand-in's network namespace and in a mount
// namespace of its own where /etc/resolv.conf names the stand-in resolver:
// the agent of `aigate run` forwards the sandbox's queries there. (Not
// `ip netns exec`: it mounts a new /sys, without the cgroup and BPF file
// systems aigate needs.)
func (s *standin) wrap(argv ...string) []string {
	return append([]string{"nsenter", "--net=/run/netns/" + s.ns.Name, "unshare", "--mount", "sh", "-c",
		`mount --bind "$0" /etc/resolv.conf && exec "$@"`, s.resolv}, argv...)
}

// resolve answers A questions for any name with standinServer, and other
// types with no records.
func (s *standin) resolve(w mdns.ResponseWriter, req *mdns.Msg) {
	m := new(mdns.Msg).SetReply(req)
	if len(req.Question) == 1 {
		q := req.Question[0]
		s.mu.Lock()
		s.names[strings.TrimSuffix(strings.ToLower(q.Name), ".")] = true
		s.mu.Unlock()
		if q.Qtype == mdns.TypeA {
			m.Answer = append(m.Answer, &mdns.A{
				Hdr: mdns.RR_Header{Name: q.Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 60},
				A:   net.ParseIP(standinServer).To4(),
			})
		}
	}
	w.WriteMsg(m)
}

// reached reports whether an HTTPS request for host arrived.
func (s *standin) reached(host string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hosts[host]
}

func newCA(t *testing.T) (*ecdsa.PrivateKey, *x509.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "aigate e2e stand-in CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func leafCert(caKey *ecdsa.PrivateKey, ca *x509.Certificate, name string) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der, ca.Raw}, PrivateKey: key}, nil
}

// TestE2EClaudeCodeFirstStart starts Claude Code's interface as a
// first-time user would, under `aigate run` with the defaults, on a
// stand-in internet (no ANTHROPIC_BASE_URL: the real host names, resolved
// through the sandbox's DNS proxy):
//   - a user who will log in: the first-start connectivity check fetches
//     api.anthropic.com and platform.claude.com, passes, and the login
//     screen follows;
//   - a user with an API key: the first-start screens lead to the prompt,
//     a session runs against the stand-in API (its injected model reads
//     .env: refused) and Claude Code exits 0;
//   - the control: with the old default allow_net (no
//     platform.claude.com) the first user's start ends in "Unable to
//     connect to Anthropic services" and exit 1, as issue 13 found.
func TestE2EClaudeCodeFirstStart(t *testing.T) {
	claude := claudeBinary(t)
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		testutil.SkipUnlessKernel(t, "no tmux to drive the interface")
	}
	for _, tool := range []string{"nsenter", "unshare"} {
		if _, err := exec.LookPath(tool); err != nil {
			testutil.SkipUnlessKernel(t, "no "+tool+" (util-linux) to enter the stand-in internet")
		}
	}
	eachBackend(t, func(t *testing.T, w *world) {
		testutil.RequireRoot(t)
		// The agent's DNS proxy must be in the stand-in's namespaces, where
		// the sandbox's queries go and /etc/resolv.conf names the stand-in
		// resolver: each run starts its own, also in the VM.
		w.embedded()
		w.defaults()
		mock := startClaudeMock(t, []string{"cat .env"})
		inet := startStandin(t, mock)
		w.write(".env", "ANTHROPIC_API_KEY=sk-ant-e2e-secret\n")
		if out, err := exec.Command("git", "init", "-q", w.proj).CombinedOutput(); err != nil {
			t.Fatalf("git init: %v\n%s", err, out)
		}
		const key = "sk-ant-dummy-e2e-first-start-0123456789"
		// start runs claude in a new pane as a user whose onboarding is
		// not done and who trusts the project; with key, the key is in the
		// environment and approved, so that Enter on each first-start
		// screen takes the way such a user takes.
		start := func(name, key string) *tmuxPane {
			t.Helper()
			os.Remove(w.events)
			state := `{"projects": {"` + w.proj + `": {"hasTrustDialogAccepted": true}}}`
			env := append(w.env, "NODE_EXTRA_CA_CERTS="+inet.ca)
			if key != "" {
				state = `{"customApiKeyResponses": {"approved": ["` + key[len(key)-20:] + `"], "rejected": []},` + state[1:]
				env = append(env, "ANTHROPIC_API_KEY="+key)
			}
			w.write("~/.claude.json", state+"\n")
			os.RemoveAll(w.path("~/.claude"))
			var script strings.Builder
			script.WriteString("cd " + shellQuote(w.proj) + "\n")
			for _, kv := range env {
				k, v, _ := strings.Cut(kv, "=")
				if k == "TMUX" || k == "TMUX_PANE" || k == "TERM" || strings.ContainsAny(k, " -.%()") {
					continue
				}
				script.WriteString("export " + k + "=" + shellQuote(v) + "\n")
			}
			script.WriteString(shellQuote(w.bin) + " run --backend " + w.backend + " --events " + shellQuote(w.events) + " --trust-dir " + shellQuote(w.trust) +
				" --metrics-addr '' -- " + shellQuote(claude) + " --allowedTools Bash --permission-mode default\n")
			script.WriteString("echo \"RUN-EXITED $?\"\nsleep 600\n")
			sh := w.write("~/"+name+".sh", script.String())
			return newTmuxPane(t, tmux, name, inet.wrap("sh", sh)...)
		}
		// until returns the screen once done(screen) holds, pressing Enter
		// on each screen (theme, notes, terminal set-up) that stays put
		// for 2 s, or once the run has ended.
		until := func(p *tmuxPane, what string, done func(string) bool) string {
			t.Helper()
			deadline := time.Now().Add(runLimit)
			last, since := "", time.Now()
			for {
				s := p.screen()
				if done(s) || strings.Contains(s, "RUN-EXITED") {
					return s
				}
				if time.Now().After(deadline) {
					t.Fatalf("Claude Code neither showed %s nor ended:\n%s", what, s)
				}
				if s != last {
					last, since = s, time.Now()
				} else if time.Since(since) > 2*time.Second && !strings.Contains(s, "Checking connectivity") {
					p.keys("Enter")
					since = time.Now()
				}
				time.Sleep(300 * time.Millisecond)
			}
		}
		// The login screen, or the one after it: an Enter pressed on a
		// screen that stayed put while Claude Code worked (slow in the
		// 6.12 guest beside another) may land on the login screen as it
		// appears and choose its first method, the sign-in URL.
		loggingIn := func(s string) bool {
			return strings.Contains(s, "Select login method") || strings.Contains(s, "oauth/authorize")
		}
		loginScreen := func(s string) bool {
			return loggingIn(s) || strings.Contains(s, "Unable to connect")
		}
		// The footer under the prompt names the permission mode ("manual
		// mode on · ? for shortcuts", "auto mode on (shift+tab to
		// cycle)"); the hints come and go.
		prompt := func(s string) bool { return strings.Contains(s, " mode on") }

		// A user who will log in passes the connectivity check.
		p := start("login", "")
		login := until(p, "its login screen", loginScreen)
		if !loggingIn(login) {
			t.Fatalf("Claude Code's first start did not reach its login screen under the defaults:\n%s", login)
		}
		for _, host := range []string{"api.anthropic.com", "platform.claude.com"} {
			if !inet.reached(host) {
				t.Errorf("Claude Code reached its login screen without contacting %s: the stand-in internet was not used", host)
			}
		}
		p.leave("C-c")
		p.waitFor("RUN-EXITED", runLimit)

		// A user with an API key gets to work.
		p = start("key", key)
		ready := until(p, "its prompt", prompt)
		if !prompt(ready) {
			t.Fatalf("Claude Code with an API key did not start under the defaults:\n%s", ready)
		}
		p.submit("Please set up the project.")
		during := p.waitFor("All done.", runLimit)
		if bad := strayAigateText(during); len(bad) > 0 {
			t.Errorf("aigate wrote into Claude Code's interface %q:\n%s", bad, during)
		}
		p.leave("C-d")
		after := p.waitFor("RUN-EXITED", runLimit)
		if !strings.Contains(after, "RUN-EXITED 0") {
			t.Errorf("the session did not end normally:\n%s", after)
		}
		for _, res := range mock.seen() {
			if strings.Contains(res, "sk-ant-e2e-secret") {
				t.Errorf("a secret reached the model: %q", res)
			}
		}
		if len(mock.seen()) != 1 {
			t.Errorf("the stand-in API saw %d tool results, want 1: %q", len(mock.seen()), mock.seen())
		}
		if _, ok := findEvent(w.readEvents(), "read", w.path(".env")); !ok {
			t.Errorf("no refusal of .env in %+v", w.readEvents())
		}
		refused := dnsRefusals(t, w)
		for _, h := range []string{"api.anthropic.com", "platform.claude.com", "downloads.claude.ai"} {
			if refused[h] {
				t.Errorf("the defaults refused %s, which Claude Code needs to start", h)
			}
		}
		if os.Getenv("AIGATE_E2E_DEBUG") != "" {
			t.Logf("login:\n%s\nready:\n%s\nduring:\n%s\nafter:\n%s\nnames asked: %v", login, ready, during, after, inet.names)
		}

		// The old defaults, for the control: the first start fails.
		cfg, err := os.ReadFile(w.path("~/.aigate/config.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		old := strings.Replace(string(cfg), "  - platform.claude.com", "  # platform.claude.com", 1)
		if old == string(cfg) {
			t.Fatal("the defaults no longer list platform.claude.com as this test expects")
		}
		w.config(old)
		p = start("old", "")
		failed := until(p, "its login screen", loginScreen)
		if !strings.Contains(failed, "Unable to connect to Anthropic services") {
			t.Errorf("without platform.claude.com in allow_net Claude Code's first start did not fail: the test proves nothing:\n%s", failed)
		}
		failed = p.waitFor("RUN-EXITED", runLimit)
		if !strings.Contains(failed, "RUN-EXITED 1") {
			t.Errorf("want exit 1 from the failed start:\n%s", failed)
		}
		if !dnsRefusals(t, w)["platform.claude.com"] {
			t.Errorf("the failed start has no DNS refusal of platform.claude.com")
		}
	})
}

// tmuxPane is a detached tmux session of one pane running a command, for
// driving a full-screen program and reading its screen.
type tmuxPane struct {
	t    *testing.T
	tmux string
	sock string
}

func newTmuxPane(t *testing.T, tmux, name string, argv ...string) *tmuxPane {
	t.Helper()
	p := &tmuxPane{t: t, tmux: tmux, sock: filepath.Join(t.TempDir(), "tmux-"+name)}
	p.run(append([]string{"new-session", "-d", "-x", "100", "-y", "40"}, argv...)...)
	t.Cleanup(func() { exec.Command(tmux, "-S", p.sock, "kill-server").Run() })
	return p
}

func (p *tmuxPane) run(args ...string) string {
	p.t.Helper()
	out, err := exec.Command(p.tmux, append([]string{"-S", p.sock}, args...)...).CombinedOutput()
	if err != nil {
		p.t.Fatalf("tmux %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func (p *tmuxPane) screen() string      { return p.run("capture-pane", "-p", "-J") }
func (p *tmuxPane) keys(keys ...string) { p.run(append([]string{"send-keys"}, keys...)...) }
func (p *tmuxPane) literal(text string) { p.run("send-keys", "-l", text) }

// submit types text at Claude Code's prompt and presses Enter once the
// text is on the screen. Enter sent a fixed 300 ms after the text once
// left a new line in the prompt instead of sending it (the 6.12 guest,
// with two more VMs on the two CPUs): most likely the CLI read both at
// once and took them for a paste.
func (p *tmuxPane) submit(text string) {
	p.t.Helper()
	p.literal(text)
	p.waitFor(text, runLimit)
	time.Sleep(500 * time.Millisecond)
	p.keys("Enter")
}

// leave presses key twice, as a user leaving Claude Code does (the
// first press asks for a second). Under an emulated guest the pair can
// land while the screen is still redrawing, or farther apart than the
// CLI's "press again" window, and the CLI then stays: a user presses
// again, and so does leave, a few times, 15 s apart, until the run has
// ended. The caller still waits for the end.
func (p *tmuxPane) leave(key string) {
	for try := 0; try < 5; try++ {
		p.keys(key)
		time.Sleep(400 * time.Millisecond)
		p.keys(key)
		for gone := time.Now().Add(15 * time.Second); time.Now().Before(gone); time.Sleep(200 * time.Millisecond) {
			if strings.Contains(p.screen(), "RUN-EXITED") {
				return
			}
		}
	}
}

// waitFor returns the screen once it shows what, failing after d.
func (p *tmuxPane) waitFor(what string, d time.Duration) string {
	p.t.Helper()
	deadline := time.Now().Add(d)
	for {
		s := p.screen()
		if strings.Contains(s, what) {
			return s
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("the screen never showed %q:\n%s\nwith the scrollback:\n%s", what, s, p.run("capture-pane", "-p", "-J", "-S", "-200"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}
