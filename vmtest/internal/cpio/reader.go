package cpio

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Reader reads a newc archive. Only what the tests of the writer need is
// implemented: headers and data, no hard-link reassembly.
type Reader struct {
	r      *bufio.Reader
	remain int64
	pad    int
	offset int64
	done   bool
}

// NewReader returns a Reader that reads from r.
func NewReader(r io.Reader) *Reader {
	return &Reader{r: bufio.NewReader(r)}
}

// Next advances to the next entry. It returns io.EOF after the trailer.
func (cr *Reader) Next() (*Header, error) {
	if cr.done {
		return nil, io.EOF
	}
	if _, err := cr.r.Discard(int(cr.remain) + cr.pad); err != nil {
		return nil, fmt.Errorf("cpio: skip data: %w", err)
	}
	cr.offset += cr.remain + int64(cr.pad)
	cr.remain, cr.pad = 0, 0

	raw := make([]byte, headerLen)
	if _, err := io.ReadFull(cr.r, raw); err != nil {
		return nil, fmt.Errorf("cpio: read header at %d: %w", cr.offset, err)
	}
	if string(raw[:6]) != magic {
		return nil, fmt.Errorf("cpio: bad magic %q at offset %d", raw[:6], cr.offset)
	}
	var f [13]uint32
	for i := range f {
		v, err := strconv.ParseUint(string(raw[6+8*i:6+8*i+8]), 16, 32)
		if err != nil {
			return nil, fmt.Errorf("cpio: header field %d at offset %d: %w", i, cr.offset, err)
		}
		f[i] = uint32(v)
	}
	namesize := int(f[11])
	if namesize == 0 {
		return nil, errors.New("cpio: zero name size")
	}
	name := make([]byte, namesize+pad4(int64(headerLen+namesize)))
	if _, err := io.ReadFull(cr.r, name); err != nil {
		return nil, fmt.Errorf("cpio: read name: %w", err)
	}
	cr.offset += int64(headerLen + len(name))
	h := &Header{
		Name:  string(name[:namesize-1]),
		Mode:  f[1],
		UID:   f[2],
		GID:   f[3],
		Mtime: int64(f[5]),
		Size:  int64(f[6]),
		Major: f[9],
		Minor: f[10],
	}
	if h.Name == trailer {
		cr.done = true
		return nil, io.EOF
	}
	cr.remain = h.Size
	cr.pad = pad4(h.Size)
	return h, nil
}

// Read reads the current entry's data.
func (cr *Reader) Read(p []byte) (int, error) {
	if cr.remain == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > cr.remain {
		p = p[:cr.remain]
	}
	n, err := cr.r.Read(p)
	cr.remain -= int64(n)
	cr.offset += int64(n)
	if err == io.EOF && cr.remain > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}
