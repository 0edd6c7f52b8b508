package darwin

import (
	"context"
	"io/fs"
	"path"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
)

// aclModel is a small model of what chmod's ACL commands do to the files,
// enough to follow entries through inheritance: chmod -h +a adds an
// explicit entry, -a removes the explicit entry with that text, and a file
// or directory created later copies its parent's file_inherit or
// directory_inherit entries, as XNU does.
type aclModel map[string][]modelEntry

type modelEntry struct {
	text      string
	inherited bool
}

func (m aclModel) run(t *testing.T, cs []Command) {
	t.Helper()
	for _, c := range cs {
		if c.Name != "chmod" {
			continue
		}
		if c.Args[0] != "-h" {
			t.Fatalf("chmod without -h: %s", c.Short())
		}
		text := c.Args[2]
		for _, p := range c.Args[3:] {
			switch c.Args[1] {
			case "+a":
				m[p] = append(m[p], modelEntry{text: text})
			case "-a":
				m[p] = slices.DeleteFunc(m[p], func(e modelEntry) bool { return !e.inherited && e.text == text })
			}
		}
	}
}

// create makes p as the sandbox user would, inheriting from its parent.
func (m aclModel) create(p string, dir bool) {
	flag := "file_inherit"
	if dir {
		flag = "directory_inherit"
	}
	for _, e := range m[path.Dir(p)] {
		if strings.Contains(e.text, flag) {
			m[p] = append(m[p], modelEntry{text: e.text, inherited: true})
		}
	}
}

// allows reports whether an entry grants who perm on p, deny first.
func (m aclModel) allows(p, who, perm string) bool {
	has := func(kind string) bool {
		for _, e := range m[p] {
			if rest, ok := strings.CutPrefix(e.text, "user:"+who+" "+kind+" "); ok && slices.Contains(strings.Split(rest, ","), perm) {
				return true
			}
		}
		return false
	}
	return !has("deny") && has("allow")
}

// TestFilesTheToolCreatesStayUsable follows git's case: the tool (as the
// sandbox user) runs git, which creates .git/objects/ab/ and an object in
// it, owned by the sandbox user with mode 0755/0444. After the session,
// the person's own git must still add objects to that directory and
// remove them (gc); without an inherited entry it gets "insufficient
// permission for adding an object".
func TestFilesTheToolCreatesStayUsable(t *testing.T) {
	for _, owner := range []string{"alice", ""} {
		f := testFS()
		f["home/alice/src/proj/.git/objects/pack/p.idx"] = &fstest.MapFile{Data: []byte("x"), Mode: 0o444}
		env := testEnv(t)
		env.FS, env.Owner = f, owner
		r := &fakeRunner{}
		if _, err := Apply(context.Background(), r, testPolicy(), env); err != nil {
			t.Fatal(err)
		}
		m := aclModel{}
		m.run(t, r.calls)
		objs := "/home/alice/src/proj/.git/objects"
		m.create(objs+"/ab", true)
		m.create(objs+"/ab/cdef01", false)
		m.create("/home/alice/src/proj/new.go", false)
		if !m.allows(objs+"/ab", "_aigate", "add_file") {
			t.Fatal("the sandbox user cannot add to a directory it created (model broken)")
		}
		r.calls = nil
		if err := Finish(context.Background(), r, testUser, env.StateFile); err != nil {
			t.Fatal(err)
		}
		m.run(t, r.calls)
		usable := m.allows(objs+"/ab", "alice", "add_file") && m.allows(objs+"/ab", "alice", "delete_child") &&
			m.allows(objs+"/ab/cdef01", "alice", "read") && m.allows("/home/alice/src/proj/new.go", "alice", "write")
		if owner != "" && !usable {
			t.Errorf("after the session alice cannot use what the tool created: %+v", m[objs+"/ab"])
		}
		if owner == "" && usable {
			t.Error("model grants alice access without the owner entry: the test proves nothing")
		}
		// The project's own directories lose the owner's explicit entry
		// again; only inherited copies on new files stay.
		for _, e := range m["/home/alice/src/proj"] {
			t.Errorf("entry left on the project root: %+v", e)
		}
	}
}

// TestExpandSkipsPrivateHomeDirectories: directories others cannot search
// (~/Documents, ~/Desktop are 0700) are not listed: the sandbox user cannot
// reach them, and listing them as root makes macOS ask for the terminal's
// access (TCC). The directories leading to the project are still walked.
func TestExpandSkipsPrivateHomeDirectories(t *testing.T) {
	f := testFS()
	f["home/alice/Documents"] = &fstest.MapFile{Mode: fs.ModeDir | 0o700}
	f["home/alice/Documents/old/.env"] = &fstest.MapFile{Data: []byte("x"), Mode: 0o644}
	f["home/alice/src"] = &fstest.MapFile{Mode: fs.ModeDir | 0o700}
	f["home/alice/src/other/.env"] = &fstest.MapFile{Data: []byte("x"), Mode: 0o644}
	exp, err := Expand(f, testPolicy(), ExpandOptions{ProjectRoot: "/home/alice/src/proj", Home: "/home/alice"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tg := range exp.Targets {
		got = append(got, tg.Path)
	}
	if slices.Contains(got, "/home/alice/Documents/old/.env") {
		t.Error("walked into ~/Documents (mode 0700)")
	}
	for _, want := range []string{"/home/alice/src/other/.env", "/home/alice/notes/.env.backup", "/home/alice/src/proj/.env"} {
		if !slices.Contains(got, want) {
			t.Errorf("%s not found; targets %q", want, got)
		}
	}
}
