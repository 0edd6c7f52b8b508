package darwin

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/aigate-dev/aigate/internal/policy"
)

func TestUserCommandsGolden(t *testing.T) {
	golden(t, "user_create", renderCommands(CreateUserCommands(testUser)))
	golden(t, "user_remove", renderCommands(RemoveUserCommands(testUser)))
	custom := testUser
	custom.Home = "/Users/Shared/aigate"
	for _, c := range RemoveUserCommands(custom) {
		if c.Name == "rm" {
			t.Errorf("removal deletes a home aigate did not create: %s", c)
		}
	}
}

func TestParseIDListAndChooseID(t *testing.T) {
	uids, err := ParseIDList("_www 70\nroot 0\n_oahd 441\n_aigate_old 499\nnobody -2\n\n")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(uids) != "[70 0 441 499]" {
		t.Errorf("uids = %v (negative ids like nobody's -2 are skipped)", uids)
	}
	// A record without the attribute is listed with no value: no id used.
	if ids, err := ParseIDList("novalue\nroot 0\n"); err != nil || fmt.Sprint(ids) != "[0]" {
		t.Errorf("name-only line: %v, %v", ids, err)
	}
	if _, err := ParseIDList("root 0\nx notanumber\n"); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("want a line-numbered error for a non-numeric id, got %v", err)
	}
	tests := []struct {
		uids, gids []uint32
		want       uint32
		err        bool
	}{
		{nil, nil, 499, false},
		{[]uint32{499}, nil, 498, false},
		{[]uint32{499}, []uint32{498}, 497, false}, // must be free as both
		{seq(400, 499), nil, 0, true},
		{seq(401, 499), []uint32{0, 20}, 400, false},
	}
	for i, tt := range tests {
		got, err := ChooseID(tt.uids, tt.gids)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("%d: ChooseID = %d, %v; want %d, err %v", i, got, err, tt.want, tt.err)
		}
	}
}

func seq(a, b uint32) []uint32 {
	var s []uint32
	for i := a; i <= b; i++ {
		s = append(s, i)
	}
	return s
}

func TestExpand(t *testing.T) {
	env := testEnv(t)
	exp, err := Expand(env.FS, testPolicy(), ExpandOptions{ProjectRoot: env.ProjectRoot, Home: env.Home, ExecDirs: env.ExecDirs})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tg := range exp.Targets {
		got = append(got, fmt.Sprintf("%s %s dir=%v rule=%d", tg.Access, tg.Path, tg.Dir, tg.Rule))
	}
	golden(t, "expand", strings.Join(got, "\n")+"\nmissing: "+strings.Join(exp.Missing, " ")+"\n")
	has := func(p string, a policy.Access) bool {
		for _, tg := range exp.Targets {
			if tg.Path == p && tg.Access == a {
				return true
			}
		}
		return false
	}
	for _, p := range []string{
		"/home/alice/src/proj/node_modules/pkg/.env", // secrets hide in node_modules too
		"/home/alice/Library/Caches/x/id_rsa_old",
		"/home/alice/notes/.env.backup",
	} {
		if !has(p, policy.AccessRead) {
			t.Errorf("%s not expanded", p)
		}
	}
	if has("/home/alice/src/proj/secrets/inner.pem", policy.AccessRead) {
		t.Error("searched inside a read-denied directory, which the sandbox user cannot reach anyway")
	}
	if exp.Truncated {
		t.Error("unexpected truncation")
	}
}

func TestExpandBound(t *testing.T) {
	env := testEnv(t)
	exp, err := Expand(env.FS, testPolicy(), ExpandOptions{ProjectRoot: env.ProjectRoot, Home: env.Home, MaxEntries: 8})
	if err != nil {
		t.Fatal(err)
	}
	if !exp.Truncated || exp.SkippedAt == "" || exp.Visited != 8 {
		t.Fatalf("truncated=%v at=%q visited=%d; want truncation reported after 8", exp.Truncated, exp.SkippedAt, exp.Visited)
	}
	// The project is walked first, so its top level is covered even when
	// the bound is hit.
	found := false
	for _, tg := range exp.Targets {
		found = found || tg.Path == "/home/alice/src/proj/.env"
	}
	if !found {
		t.Error("project .env not found before the bound")
	}
}

func TestDenyText(t *testing.T) {
	tests := []struct {
		a    policy.Access
		dir  bool
		want string
	}{
		// Read denies refuse the content, not stat: ls -l, rg and git
		// must still see the file (readattr, readsecurity are allowed).
		{policy.AccessRead, false, "user:_aigate deny read,readextattr"},
		{policy.AccessRead, true, "user:_aigate deny list,search,readextattr"},
		{policy.AccessWrite, false, "user:_aigate deny write,append,writeattr,writeextattr,writesecurity,chown,delete"},
		{policy.AccessWrite, true, "user:_aigate deny add_file,add_subdirectory,writeattr,writeextattr,writesecurity,chown,delete,delete_child,file_inherit,directory_inherit"},
		{policy.AccessExec, false, "user:_aigate deny execute"},
		{policy.AccessExec, true, "user:_aigate deny execute,file_inherit,directory_inherit"},
	}
	for _, tt := range tests {
		got, ok := DenyText("_aigate", tt.a, tt.dir)
		if !ok || got != tt.want {
			t.Errorf("%v dir=%v: got %q, want %q", tt.a, tt.dir, got, tt.want)
		}
	}
	for _, p := range []string{"/usr/bin/curl", "/System/Cryptexes/App/usr/bin/safaridriver", "/Library/Apple/usr/bin/x",
		"/var/run/com.apple.security.cryptexd/codex.system/bootstrap/usr/bin/python3"} {
		if !OnSealedVolume(p) {
			t.Errorf("%s: not known as sealed", p)
		}
	}
	if OnSealedVolume("/Library/Application Support/x") || OnSealedVolume("/usr/local/bin/curl") {
		t.Error("writable path taken for sealed")
	}
}

func TestACECommandsBatch(t *testing.T) {
	a := ACE{Text: "user:_aigate deny read,readextattr"}
	for i := 0; i < 10000; i++ {
		a.Paths = append(a.Paths, fmt.Sprintf("/Users/alice/src/proj/testdata/certs/%04d/server.key", i))
	}
	adds, rms := a.AddCommands(), a.RemoveCommands()
	if len(adds) < 2 || len(adds) != len(rms) {
		t.Fatalf("%d add and %d remove commands for 10000 long paths; want a few batches", len(adds), len(rms))
	}
	n := 0
	for i, c := range adds {
		size := 0
		for _, p := range c.Args[3:] {
			size += len(p) + 1
		}
		if size > MaxBatchBytes {
			t.Errorf("batch %d: %d bytes of paths", i, size)
		}
		if c.Args[0] != "-h" || c.Args[1] != "+a" || rms[i].Args[1] != "-a" || !slices.Equal(c.Args[2:], rms[i].Args[2:]) {
			t.Errorf("batch %d: %q / %q", i, c.Args[:3], rms[i].Args[:3])
		}
		n += len(c.Args) - 3
	}
	if n != 10000 {
		t.Errorf("%d paths in the batches, want 10000", n)
	}
}

func TestProjectACEs(t *testing.T) {
	if got := TraversalPaths("/Users/alice/src/proj", "/Users/alice"); !slices.Equal(got, []string{"/Users/alice", "/Users/alice/src"}) {
		t.Errorf("traversal = %q", got)
	}
	if got := TraversalPaths("/srv/proj", "/Users/alice"); got != nil {
		t.Errorf("project outside home: traversal %q, want none", got)
	}
}

func TestPlanGolden(t *testing.T) {
	env := testEnv(t)
	c := testPolicy()
	exp, _ := Expand(env.FS, c, ExpandOptions{ProjectRoot: env.ProjectRoot, Home: env.Home, ExecDirs: env.ExecDirs})
	steps, warns := Plan(c, exp, env, Anchor{Text: "# anchor\n"})
	var b strings.Builder
	for _, s := range steps {
		fmt.Fprintf(&b, "## %s\n%s\n", s.What, s.Do)
		for _, u := range s.Undo {
			fmt.Fprintf(&b, "undo: %s\n", u)
		}
	}
	for _, w := range warns {
		fmt.Fprintf(&b, "warning: %s\n", w)
	}
	golden(t, "plan", b.String())
}

func TestAnchorGolden(t *testing.T) {
	c := testPolicy()
	resolved := map[uint16][]netip.Addr{
		0:   {netip.MustParseAddr("160.79.104.10")},
		443: {netip.MustParseAddr("2606:50c0:8000::154"), netip.MustParseAddr("140.82.121.4"), netip.MustParseAddr("::ffff:140.82.121.4")},
	}
	golden(t, "anchor_deny", BuildAnchor(AnchorSpec{User: "_aigate", Net: c.Net, Resolved: resolved}).Text)
	golden(t, "anchor_audit", BuildAnchor(AnchorSpec{User: "_aigate", Net: c.Net, Audit: true, Resolved: resolved}).Text)
	allow := c.Net
	allow.Mode = policy.NetAllow
	golden(t, "anchor_allow", BuildAnchor(AnchorSpec{User: "_aigate", Net: allow}).Text)
	noLoop := c.Net
	noLoop.Loopback = policy.LoopbackNone
	if strings.Contains(BuildAnchor(AnchorSpec{User: "_aigate", Net: noLoop}).Text, "127.0.0.0/8") {
		t.Error("loopback passed although the policy denies it")
	}
	// A domain that did not resolve still gets its (empty) port table, so
	// a refresh can fill it without reloading the anchor.
	a := BuildAnchor(AnchorSpec{User: "_aigate", Net: c.Net})
	if _, ok := a.Tables["aigate_allow_p443"]; !ok || !strings.Contains(a.Text, "table <aigate_allow_p443> persist\n") {
		t.Errorf("empty port table missing:\n%s", a.Text)
	}
}

func TestPFCommandsGolden(t *testing.T) {
	cs := []Command{EnableCommand(), ReleaseCommand("123"), LoadAnchorCommand("pass out quick all\n"),
		ReplaceTableCommand("aigate_allow", []string{"1.2.3.4", "::1"}), PFLogCommand()}
	cs = append(cs, FlushAnchorCommands()...)
	cs = append(cs, SetupPFCommands()...)
	cs = append(cs, AnchorRulesCommand(), cmd("pfctl", "-s", "info"), ReadUserCommand("_aigate"),
		ListUserProcessesCommand(testUser), SignalUserProcessesCommand(testUser, "TERM"), SignalUserProcessesCommand(testUser, "KILL"))
	golden(t, "pfctl", renderCommands(cs))
	tok, err := ParseEnableToken("No ALTQ support in kernel\nALTQ related functions disabled\npf enabled\nToken : 17368543127000\n")
	if err != nil || tok != "17368543127000" {
		t.Errorf("token = %q, %v", tok, err)
	}
	if _, err := ParseEnableToken("pfctl: pf already enabled\n"); err == nil {
		t.Error("want error without a token")
	}
}

// appleConf is macOS's stock /etc/pf.conf.
const appleConf = `#
# Default PF configuration file.
#
scrub-anchor "com.apple/*"
nat-anchor "com.apple/*"
rdr-anchor "com.apple/*"
dummynet-anchor "com.apple/*"
anchor "com.apple/*"
load anchor "com.apple" from "/etc/pf.anchors/com.apple"
`

func TestPFConfEdit(t *testing.T) {
	in, changed, err := InstallAnchorLine(appleConf)
	if err != nil || !changed {
		t.Fatalf("install: changed=%v err=%v", changed, err)
	}
	golden(t, "pfconf_installed", in)
	again, changed, err := InstallAnchorLine(in)
	if err != nil || changed || again != in {
		t.Errorf("second install changed the file (changed=%v err=%v)", changed, err)
	}
	out, had, err := RemoveAnchorLine(in)
	if err != nil || !had || out != appleConf {
		t.Errorf("remove: had=%v err=%v, result differs from the original:\n%s", had, err, out)
	}
	if out2, had, _ := RemoveAnchorLine(out); had || out2 != out {
		t.Error("second removal changed the file")
	}
	// The anchor comes before the first filter rule: an earlier anchor's
	// "pass quick" would otherwise win.
	if !strings.Contains(in, "dummynet-anchor \"com.apple/*\"\n"+confBegin+"\n"+confAnchor+"\n"+confEnd+"\nanchor \"com.apple/*\"") {
		t.Errorf("block not before the first filter rule:\n%s", in)
	}
	// A block an earlier setup appended at the end is moved there.
	old := appleConf + confBegin + "\n" + confAnchor + "\n" + confEnd + "\n"
	if moved, changed, err := InstallAnchorLine(old); err != nil || !changed || moved != in {
		t.Errorf("block at the end not moved (changed=%v err=%v):\n%s", changed, err, moved)
	}
	// No filter rule and no trailing newline: appended on its own line.
	noNL, _, _ := InstallAnchorLine("set skip on lo0")
	if noNL != "set skip on lo0\n"+confBegin+"\n"+confAnchor+"\n"+confEnd+"\n" {
		t.Errorf("block glued to the last line:\n%s", noNL)
	}
	moved := strings.Replace(in, "anchor \"com.apple/*\"\n", "anchor \"com.apple/*\"\n"+confBegin+"\n"+confAnchor+"\n"+confEnd+"\n", 1)
	moved, _, _ = RemoveAnchorLine(moved) // removes both copies
	if moved != appleConf {
		t.Errorf("removal left a copy behind:\n%s", moved)
	}
	broken := appleConf + confBegin + "\n" + confAnchor + "\n"
	for _, f := range []func(string) (string, bool, error){InstallAnchorLine, RemoveAnchorLine} {
		if _, _, err := f(broken); err == nil || !strings.Contains(err.Error(), "by hand") {
			t.Errorf("damaged block: want an error saying what to do, got %v", err)
		}
	}
}

// except_read entries keep known-public files out of the ACLs, as the
// reference matcher keeps them readable.
func TestExpandHonoursExceptions(t *testing.T) {
	env := testEnv(t)
	c := testPolicy()
	c.Read.Except = &policy.FileSet{Names: []policy.Entry{{Value: "node_modules", Rule: policy.RuleID(len(c.Rules) + 1)}}}
	exp, err := Expand(env.FS, c, ExpandOptions{ProjectRoot: env.ProjectRoot, Home: env.Home})
	if err != nil {
		t.Fatal(err)
	}
	var sawEnv bool
	for _, tg := range exp.Targets {
		if tg.Path == "/home/alice/src/proj/node_modules/pkg/.env" {
			t.Errorf("excepted %s expanded: %+v", tg.Path, tg)
		}
		sawEnv = sawEnv || tg.Path == "/home/alice/notes/.env.backup"
	}
	if !sawEnv {
		t.Error("a secret outside the exception is no longer expanded")
	}
}

// Expand names the rule the kernel-side matchers would: the longest prefix
// or suffix (policy.FileSet.MatchName), not the first one listed.
func TestExpandLongestName(t *testing.T) {
	fsys := fstest.MapFS{
		"home/alice/proj/.env.local.bak": {Data: []byte("x")},
		"home/alice/proj/server-key.pem": {Data: []byte("x")},
	}
	c := &policy.Compiled{Mode: policy.ModeEnforce}
	c.Read.NamePrefix = []policy.Entry{{Value: ".env", Rule: 1}, {Value: ".env.local", Rule: 2}}
	c.Read.NameSuffix = []policy.Entry{{Value: ".pem", Rule: 3}, {Value: "-key.pem", Rule: 4}}
	exp, err := Expand(fsys, c, ExpandOptions{ProjectRoot: "/home/alice/proj", Home: "/home/alice"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]policy.RuleID{}
	for _, tg := range exp.Targets {
		got[tg.Path] = tg.Rule
	}
	if got["/home/alice/proj/.env.local.bak"] != 2 || got["/home/alice/proj/server-key.pem"] != 4 {
		t.Errorf("rules %v, want .env.local.bak: 2 and server-key.pem: 4", got)
	}
}
