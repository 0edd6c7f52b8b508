package claudejson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// TopKeys are the top-level keys that name commands: the user's MCP
// servers (`claude mcp add -s user`).
var TopKeys = []string{"mcpServers"}

// ProjectKeys are the keys of each "projects" entry that make claude start
// a program or run a command there without asking: its MCP servers
// (`claude mcp add`, local scope), the approvals of the project's .mcp.json
// servers (a server taken off disabledMcpjsonServers is enabled), the
// tools allowed without asking, and the folder's trust, which lets its
// .claude/settings.json hooks run.
var ProjectKeys = []string{"mcpServers", "enabledMcpjsonServers", "disabledMcpjsonServers",
	"enableAllProjectMcpServers", "allowedTools", "hasTrustDialogAccepted"}

const trustKey = "hasTrustDialogAccepted"

// Snapshot is what a file held in the guarded keys, recorded before the
// run: each key's value by its path ("mcpServers", "projects\x00DIR\x00key");
// absent keys are not in it.
type Snapshot struct {
	values map[string]json.RawMessage
}

// Record parses data (the whole file) and keeps the guarded keys. It fails
// for a file that is not a JSON object.
func Record(data []byte) (*Snapshot, error) {
	top, err := parseObject(data)
	if err != nil {
		return nil, err
	}
	s := &Snapshot{values: map[string]json.RawMessage{}}
	for _, k := range TopKeys {
		if v, ok := top.get(k); ok {
			s.values[k] = v
		}
	}
	projects, err := top.child("projects")
	if err != nil {
		return nil, err
	}
	if projects == nil {
		return s, nil
	}
	for _, p := range projects.members {
		po, err := parseObject(p.value)
		if err != nil {
			continue // not an object: nothing claude would read there
		}
		for _, k := range ProjectKeys {
			if v, ok := po.get(k); ok {
				s.values[projectPath(p.key, k)] = v
			}
		}
	}
	return s, nil
}

func projectPath(dir, key string) string { return "projects\x00" + dir + "\x00" + key }

// Restore returns current with every guarded key set back to what the
// snapshot holds (removed where it held none), keeping every other key,
// the order of keys and the file's indentation; and a description of each
// key it put back ("projects[/home/u/p].mcpServers"). A change that leaves a
// key empty or absent on both sides ({}, [], false, null) is no change.
// keep lists project directories whose trust (hasTrustDialogAccepted) may
// change: the one the run was in, where the user answered claude's
// question. An error means current is not a JSON object: the caller must
// not trust it.
func (s *Snapshot) Restore(current []byte, keep []string) ([]byte, []string, error) {
	top, err := parseObject(current)
	if err != nil {
		return nil, nil, err
	}
	var changed []string
	for _, k := range TopKeys {
		if s.put(top, k, k) {
			changed = append(changed, k)
		}
	}
	if projects, err := top.child("projects"); err == nil && projects != nil {
		for i, p := range projects.members {
			po, err := parseObject(p.value)
			if err != nil {
				continue
			}
			dirty := false
			for _, k := range ProjectKeys {
				if k == trustKey && slices.Contains(keep, p.key) {
					continue
				}
				if s.put(po, projectPath(p.key, k), k) {
					changed = append(changed, fmt.Sprintf("projects[%s].%s", p.key, k))
					dirty = true
				}
			}
			if dirty {
				projects.members[i].value = po.encode()
			}
		}
		if len(changed) > 0 {
			top.set("projects", projects.encode())
		}
	} else if err != nil {
		return nil, nil, err
	}
	if len(changed) == 0 {
		return current, nil, nil
	}
	return format(top.encode(), current), changed, nil
}

// put sets o[key] to the snapshot's value at path, or removes it, when
// they differ; it reports whether it did.
func (s *Snapshot) put(o *object, path, key string) bool {
	was, had := s.values[path]
	now, has := o.get(key)
	if equal(was, had, now, has) {
		return false
	}
	if had {
		o.set(key, was)
	} else {
		o.remove(key)
	}
	return true
}

func equal(a json.RawMessage, hasA bool, b json.RawMessage, hasB bool) bool {
	va, vb := decode(a, hasA), decode(b, hasB)
	return reflect.DeepEqual(va, vb)
}

// decode maps absent and every empty value to nil, so that claude's
// defaults ({}, [], false) written into a new project entry are no change.
func decode(raw json.RawMessage, has bool) any {
	if !has {
		return nil
	}
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return string(raw)
	}
	switch x := v.(type) {
	case map[string]any:
		if len(x) == 0 {
			return nil
		}
	case []any:
		if len(x) == 0 {
			return nil
		}
	case bool:
		if !x {
			return nil
		}
	}
	return v
}

// object is a JSON object with its members in the file's order.
type object struct {
	members []member
}

type member struct {
	key   string
	value json.RawMessage
}

var errNotObject = errors.New("not a JSON object")

func parseObject(data []byte) (*object, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errNotObject
	}
	o := &object{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("parse: %w", err)
		}
		key, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("parse %q: %w", key, err)
		}
		o.members = append(o.members, member{key, v})
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if _, err := dec.Token(); err == nil {
		return nil, fmt.Errorf("parse: data after the object")
	}
	return o, nil
}

func (o *object) get(key string) (json.RawMessage, bool) {
	// The last of duplicate keys wins, as in JavaScript's JSON.parse.
	for i := len(o.members) - 1; i >= 0; i-- {
		if o.members[i].key == key {
			return o.members[i].value, true
		}
	}
	return nil, false
}

func (o *object) set(key string, v json.RawMessage) {
	found := false
	for i := range o.members {
		if o.members[i].key == key {
			o.members[i].value = v
			found = true
		}
	}
	if !found {
		o.members = append(o.members, member{key, v})
	}
}

func (o *object) remove(key string) {
	o.members = slices.DeleteFunc(o.members, func(m member) bool { return m.key == key })
}

// child is the object at key, nil when absent; an error when it is not an
// object.
func (o *object) child(key string) (*object, error) {
	v, ok := o.get(key)
	if !ok || string(bytes.TrimSpace(v)) == "null" {
		return nil, nil
	}
	c, err := parseObject(v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return c, nil
}

func (o *object) encode() json.RawMessage {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range o.members {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(m.key)
		b.Write(k)
		b.WriteByte(':')
		b.Write(m.value)
	}
	b.WriteByte('}')
	return b.Bytes()
}

// format indents compact as the file like was indented (Claude Code writes JSON.stringify's
// two spaces), with its final newline.
func format(compact, like []byte) []byte {
	indent := ""
	if i := bytes.IndexByte(like, '\n'); i >= 0 {
		rest := like[i+1:]
		n := len(rest) - len(bytes.TrimLeft(rest, " \t"))
		indent = string(rest[:n])
	}
	var out bytes.Buffer
	if indent == "" {
		_ = json.Compact(&out, compact)
	} else {
		_ = json.Indent(&out, compact, "", indent)
	}
	if strings.HasSuffix(string(like), "\n") {
		out.WriteByte('\n')
	}
	return out.Bytes()
}
