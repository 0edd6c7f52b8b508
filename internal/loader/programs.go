//go:build linux

package loader

import (
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
)

// programsByName lists the programs of a bpf2go Programs struct (a
// pointer to it) by their generated names without "aigate_", so that
// no list of programs is written out by hand beside the C source.
func programsByName(progs any) map[string]*ebpf.Program {
	v := reflect.ValueOf(progs).Elem()
	out := make(map[string]*ebpf.Program, v.NumField())
	for i := range v.NumField() {
		name, ok := v.Type().Field(i).Tag.Lookup("ebpf")
		if !ok {
			continue
		}
		p, _ := v.Field(i).Interface().(*ebpf.Program)
		out[strings.TrimPrefix(name, "aigate_")] = p
	}
	return out
}

// mapsByName lists the *ebpf.Map fields of a generated maps struct by the
// maps' names in the C source (their ebpf tags), as programsByName does
// the programs.
func mapsByName(ms any) map[string]*ebpf.Map {
	v := reflect.ValueOf(ms).Elem()
	out := make(map[string]*ebpf.Map, v.NumField())
	for i := range v.NumField() {
		name, ok := v.Type().Field(i).Tag.Lookup("ebpf")
		if !ok {
			continue
		}
		m, _ := v.Field(i).Interface().(*ebpf.Map)
		out[name] = m
	}
	return out
}

// lsmProgramOrder is the attach order of lsmObjects.programs: by name, so
// that it is the same at each start. Listed when first needed, not at every
// start of the binary.
var lsmProgramOrder = sync.OnceValue(func() []string { return slices.Sorted(maps.Keys(new(lsmObjects).programs())) })
