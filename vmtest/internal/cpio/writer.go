package cpio

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
)

const (
	magic   = "070701"
	trailer = "TRAILER!!!"
	// headerLen is the magic plus 13 fields of 8 hex digits.
	headerLen = 6 + 13*8
)

// Mode bits as stored in the archive (they are the traditional Unix S_IF*
// values, not Go's fs.FileMode).
const (
	TypeMask    = 0o170000
	TypeReg     = 0o100000
	TypeDir     = 0o040000
	TypeSymlink = 0o120000
	TypeChar    = 0o020000
	TypeBlock   = 0o060000
)

// Header describes one archive entry.
type Header struct {
	Name  string // path inside the archive, without a leading slash
	Mode  uint32 // type bits (TypeReg, ...) | permission bits
	UID   uint32
	GID   uint32
	Mtime int64
	Size  int64 // length of the data that follows (file contents or link target)
	// Major and Minor are the device numbers of a TypeChar or TypeBlock node.
	Major, Minor uint32
}

// Writer writes a newc archive. Call Close to write the trailer; the
// underlying writer is not closed.
type Writer struct {
	w       io.Writer
	ino     uint32
	pending int64 // data bytes still expected for the current entry
	pad     int   // padding owed after the current entry's data
	closed  bool
}

// NewWriter returns a Writer that writes to w.
func NewWriter(w io.Writer) *Writer {
	// Inode numbers start high enough that they never look like "0" (which
	// some tools treat specially) and stay unique within one archive.
	return &Writer{w: w, ino: 720}
}

// WriteHeader starts a new entry; its data (Size bytes) is written with Write.
func (cw *Writer) WriteHeader(h *Header) error {
	if cw.closed {
		return errors.New("cpio: write after close")
	}
	if cw.pending != 0 {
		return fmt.Errorf("cpio: %d bytes of the previous entry missing", cw.pending)
	}
	if err := cw.writePad(); err != nil {
		return err
	}
	name := strings.TrimPrefix(h.Name, "/")
	if name == "" {
		return errors.New("cpio: empty name")
	}
	if h.Size < 0 || h.Size > 0xffffffff {
		return fmt.Errorf("cpio: %s: size %d does not fit the newc format", name, h.Size)
	}
	nlink := uint32(1)
	if h.Mode&TypeMask == TypeDir {
		nlink = 2
	}
	cw.ino++
	if err := cw.writeRaw(name, cw.ino, h.Mode, h.UID, h.GID, nlink, h.Mtime, h.Size, h.Major, h.Minor); err != nil {
		return err
	}
	cw.pending = h.Size
	cw.pad = pad4(h.Size)
	return nil
}

// writeRaw writes a header and the padded name.
func (cw *Writer) writeRaw(name string, ino, mode, uid, gid, nlink uint32, mtime, size int64, major, minor uint32) error {
	namesize := len(name) + 1
	hdr := fmt.Sprintf("%s%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		magic, ino, mode, uid, gid, nlink, uint32(mtime), uint32(size),
		0, 0, major, minor, namesize, 0)
	buf := make([]byte, 0, headerLen+namesize+3)
	buf = append(buf, hdr...)
	buf = append(buf, name...)
	buf = append(buf, 0)
	for len(buf)%4 != 0 {
		buf = append(buf, 0)
	}
	_, err := cw.w.Write(buf)
	return err
}

// Write writes data of the current entry.
func (cw *Writer) Write(p []byte) (int, error) {
	if int64(len(p)) > cw.pending {
		return 0, fmt.Errorf("cpio: write of %d bytes exceeds the entry size by %d", len(p), int64(len(p))-cw.pending)
	}
	n, err := cw.w.Write(p)
	cw.pending -= int64(n)
	return n, err
}

func (cw *Writer) writePad() error {
	if cw.pad == 0 {
		return nil
	}
	_, err := cw.w.Write(make([]byte, cw.pad))
	cw.pad = 0
	return err
}

// Close writes the trailer. It does not close the underlying writer.
func (cw *Writer) Close() error {
	if cw.closed {
		return nil
	}
	if cw.pending != 0 {
		return fmt.Errorf("cpio: %d bytes of the last entry missing", cw.pending)
	}
	if err := cw.writePad(); err != nil {
		return err
	}
	cw.closed = true
	return cw.writeRaw(trailer, 0, 0, 0, 0, 1, 0, 0, 0, 0)
}

// Dir adds a directory.
func (cw *Writer) Dir(name string, perm fs.FileMode, uid, gid uint32) error {
	return cw.WriteHeader(&Header{Name: name, Mode: TypeDir | unixPerm(perm), UID: uid, GID: gid})
}

// File adds a regular file with the given contents.
func (cw *Writer) File(name string, perm fs.FileMode, data []byte) error {
	if err := cw.WriteHeader(&Header{Name: name, Mode: TypeReg | unixPerm(perm), Size: int64(len(data))}); err != nil {
		return err
	}
	_, err := cw.Write(data)
	return err
}

// Symlink adds a symbolic link name -> target.
func (cw *Writer) Symlink(name, target string) error {
	if err := cw.WriteHeader(&Header{Name: name, Mode: TypeSymlink | 0o777, Size: int64(len(target))}); err != nil {
		return err
	}
	_, err := io.WriteString(cw, target)
	return err
}

// CharDev adds a character device node.
func (cw *Writer) CharDev(name string, perm fs.FileMode, major, minor uint32) error {
	return cw.WriteHeader(&Header{Name: name, Mode: TypeChar | unixPerm(perm), Major: major, Minor: minor})
}

// unixPerm converts Go's permission and special bits to the Unix layout.
func unixPerm(m fs.FileMode) uint32 {
	p := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		p |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		p |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		p |= 0o1000
	}
	return p
}

func pad4(n int64) int {
	return int((4 - n%4) % 4)
}
