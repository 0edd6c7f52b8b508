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
	return byTag[*ebpf.Program](progs, "aigate_")
}

// mapsByName lists the maps of a bpf2go Maps struct (a pointer to it) by
// their names in the C source.
func mapsByName(ms any) map[string]*ebpf.Map {
	return byTag[*ebpf.Map](ms, "")
}

// byTag lists the T fields of the struct s points to by their ebpf tags,
// each without prefix.
func byTag[T any](s any, prefix string) map[string]T {
	v := reflect.ValueOf(s).Elem()
	out := make(map[string]T, v.NumField())
	for i := range v.NumField() {
		name, ok := v.Type().Field(i).Tag.Lookup("ebpf")
		if !ok {
			continue
		}
		f, _ := v.Field(i).Interface().(T)
		out[strings.TrimPrefix(name, prefix)] = f
	}
	return out
}

// lsmProgramOrder is the attach order of lsmObjects.programs: by name, so
// that it is the same at each start. Listed when first needed, not at every
// start of the binary.
var lsmProgramOrder = sync.OnceValue(func() []string { return slices.Sorted(maps.Keys(new(lsmObjects).programs())) })
