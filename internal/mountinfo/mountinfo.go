package mountinfo

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Mount is one line of mountinfo:
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
type Mount struct {
	Major, Minor uint32   // the filesystem's device (st_dev of its files)
	Point        string   // where it is mounted, unescaped
	Options      []string // this mount's options (rw, noexec, nosuid, ...)
	FSType       string
	SuperOptions []string // the filesystem's options (rw or ro, ...)
}

// Has reports whether the mount has option opt.
func (m Mount) Has(opt string) bool { return contains(m.Options, opt) }

// SuperHas reports whether the filesystem has option opt.
func (m Mount) SuperHas(opt string) bool { return contains(m.SuperOptions, opt) }

func contains(opts []string, opt string) bool {
	for _, o := range opts {
		if o == opt {
			return true
		}
	}
	return false
}

// Read parses /proc/self/mountinfo (see Parse for errors).
func Read() ([]Mount, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	return Parse(string(data))
}

// Parse parses the text of a mountinfo file. A line it cannot read is an
// error naming the line, returned with every mount it could read: a
// mount skipped silently could be one the caller must not miss, and one
// bad line must not hide the others.
func Parse(data string) ([]Mount, error) {
	var out []Mount
	var errs []error
	for i, line := range strings.Split(data, "\n") {
		if line == "" {
			continue
		}
		m, err := parseLine(line)
		if err != nil {
			errs = append(errs, fmt.Errorf("mountinfo line %d: %w: %q", i+1, err, line))
			continue
		}
		out = append(out, m)
	}
	return out, errors.Join(errs...)
}

func parseLine(line string) (Mount, error) {
	pre, post, ok := strings.Cut(line, " - ")
	f, g := strings.Fields(pre), strings.Fields(post)
	if !ok || len(f) < 6 || len(g) < 2 {
		return Mount{}, fmt.Errorf("not 'id parent dev root point opts ... - fstype source superopts'")
	}
	majText, minText, ok := strings.Cut(f[2], ":")
	maj, err1 := strconv.ParseUint(majText, 10, 32)
	min, err2 := strconv.ParseUint(minText, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return Mount{}, fmt.Errorf("device %q is not major:minor", f[2])
	}
	m := Mount{
		Major:   uint32(maj),
		Minor:   uint32(min),
		Point:   Unescape(f[4]),
		Options: strings.Split(f[5], ","),
		FSType:  g[0],
	}
	// The last field: an empty source would leave two.
	m.SuperOptions = strings.Split(g[len(g)-1], ",")
	return m, nil
}

// Unescape undoes mountinfo's octal escapes (\040 for a space, \011,
// \012, \134).
func Unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
