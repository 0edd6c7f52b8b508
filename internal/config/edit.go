package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// Doc is a config file being edited. Edits are made to the text, at the
// lines the yaml.v3 node tree points to, so that everything the edit does
// not touch (comments, blank lines, quoting, key order) stays byte for byte
// as the user wrote it. Re-encoding the node tree would keep comments but
// drop blank lines and reformat; it is used only for block lists whose
// items span several lines. Flow lists ("[a, b]") are edited in their
// text too (flow.go).
type Doc struct {
	Path string
	// Orig is the content when the Doc was opened; nil for a new file.
	Orig   []byte
	Exists bool
	data   []byte
}

// OpenDoc reads path for editing. When it does not exist the Doc starts
// from initial and Exists is false.
func OpenDoc(path string, initial []byte) (*Doc, error) {
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		return &Doc{Path: path, Orig: data, Exists: true, data: bytes.Clone(data)}, nil
	case errors.Is(err, fs.ErrNotExist):
		return &Doc{Path: path, data: bytes.Clone(initial)}, nil
	}
	return nil, fmt.Errorf("read config: %w", err)
}

// Data is the current content.
func (d *Doc) Data() []byte { return d.data }

// Changed reports whether the content differs from the file on disk.
func (d *Doc) Changed() bool { return !d.Exists || !bytes.Equal(d.Orig, d.data) }

// AddToList appends value to the list under key unless an entry e with
// same(e, value) is there already; it reports whether it added it. A
// missing key is created at the end of the file.
func (d *Doc) AddToList(key, value string, same func(a, b string) bool) (bool, error) {
	root, err := d.root()
	if err != nil {
		return false, err
	}
	item, err := scalarText(value)
	if err != nil {
		return false, err
	}
	k, v, next := lookup(root, key)
	if k == nil {
		d.appendText(fmt.Sprintf("%s:\n%s- %s\n", key, strings.Repeat(" ", listIndent(root)), item))
		return true, nil
	}
	if err := d.checkList(k, v); err != nil {
		return false, err
	}
	for _, e := range v.Content {
		if same(e.Value, value) {
			return false, nil
		}
	}
	lines := splitLines(string(d.data))
	switch {
	case isNull(v) || v.Kind == yaml.SequenceNode && len(v.Content) == 0 && v.Line == k.Line:
		// "key:", "key: ~" or "key: []": make it a block list.
		head := keyLine(lines[k.Line-1], v)
		ins := fmt.Sprintf("%s- %s\n", strings.Repeat(" ", listIndent(root)), item)
		d.setLines(lines, k.Line-1, k.Line, head+ins)
	case v.Style&yaml.FlowStyle == 0 && blockItems(v):
		end := lastContentLine(lines, v.Line, next)
		ins := fmt.Sprintf("%s- %s\n", lines[v.Line-1][:v.Column-1], item)
		d.setLines(lines, end, end, ins)
	case v.Style&yaml.FlowStyle != 0:
		return true, d.flowAdd(v, item)
	default:
		v.Content = append(v.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: value})
		return true, d.reencode(root, v)
	}
	return true, nil
}

// RemoveFromList removes every entry e of the list under key with
// same(e, value); it reports whether it removed any.
func (d *Doc) RemoveFromList(key, value string, same func(a, b string) bool) (bool, error) {
	root, err := d.root()
	if err != nil {
		return false, err
	}
	k, v, next := lookup(root, key)
	if k == nil || isNull(v) {
		return false, nil
	}
	if err := d.checkList(k, v); err != nil {
		return false, err
	}
	var del []int // indexes into v.Content
	for i, e := range v.Content {
		if same(e.Value, value) {
			del = append(del, i)
		}
	}
	if len(del) == 0 {
		return false, nil
	}
	if v.Style&yaml.FlowStyle != 0 {
		return true, d.flowRemove(v, del)
	}
	lines := splitLines(string(d.data))
	if !blockItems(v) || !singleLineItems(lines, v, next) {
		keep := v.Content[:0]
		for i, e := range v.Content {
			if !containsInt(del, i) {
				keep = append(keep, e)
			}
		}
		v.Content = keep
		return true, d.reencode(root, v)
	}
	// Delete from the bottom so that earlier line numbers stay valid.
	for j := len(del) - 1; j >= 0; j-- {
		l := v.Content[del[j]].Line
		lines = append(lines[:l-1], lines[l:]...)
	}
	if len(del) == len(v.Content) {
		// An empty block list would read as null; say what is meant.
		line := strings.TrimRight(lines[k.Line-1], "\r\n")
		head, comment := line, ""
		if c := k.LineComment; c != "" {
			if i := strings.LastIndex(line, c); i >= 0 {
				head, comment = line[:i], " "+c
			}
		}
		lines[k.Line-1] = strings.TrimRight(head, " \t") + " []" + comment + "\n"
	}
	d.data = []byte(strings.Join(lines, ""))
	return true, nil
}

// SetScalar sets key to value, keeping any comment on its line; it reports
// whether anything changed. A missing key is added at the end of the file.
func (d *Doc) SetScalar(key, value string) (bool, error) {
	root, err := d.root()
	if err != nil {
		return false, err
	}
	text, err := scalarText(value)
	if err != nil {
		return false, err
	}
	k, v, _ := lookup(root, key)
	if k == nil {
		d.appendText(fmt.Sprintf("%s: %s\n", key, text))
		return true, nil
	}
	if v.Kind != yaml.ScalarNode || v.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 || v.Line != k.Line {
		return false, fmt.Errorf("%s:%d: %s must be a single value on the key's line to be edited; fix it by hand", d.Path, k.Line, key)
	}
	if v.Value == value && !isNull(v) {
		return false, nil
	}
	lines := splitLines(string(d.data))
	line := lines[v.Line-1]
	col := min(v.Column-1, len(line))
	rest := strings.TrimRight(line[col:], "\r\n")
	tail := ""
	if c := v.LineComment; c != "" {
		if i := strings.LastIndex(rest, c); i >= 0 {
			tok := strings.TrimRight(rest[:i], " \t")
			tail = rest[len(tok):]
		}
	}
	if isNull(v) && col >= len(strings.TrimRight(line, "\r\n")) {
		text = " " + text // "key:" with nothing after the colon
	}
	lines[v.Line-1] = line[:col] + text + tail + "\n"
	d.data = []byte(strings.Join(lines, ""))
	return true, nil
}

// List returns the scalar values of the list under key.
func (d *Doc) List(key string) ([]string, error) {
	root, err := d.root()
	if err != nil {
		return nil, err
	}
	_, v, _ := lookup(root, key)
	if v == nil || v.Kind != yaml.SequenceNode {
		return nil, nil
	}
	var out []string
	for _, e := range v.Content {
		out = append(out, e.Value)
	}
	return out, nil
}

// root parses the current content and returns its top-level mapping, or
// nil when the document is empty (comments only).
func (d *Doc) root() (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(d.data, &doc); err != nil {
		return nil, fmt.Errorf("%s: cannot edit a file that is not valid YAML (%v); fix it by hand or check it with `aigate status`", d.Path, err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 || isNull(doc.Content[0]) {
		return nil, nil
	}
	if root := doc.Content[0]; root.Kind == yaml.MappingNode {
		return root, nil
	}
	return nil, fmt.Errorf("%s: the top level must be a mapping of keys (deny_read:, net:, ...)", d.Path)
}

func (d *Doc) checkList(k, v *yaml.Node) error {
	if isNull(v) || v.Kind == yaml.SequenceNode && blockOrFlowScalars(v) {
		return nil
	}
	return fmt.Errorf("%s:%d: %s must be a list of strings to be edited; fix it by hand", d.Path, k.Line, k.Value)
}

// reencode writes the whole node tree back, in block style, for the cases
// the line edits do not handle.
func (d *Doc) reencode(root, changed *yaml.Node) error {
	changed.Style &^= yaml.FlowStyle
	changed.Line = 0
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return fmt.Errorf("%s: encode: %w", d.Path, err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("%s: encode: %w", d.Path, err)
	}
	d.data = buf.Bytes()
	return nil
}

func (d *Doc) appendText(s string) {
	if len(d.data) > 0 && d.data[len(d.data)-1] != '\n' {
		d.data = append(d.data, '\n')
	}
	d.data = append(d.data, s...)
}

// setLines replaces lines[from:to] (0-based) with text.
func (d *Doc) setLines(lines []string, from, to int, text string) {
	var b strings.Builder
	for _, l := range lines[:from] {
		b.WriteString(l)
	}
	if from > 0 && !strings.HasSuffix(lines[from-1], "\n") {
		b.WriteByte('\n')
	}
	b.WriteString(text)
	for _, l := range lines[to:] {
		b.WriteString(l)
	}
	d.data = []byte(b.String())
}

// lookup finds key in the top-level mapping. next is the line of the key
// after it (0 when it is the last), which bounds the value's text.
func lookup(root *yaml.Node, key string) (k, v *yaml.Node, next int) {
	if root == nil {
		return nil, nil, 0
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != key {
			continue
		}
		if i+2 < len(root.Content) {
			next = root.Content[i+2].Line
		}
		return root.Content[i], root.Content[i+1], next
	}
	return nil, nil, 0
}

// lastContentLine returns the 1-based number of the last line of a block
// value that starts at line from and ends before line next (0: end of
// file): trailing blank lines and comments belong to what follows.
func lastContentLine(lines []string, from, next int) int {
	end := len(lines)
	if next > 0 {
		end = next - 1
	}
	for end > from {
		t := strings.TrimSpace(lines[end-1])
		if t != "" && !strings.HasPrefix(t, "#") {
			break
		}
		end--
	}
	return end
}

// singleLineItems reports whether every item of the block list v sits on
// its own single line ("- value"), so deleting a line deletes an item.
func singleLineItems(lines []string, v *yaml.Node, next int) bool {
	for i, e := range v.Content {
		if !strings.HasPrefix(strings.TrimSpace(lines[e.Line-1]), "- ") {
			return false
		}
		end := lastContentLine(lines, e.Line, next)
		if i+1 < len(v.Content) {
			end = lastContentLine(lines, e.Line, v.Content[i+1].Line)
		}
		if end != e.Line {
			return false
		}
	}
	return true
}

// keyLine returns the "key:" line with the value v (null or []) removed,
// keeping a trailing comment, and ending in a newline.
func keyLine(line string, v *yaml.Node) string {
	line = strings.TrimRight(line, "\r\n")
	col := min(v.Column-1, len(line))
	head, rest := strings.TrimRight(line[:col], " \t"), line[col:]
	if i := strings.Index(rest, "#"); i >= 0 {
		return head + " " + rest[i:] + "\n"
	}
	return head + "\n"
}

func listIndent(root *yaml.Node) int {
	if root != nil {
		for i := 1; i < len(root.Content); i += 2 {
			v := root.Content[i]
			if v.Kind == yaml.SequenceNode && v.Style&yaml.FlowStyle == 0 && len(v.Content) > 0 {
				return v.Column - 1
			}
		}
	}
	return 2
}

func blockItems(v *yaml.Node) bool {
	for _, e := range v.Content {
		if e.Kind != yaml.ScalarNode || e.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
			return false
		}
	}
	return len(v.Content) > 0
}

func blockOrFlowScalars(v *yaml.Node) bool {
	for _, e := range v.Content {
		if e.Kind != yaml.ScalarNode {
			return false
		}
	}
	return true
}

func isNull(v *yaml.Node) bool {
	return v.Kind == yaml.ScalarNode && v.Tag == "!!null"
}

// scalarText is value as a YAML scalar, quoted when YAML needs it
// ("*.pem" would otherwise be an alias).
func scalarText(value string) (string, error) {
	b, err := yaml.Marshal(value)
	if err != nil {
		return "", fmt.Errorf("encode %q: %w", value, err)
	}
	s := strings.TrimSuffix(string(b), "\n")
	if strings.Contains(s, "\n") {
		return "", fmt.Errorf("%q: values must fit on one line", value)
	}
	return s, nil
}

func containsInt(s []int, x int) bool {
	for _, y := range s {
		if x == y {
			return true
		}
	}
	return false
}
