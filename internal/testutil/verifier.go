//go:build linux

package testutil

import (
	"errors"
	"sort"
	"testing"

	"github.com/cilium/ebpf"
)

// CheckVerifierFloors loads every program of spec on this kernel and fails
// when the verifier walked fewer instructions than the program's floor. A
// verifier that wrongly proves a branch always taken (6.12 took task_kill's
// cred argument for non-NULL and pruned the program to 5 instructions, so it
// never refused a signal) still accepts the program: only its size shows it.
//
// floors names every program of spec, so a new program cannot go unchecked;
// a floor is about half the smallest count measured on the kernels CI runs,
// low enough for compiler and kernel drift, far above a pruned body.
//
// It also fails when the program the kernel kept (after the verifier
// removed the code it proved dead, and added its own rewrites) is smaller
// than nine tenths of the program in the object: clang already dropped what
// it could prove dead, so what the verifier drops on top is code it thinks
// can never run. Measured on 6.1, 6.12 and 6.18, every program kept at
// least all its instructions.
func CheckVerifierFloors(t *testing.T, spec *ebpf.CollectionSpec, floors map[string]int) {
	t.Helper()
	names := make([]string, 0, len(spec.Programs))
	for name := range spec.Programs {
		names = append(names, name)
		if _, ok := floors[name]; !ok {
			t.Errorf("program %s has no verifier floor: add one (about half its verified instructions on 6.1 and 6.12)", name)
		}
	}
	sort.Strings(names)
	for name := range floors {
		if spec.Programs[name] == nil {
			t.Errorf("verifier floor for %s, which the object does not have: remove it", name)
		}
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			t.Fatalf("load: %+v", ve)
		}
		t.Fatalf("load: %v", err)
	}
	defer coll.Close()
	for _, name := range names {
		info, err := coll.Programs[name].Info()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		verified, ok := info.VerifiedInstructions()
		if !ok {
			t.Fatalf("%s: this kernel does not report verified instructions (5.16+ does)", name)
		}
		insns, err := info.Instructions()
		if err != nil {
			t.Fatalf("%s: read the program back: %v", name, err)
		}
		object, kept := len(spec.Programs[name].Instructions), len(insns)
		t.Logf("%-28s %6d in the object, %6d verified, %6d after the verifier", name, object, verified, kept)
		if kept*10 < object*9 {
			t.Errorf("%s: the kernel kept %d of the object's %d instructions: the verifier proved the rest unreachable (a pointer argument taken for non-NULL?); read the verifier log (ebpf.LogLevelInstruction)", name, kept, object)
		}
		if floor := floors[name]; int(verified) < floor {
			t.Errorf("%s: the verifier walked %d instructions, below its floor of %d: it proved part of the program unreachable (a pointer argument taken for non-NULL?); read the verifier log (ebpf.LogLevelInstruction)", name, verified, floor)
		}
	}
}
