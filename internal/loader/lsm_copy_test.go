//go:build linux

package loader

import (
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"
)

// TestExecCopiesFromBTF: the copy programs are kept only where the kernel
// has bpf_ima_file_hash (6.0+); without IMA behind it they are kept but
// say that they refuse by size alone.
func TestExecCopiesFromBTF(t *testing.T) {
	u64 := &btf.Int{Name: "u64", Size: 8}
	helper := &btf.Typedef{Name: "btf_bpf_ima_file_hash", Type: u64}
	ima := &btf.Func{Name: "ima_file_hash", Type: &btf.FuncProto{Return: u64}, Linkage: btf.GlobalFunc}
	for _, tc := range []struct {
		name  string
		types []btf.Type
		ok    bool
		why   string
	}{
		{"5.15", []btf.Type{u64}, false, "no bpf_ima_file_hash"},
		{"no IMA", []btf.Type{helper}, true, "no IMA"},
		{"6.1", []btf.Type{helper, ima}, true, ""},
	} {
		b, err := btf.NewBuilder(tc.types, nil)
		if err != nil {
			t.Fatal(err)
		}
		spec, err := b.Spec()
		if err != nil {
			t.Fatal(err)
		}
		ok, why := execCopies(spec)
		if ok != tc.ok || (tc.why == "") != (why == "") || !strings.Contains(why, tc.why) {
			t.Errorf("%s: %v %q, want %v %q", tc.name, ok, why, tc.ok, tc.why)
		}
	}
}
