package config

import (
	"fmt"
	"unicode/utf8"

	yaml "go.yaml.in/yaml/v3"
)

// Flow lists ("deny_read: [.env, '*.pem']   # secrets") are edited in
// their text, like block lists, so that the comments and blank lines
// around them stay where the user put them. The scan below knows only
// what a list of scalars can hold: plain scalars (which in flow context
// cannot contain ',', '[' or ']'), quoted scalars and comments.

// offsetOf converts a yaml.v3 line and column (1-based, in characters)
// into a byte offset in data, or -1.
func offsetOf(data []byte, line, col int) int {
	off := 0
	for l := 1; l < line; l++ {
		i := indexByteFrom(data, off, '\n')
		if i < 0 {
			return -1
		}
		off = i + 1
	}
	for c := 1; c < col && off < len(data); c++ {
		_, n := utf8.DecodeRune(data[off:])
		off += n
	}
	return off
}

func indexByteFrom(data []byte, from int, b byte) int {
	for i := from; i < len(data); i++ {
		if data[i] == b {
			return i
		}
	}
	return -1
}

// flowScan walks a flow list from its '[' at start and returns the offset
// of its ']' and the offsets where each item ends (before the ',' or ']'
// that follows it, with trailing blanks and comments excluded).
func flowScan(data []byte, start int) (end int, itemEnds []int, err error) {
	if start < 0 || start >= len(data) || data[start] != '[' {
		return 0, nil, fmt.Errorf("flow list not found")
	}
	last := -1 // end of the last significant character of the current item
	for i := start + 1; i < len(data); i++ {
		switch c := data[i]; c {
		case '\'':
			j := i + 1
			for ; j < len(data); j++ {
				if data[j] == '\'' {
					if j+1 < len(data) && data[j+1] == '\'' {
						j++
						continue
					}
					break
				}
			}
			i, last = j, j+1
		case '"':
			j := i + 1
			for ; j < len(data) && data[j] != '"'; j++ {
				if data[j] == '\\' {
					j++
				}
			}
			i, last = j, j+1
		case '#':
			if i > 0 && (data[i-1] == ' ' || data[i-1] == '\t' || data[i-1] == '\n') {
				if j := indexByteFrom(data, i, '\n'); j >= 0 {
					i = j
				} else {
					i = len(data)
				}
			} else {
				last = i + 1
			}
		case ',', ']':
			if last >= 0 {
				itemEnds = append(itemEnds, last)
			}
			last = -1
			if c == ']' {
				return i, itemEnds, nil
			}
		case ' ', '\t', '\r', '\n':
		default:
			last = i + 1
		}
	}
	return 0, nil, fmt.Errorf("unterminated flow list")
}

// flowAdd appends item (YAML text) to the flow list v.
func (d *Doc) flowAdd(v *yaml.Node, item string) error {
	start := offsetOf(d.data, v.Line, v.Column)
	end, ends, err := flowScan(d.data, start)
	if err != nil || len(ends) != len(v.Content) {
		return fmt.Errorf("%s:%d: cannot find the end of this list; add %s by hand", d.Path, v.Line, item)
	}
	at, ins := end, item
	if len(ends) > 0 {
		at, ins = ends[len(ends)-1], ", "+item
	}
	d.data = append(d.data[:at:at], append([]byte(ins), d.data[at:]...)...)
	return nil
}

// flowRemove deletes the items of the flow list v whose indexes are in del.
func (d *Doc) flowRemove(v *yaml.Node, del []int) error {
	start := offsetOf(d.data, v.Line, v.Column)
	end, ends, err := flowScan(d.data, start)
	if err != nil || len(ends) != len(v.Content) {
		return fmt.Errorf("%s:%d: cannot find the end of this list; edit it by hand", d.Path, v.Line)
	}
	starts := make([]int, len(v.Content))
	for i, e := range v.Content {
		if starts[i] = offsetOf(d.data, e.Line, e.Column); starts[i] < 0 || starts[i] > end {
			return fmt.Errorf("%s:%d: cannot find the items of this list; edit it by hand", d.Path, v.Line)
		}
	}
	if len(del) == len(v.Content) {
		d.data = append(d.data[:starts[0]:starts[0]], d.data[end:]...)
		return nil
	}
	// From the last one back, so that earlier offsets stay valid. An item
	// goes with the separator after it; the last one left with the one
	// before it.
	n := len(v.Content)
	for j := len(del) - 1; j >= 0; j-- {
		i := del[j]
		from, to := starts[i], ends[i]
		if i+1 < n {
			to = starts[i+1]
		} else {
			from = ends[i-1]
			n--
		}
		d.data = append(d.data[:from:from], d.data[to:]...)
	}
	return nil
}
