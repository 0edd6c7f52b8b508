package llaudit

import (
	"strings"
	"testing"
)

// Records as the 6.18 host's kernel multicast them (captured with a
// listener on the read-log group).
const (
	recAccessFile  = `audit(1796577640.044:11): domain=14bad2fc1 blockers=fs.write_file path="/home/u/.bashrc" dev="vda" ino=9982390`
	recAccessHex   = `audit(1796577640.044:11): domain=14bad2fc1 blockers=fs.make_reg,fs.write_file path=2F686F6D652F752F6120620A6576696C dev="vda" ino=9982390`
	recDomain      = `audit(1796577640.044:11): domain=14bad2fc1 status=allocated mode=enforcing pid=20427 uid=65534 exe="/usr/bin/aigate" comm="exe"`
	recSyscall     = `audit(1796577640.044:11): arch=c000003e syscall=257 success=no exit=-13 a0=ffffff9c a1=561b7dbb0bc0 a2=241 a3=1b6 items=0 ppid=20414 pid=20427 auid=4294967295 uid=65534 gid=65534 euid=65534 suid=65534 fsuid=65534 egid=65534 sgid=65534 fsgid=65534 tty=(none) ses=4294967295 comm="sh" exe="/usr/bin/dash" key=(null)`
	recEOE         = `audit(1796577640.044:11): `
	recAccessPtr   = `audit(1796577640.044:12): domain=14bad2fc1 blockers=ptrace opid=20426 ocomm="sleep"`
	recAccessSig   = `audit(1796577640.044:13): domain=14bad2fc1 blockers=scope.signal opid=20426 ocomm="sleep"`
	recDeallocated = `audit(1796577640.304:14): domain=14bad2fc1 status=deallocated denials=3`
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name string
		typ  uint16
		in   string
		want Record
	}{
		{"file", TypeLandlockAccess, recAccessFile, Record{Type: TypeLandlockAccess, Serial: 11, Domain: 0x14bad2fc1, Blockers: []string{"fs.write_file"}, Path: "/home/u/.bashrc"}},
		// A path with a space and a newline is logged as hex, never quoted.
		{"hex path", TypeLandlockAccess, recAccessHex, Record{Type: TypeLandlockAccess, Serial: 11, Domain: 0x14bad2fc1, Blockers: []string{"fs.make_reg", "fs.write_file"}, Path: "/home/u/a b\nevil"}},
		{"ptrace", TypeLandlockAccess, recAccessPtr, Record{Type: TypeLandlockAccess, Serial: 12, Domain: 0x14bad2fc1, Blockers: []string{"ptrace"}, OPid: 20426, OComm: "sleep"}},
		{"domain", TypeLandlockDomain, recDomain, Record{Type: TypeLandlockDomain, Serial: 11, Domain: 0x14bad2fc1, Status: "allocated", PID: 20427, UID: 65534}},
		{"deallocated", TypeLandlockDomain, recDeallocated, Record{Type: TypeLandlockDomain, Serial: 14, Domain: 0x14bad2fc1, Status: "deallocated"}},
		{"syscall", TypeSyscall, recSyscall, Record{Type: TypeSyscall, Serial: 11, PID: 20427, UID: 65534, Comm: "sh"}},
		{"eoe", TypeEOE, recEOE, Record{Type: TypeEOE, Serial: 11}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.typ, []byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if !equal(got, tc.want) {
				t.Errorf("Parse = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	for _, in := range []string{
		``,
		`domain=1 blockers=ptrace`,
		`audit(1.2:x): domain=1`,
		`audit(1.2:3): domain=zz blockers=ptrace`,
		`audit(1.2:3): domain=1 path="/unterminated`,
		`audit(1.2:3): domain=1 path=/not/hex`,
		`audit(1.2:3): domain=1 opid=12x`,
	} {
		if r, err := Parse(TypeLandlockAccess, []byte(in)); err == nil {
			t.Errorf("Parse(%q) = %+v, want an error", in, r)
		}
	}
}

// A field's value cannot smuggle another field: a path that looks like
// "x opid=1" is logged as hex by the kernel, and a quoted value ends at
// its quote.
func TestParseNoFieldInjection(t *testing.T) {
	r, err := Parse(TypeLandlockAccess, []byte(`audit(1.2:3): domain=1 blockers=fs.write_file path=78206F7069643D31 dev="vda" ino=1`))
	if err != nil {
		t.Fatal(err)
	}
	if r.Path != "x opid=1" || r.OPid != 0 {
		t.Errorf("got path %q opid %d", r.Path, r.OPid)
	}
}

func equal(a, b Record) bool {
	return a.Type == b.Type && a.Serial == b.Serial && a.Domain == b.Domain &&
		strings.Join(a.Blockers, ",") == strings.Join(b.Blockers, ",") && a.Path == b.Path &&
		a.OPid == b.OPid && a.OComm == b.OComm && a.Status == b.Status && a.PID == b.PID &&
		a.UID == b.UID && a.Comm == b.Comm
}

// FuzzParse: records are kernel text with attacker-chosen fields. Parse
// must never panic, and a record it accepts keeps its serial's digits.
func FuzzParse(f *testing.F) {
	for _, s := range []string{recAccessFile, recAccessHex, recDomain, recSyscall, recEOE, recAccessPtr, recAccessSig, recDeallocated} {
		f.Add(uint16(TypeLandlockAccess), []byte(s))
		f.Add(uint16(TypeSyscall), []byte(s))
		f.Add(uint16(TypeLandlockDomain), []byte(s))
	}
	f.Fuzz(func(t *testing.T, typ uint16, in []byte) {
		r, err := Parse(typ, in)
		if err != nil {
			return
		}
		if r.Type != typ {
			t.Fatalf("type %d, want %d", r.Type, typ)
		}
		c := NewCollector(func(pid int, uid uint32) (Owner, bool) { return Owner{Sandbox: "s"}, pid == 1 })
		for _, e := range c.Add(r, testT0) {
			if e.Sandbox != "s" {
				t.Fatalf("event of sandbox %q", e.Sandbox)
			}
		}
	})
}
