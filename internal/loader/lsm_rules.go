//go:build linux

package loader

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/resolve"
)

// Sizes and flags of aigate.h (enums, generated in kernel_bpfel.go).
const (
	pathKeyLen = int(kernelAigateKeySizeAIGATE_PATH_KEY)
	nameKeyLen = int(kernelAigateKeySizeAIGATE_NAME_MAX)
	// Names are compared after bpf_probe_read_kernel_str into nameKeyLen
	// bytes, which keeps at most nameKeyLen-1 characters: a name of exactly
	// that length would also match every longer name it begins.
	maxNameRule = nameKeyLen - 2

	setPaths     = uint32(kernelAigateSetFlagAIGATE_SET_PATHS)
	setNames     = uint32(kernelAigateSetFlagAIGATE_SET_NAMES)
	setPrefix    = uint32(kernelAigateSetFlagAIGATE_SET_PREFIX)
	setSuffix    = uint32(kernelAigateSetFlagAIGATE_SET_SUFFIX)
	setInodes    = uint32(kernelAigateSetFlagAIGATE_SET_INODES)
	setDirInodes = uint32(kernelAigateSetFlagAIGATE_SET_DIR_INODES)
	setNameLens  = uint32(kernelAigateSetFlagAIGATE_SET_NAME_LENS)
	setExcept    = uint32(kernelAigateSetExceptAIGATE_SET_EXCEPT) // the key space of a set's exceptions

	setKeyBits = 32 // the set precedes the bytes in every LPM key
)

// nameLenBit is the set_flags bit of a Names entry of n bytes
// (aigate.h's aigate_name_len); 0 for n == 0, which has none.
func nameLenBit(n int) uint32 {
	if n <= 0 {
		return 0
	}
	n = min(n, int(kernelAigateNameLenAIGATE_NAME_LEN_LONG))
	return 1 << (uint32(kernelAigateNameLenAIGATE_NAME_LEN_SHIFT) + uint32(n) - 1)
}

// setAccessBits is how far rule_set() shifts the policy id: the access
// (read, write, exec, allow_unix, ancestors) takes the low bits.
const setAccessBits = uint32(kernelAigateRuleSetAIGATE_ACCESS_BITS)

// ruleSet is the kernel's rule_set(): one key space per policy and access.
func ruleSet(policyID uint32, a kernelAigateAccess) uint32 {
	return policyID<<setAccessBits | uint32(a)
}

// kernelAccess is the kernel's name (enum aigate_access) of a policy access;
// policy knows nothing of the kernel, so the two are bound here, by name.
func kernelAccess(a policy.Access) (kernelAigateAccess, error) {
	switch a {
	case policy.AccessRead:
		return kernelAigateAccessAIGATE_ACCESS_READ, nil
	case policy.AccessWrite:
		return kernelAigateAccessAIGATE_ACCESS_WRITE, nil
	case policy.AccessExec:
		return kernelAigateAccessAIGATE_ACCESS_EXEC, nil
	}
	return 0, fmt.Errorf("access %s has no kernel rule set", a)
}

// writeRules writes the file and exec rules of s's policy. Every entry
// written is recorded in s.written, also on error, so deleteRules can undo
// a partial write.
func (l *LSM) writeRules(s *lsmSandboxState) error {
	p := s.sb.Policy
	for _, a := range []struct {
		access policy.Access
		set    policy.FileSet
	}{
		{policy.AccessRead, p.Read},
		{policy.AccessWrite, p.Write},
		{policy.AccessExec, p.Exec},
	} {
		ka, err := kernelAccess(a.access)
		if err != nil {
			return err
		}
		if err := l.writeSet(s, ruleSet(s.sb.ID, ka), ka, a.set); err != nil {
			return fmt.Errorf("%s rules: %w", a.access, err)
		}
	}
	if err := l.writeUnix(s, ruleSet(s.sb.ID, accessUnix), p.Net.Unix); err != nil {
		return fmt.Errorf("allow_unix rules: %w", err)
	}
	if err := l.writeAncestors(s, ruleSet(s.sb.ID, accessAncestors), p.Ancestors()); err != nil {
		return fmt.Errorf("ancestors of protected paths: %w", err)
	}
	return nil
}

// accessAncestors is the rule_set() access of the directories above
// protected paths (AIGATE_ACCESS_ANCESTORS), which check_write refuses to
// rename, remove or replace by a symlink.
const accessAncestors = kernelAigateAccessAIGATE_ACCESS_ANCESTORS

// writeAncestors writes each directory as an exact Paths key ("P\0" only:
// what lies beneath an ancestor is not protected by being there).
func (l *LSM) writeAncestors(s *lsmSandboxState, set uint32, dirs []policy.Entry) error {
	if len(dirs) == 0 {
		return nil
	}
	for _, e := range dirs {
		keys, err := pathKeys(set, e.Value)
		if err != nil {
			return err
		}
		err = l.objs.PathRules.Update(keys[0], uint32(e.Rule), ebpf.UpdateNoExist)
		if errors.Is(err, ebpf.ErrKeyExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("write ancestor %s: %w", e.Value, err)
		}
		s.written = append(s.written, mapEntry{l.objs.PathRules, keys[0]})
	}
	if err := l.objs.SetFlags.Update(set, uint32(setPaths), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("write rule kinds: %w", err)
	}
	s.written = append(s.written, mapEntry{l.objs.SetFlags, set})
	return nil
}

// accessUnix is the rule_set() access of allow_unix.
const accessUnix = kernelAigateAccessAIGATE_ACCESS_UNIX

// writeUnix writes allow_unix with the semantics of docs/network.md, which
// the cgroup connect_unix program shares: an absolute path allows that
// socket and every socket beneath it; "@name" allows the abstract socket
// name. Other names and patterns allow nothing.
func (l *LSM) writeUnix(s *lsmSandboxState, set uint32, fs policy.FileSet) error {
	var unixSet policy.FileSet
	unixSet.Paths = fs.Paths
	for _, e := range fs.Names {
		if len(e.Value) > 1 && e.Value[0] == '@' {
			unixSet.Names = append(unixSet.Names, e)
		}
	}
	return l.writeSet(s, set, accessUnix, unixSet)
}

func (l *LSM) writeSet(s *lsmSandboxState, set uint32, access kernelAigateAccess, fs policy.FileSet) error {
	var kinds uint32
	put := func(m *ebpf.Map, key any, rule policy.RuleID) error {
		// The first rule for a key wins; later duplicates add nothing.
		err := m.Update(key, uint32(rule), ebpf.UpdateNoExist)
		if errors.Is(err, ebpf.ErrKeyExist) {
			return nil
		}
		if err != nil {
			return err
		}
		s.written = append(s.written, mapEntry{m, key})
		return nil
	}

	for _, e := range fs.Paths {
		keys, err := pathKeys(set, e.Value)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if err := put(l.objs.PathRules, k, e.Rule); err != nil {
				return fmt.Errorf("write path %s: %w", e.Value, err)
			}
		}
		kinds |= setPaths
	}
	// A carve (policy.FileSet.Carve) is a Paths key whose rule is 0: the
	// longest match ends there with no rule, as policy's matchPaths does.
	// Written after the rules, so a rule's key is never replaced.
	carved := map[policy.RuleID]bool{}
	for _, e := range fs.Carve {
		keys, err := pathKeys(set, e.Value)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if err := put(l.objs.PathRules, k, 0); err != nil {
				return fmt.Errorf("write carve %s: %w", e.Value, err)
			}
		}
		carved[e.Rule] = true
	}
	// The walk skips components whose length no Names entry has; an
	// entry without a length bit turns that off for the set.
	nameLens, allLens := setNameLens, true
	for _, e := range fs.Names {
		b := nameLenBit(len(e.Value))
		nameLens |= b
		allLens = allLens && b != 0
		k, err := nameKey(set, e.Value, false)
		if err != nil {
			return err
		}
		k.Prefixlen = 0 // a hash key
		if err := put(l.objs.NameRules, k, e.Rule); err != nil {
			return fmt.Errorf("write name %s: %w", e.Value, err)
		}
		kinds |= setNames
	}
	if kinds&setNames != 0 && allLens {
		kinds |= nameLens
	}
	for _, e := range fs.NamePrefix {
		k, err := nameKey(set, e.Value, false)
		if err != nil {
			return err
		}
		if err := put(l.objs.PrefixRules, k, e.Rule); err != nil {
			return fmt.Errorf("write name prefix %s: %w", e.Value, err)
		}
		kinds |= setPrefix
	}
	for _, e := range fs.NameSuffix {
		k, err := nameKey(set, e.Value, true)
		if err != nil {
			return err
		}
		if err := put(l.objs.SuffixRules, k, e.Rule); err != nil {
			return fmt.Errorf("write name suffix %s: %w", e.Value, err)
		}
		kinds |= setSuffix
	}

	if fs.Except != nil && set&setExcept == 0 {
		if err := l.writeSet(s, set|setExcept, access, *fs.Except); err != nil {
			return fmt.Errorf("exceptions: %w", err)
		}
	}

	// Protected files that exist now are denied by inode as well, whatever
	// path reaches them. A file that cannot be resolved is still matched by
	// path, so resolution errors do not fail the sandbox. Exceptions are
	// matched by path and name only.
	var files []resolve.File
	if access != accessUnix && set&setExcept == 0 { // allow_unix matches by name only, as connect_unix does
		files, _ = resolve.Paths(fs)
	}
	if access == kernelAigateAccessAIGATE_ACCESS_EXEC {
		files = append(files, resolve.Executables(fs, l.execDirs)...)
	}
	if access == kernelAigateAccessAIGATE_ACCESS_EXEC && set&setExcept == 0 {
		if err := l.writeCopies(set, files, put); err != nil {
			return err
		}
	}
	for _, f := range files {
		if carved[f.Rule] {
			// A directory inode rule is checked at every level of
			// the walk, above the carve too: a carved rule is
			// matched by path alone (docs/threat-model.md).
			continue
		}
		k := lsmInodeKey{Ino: f.Ino, Dev: uint32(f.Dev), Set: set}
		if err := put(l.objs.InodeRules, k, f.Rule); err != nil {
			return fmt.Errorf("write inode of %s: %w", f.Path, err)
		}
		kinds |= setInodes
		if f.IsDir {
			kinds |= setDirInodes
		}
	}

	if kinds == 0 {
		return nil
	}
	// Last: the programs skip a set without flags.
	if err := l.objs.SetFlags.Update(set, kinds, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("write rule kinds: %w", err)
	}
	s.written = append(s.written, mapEntry{l.objs.SetFlags, set})
	return nil
}

// deleteRules deletes what writeRules wrote, flags first.
func (l *LSM) deleteRules(s *lsmSandboxState) error {
	var errs []error
	for i := len(s.written) - 1; i >= 0; i-- {
		e := s.written[i]
		if err := e.m.Delete(e.key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("delete rule from %s: %w", e.m, err))
		}
	}
	s.written = nil
	if err := l.newRulesGen(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// newRulesGen gives the rules a new generation (AIGATE_GEN_RULES), after
// they were written or deleted: no file_open verdict cached under the old
// rules is used again (bpf/include/verdict.h; policy ids are reused). A
// random value rather than an increment, so that two loaders sharing the
// pinned maps cannot both write the same next value: whichever writes last
// leaves a value no verdict decided before its own rule writes holds.
func (l *LSM) newRulesGen() error {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Errorf("new rules generation: %w", err)
	}
	key := uint32(kernelAigateVerdictGenAIGATE_GEN_RULES)
	if err := l.objs.VerdictGen.Update(key, binary.LittleEndian.Uint64(b[:]), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("new rules generation: %w", err)
	}
	return nil
}

// pathKeys returns the Paths trie keys of an absolute clean path p: p with
// its NUL (the path itself) and p + "/" (everything beneath it).
func pathKeys(set uint32, p string) ([]lsmPathKey, error) {
	if len(p) == 0 || p[0] != '/' {
		return nil, fmt.Errorf("path rule %q is not absolute", p)
	}
	if len(p)+1 > pathKeyLen {
		return nil, fmt.Errorf("path rule %q is %d bytes long; the BPF LSM backend matches paths of up to %d bytes", p, len(p), pathKeyLen-1)
	}
	key := func(b string) lsmPathKey {
		k := lsmPathKey{Prefixlen: setKeyBits + uint32(len(b))*8, Set: set}
		for i := 0; i < len(b); i++ {
			k.Path[i] = int8(b[i])
		}
		return k
	}
	if p == "/" {
		return []lsmPathKey{key("/")}, nil
	}
	return []lsmPathKey{key(p + "\x00"), key(p + "/")}, nil
}

// nameKey returns the trie key of a name, reversed for suffixes.
func nameKey(set uint32, name string, reverse bool) (lsmNameKey, error) {
	if len(name) > maxNameRule {
		return lsmNameKey{}, fmt.Errorf("name rule %q is %d bytes long; the BPF LSM backend matches names of up to %d bytes", name, len(name), maxNameRule)
	}
	k := lsmNameKey{Prefixlen: setKeyBits + uint32(len(name))*8, Set: set}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if reverse {
			c = name[len(name)-1-i]
		}
		k.Name[i] = int8(c)
	}
	return k, nil
}
