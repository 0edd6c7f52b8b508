package cgroup

import "testing"

func TestV2PathAndWithin(t *testing.T) {
	for _, c := range []struct {
		file string
		want string
		ok   bool
	}{
		{"0::/aigate/s1-p4\n", "/aigate/s1-p4", true},
		{"12:pids:/x\n1:name=systemd:/y\n0::/z", "/z", true},
		{"12:pids:/x\n", "", false},
		{"", "", false},
	} {
		got, ok := V2Path([]byte(c.file))
		if string(got) != c.want || ok != c.ok {
			t.Errorf("V2Path(%q) = %q, %v; want %q, %v", c.file, got, ok, c.want, c.ok)
		}
	}
	for _, c := range []struct {
		cg, dir string
		want    bool
	}{
		{"/a/b", "/a/b", true},
		{"/a/b/c", "/a/b", true},
		{"/a/bc", "/a/b", false},
		{"/a", "/a/b", false},
		{"/a/b", "/", false},
	} {
		if got := Within(c.cg, c.dir); got != c.want {
			t.Errorf("Within(%q, %q) = %v, want %v", c.cg, c.dir, got, c.want)
		}
	}
}
