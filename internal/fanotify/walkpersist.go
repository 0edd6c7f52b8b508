//go:build linux

package fanotify

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/policy"
)

// An agent keeps its walk cache (walkcache.go) in memory across runs; an
// embedded `sudo aigate run` is a new process each time and walked a large
// home on every run. walkStore keeps the cache in a file per user between
// such processes.
//
// Where: a directory that only root can write (DefaultWalkCacheDir, on
// /run: tmpfs, emptied at boot). Device and inode numbers are only stable
// within a boot (anonymous devices of tmpfs and FUSE, hot-plugged disks),
// and only within a boot is every change to a directory stamped by this
// kernel's clock: a filesystem changed while mounted elsewhere can carry
// any ctime. The file also names the boot (boot_id), in case the
// directory outlives it, and the aigate binary (device, inode, size,
// mtime), because the files a listing records as matched were matched by
// that build's matchers.
//
// Why it cannot remove protection: a listing from the file is used only
// for a directory whose lstat now is exactly the one it was listed with
// (walkcache.go), as for listings kept in memory; everything else is read
// from the disk again. What the file holds is therefore only trusted as
// far as its writer is: the file and its directory must be root's and
// writable by no one else, both are opened without following symbolic
// links, the file must have one link, and its contents must carry the
// header, the checksum and well-formed names. Anything else is ignored
// and replaced at the end of the run (written to a new file, then renamed
// over it).

// DefaultWalkCacheDir is where an embedded run keeps its walk caches.
const DefaultWalkCacheDir = "/run/aigate/walk"

const (
	walkFileMagic = "aigate walk cache v2\n"
	// maxWalkFile bounds what is read.
	maxWalkFile = 64 << 20
	// maxPersistedDirs bounds the listings written per user, and so the
	// memory a file takes on tmpfs (about 120 bytes a directory): more
	// than a run walks (Options.MaxWalkDirs, 20,000 by default).
	maxPersistedDirs = 50000
)

// walkStore loads and saves one backend's walk cache, a file per user.
type walkStore struct {
	dir string
	id  string // this boot and binary; "" when unknown: nothing is read or written

	mu     sync.Mutex
	owners map[uint32]*walkOwner
}

// walkOwner is what the store knows of one user's file.
type walkOwner struct {
	roots   map[string]bool // the trees walked for them: what their file keeps
	saved   uint64          // the cache's generation when their file was last read or written
	rewrite bool            // their file was refused: replace it even when nothing changed
}

func newWalkStore(dir string) *walkStore {
	return &walkStore{dir: dir, id: walkIdentity(), owners: map[uint32]*walkOwner{}}
}

// walkIdentity names this boot and this aigate binary.
func walkIdentity() string {
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	var st unix.Stat_t
	if err := unix.Stat(exe, &st); err != nil {
		return ""
	}
	return fmt.Sprintf("%s %d:%d:%d:%d.%d", strings.TrimSpace(string(boot)), st.Dev, st.Ino, st.Size, st.Mtim.Sec, st.Mtim.Nsec)
}

// prepare loads, once per user, the file of whoever owns home (or, without
// a home, project) into cache, and notes the trees their file keeps.
func (s *walkStore) prepare(cache *walkCache, home, project string) error {
	if s == nil || s.id == "" {
		return nil
	}
	var st unix.Stat_t
	root := home
	if root == "" {
		root = project
	}
	if root == "" || unix.Stat(root, &st) != nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.owners[st.Uid]
	first := o == nil
	if first {
		o = &walkOwner{roots: map[string]bool{}}
		s.owners[st.Uid] = o
	}
	for _, r := range []string{home, project} {
		if r != "" {
			o.roots[filepath.Clean(r)] = true
		}
	}
	if !first {
		return nil
	}
	dirs, err := s.read(st.Uid)
	if errors.Is(err, os.ErrNotExist) {
		err = nil // the first run of this boot
	} else if err != nil {
		o.rewrite = true
	}
	cache.mu.Lock()
	for path, l := range dirs {
		if _, ok := cache.dirs[path]; !ok && len(cache.dirs) < maxCachedDirs {
			cache.dirs[path] = l
		}
	}
	o.saved = cache.gen
	cache.mu.Unlock()
	return err
}

// save writes each user's file whose trees the cache learnt something of
// since it was read or written, or that was refused.
func (s *walkStore) save(cache *walkCache) error {
	if s == nil || s.id == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for uid, o := range s.owners {
		cache.mu.Lock()
		gen := cache.gen
		if gen == o.saved && !o.rewrite {
			cache.mu.Unlock()
			continue
		}
		var keep []string
		for path := range cache.dirs {
			if len(keep) < maxPersistedDirs && underAny(path, o.roots) {
				keep = append(keep, path)
			}
		}
		data := encodeWalks(s.id, uid, keep, cache.dirs)
		cache.mu.Unlock()
		if err := s.write(uid, data); err != nil {
			errs = append(errs, err)
			continue
		}
		o.saved, o.rewrite = gen, false
	}
	return errors.Join(errs...)
}

func underAny(path string, roots map[string]bool) bool {
	for p := path; ; p = filepath.Dir(p) {
		if roots[p] {
			return true
		}
		if p == "/" || p == "." {
			return false
		}
	}
}

// openDir opens the store's directory, refusing one that is a symbolic
// link, is not this (root) process's, or that others can write.
func (s *walkStore) openDir() (int, error) {
	fd, err := unix.Open(s.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open walk cache directory %s: %w", s.dir, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("stat walk cache directory %s: %w", s.dir, err)
	}
	if int(st.Uid) != os.Geteuid() || st.Mode&0o022 != 0 {
		unix.Close(fd)
		return -1, fmt.Errorf("walk cache directory %s: owned by uid %d with mode %o, want uid %d and no write for group or others", s.dir, st.Uid, st.Mode&0o7777, os.Geteuid())
	}
	return fd, nil
}

// read returns the listings of uid's file, or an error saying why there
// are none.
func (s *walkStore) read(uid uint32) (map[string]*listing, error) {
	dfd, err := s.openDir()
	if err != nil {
		return nil, err
	}
	defer unix.Close(dfd)
	name := strconv.FormatUint(uint64(uid), 10)
	fd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open walk cache %s/%s: %w", s.dir, name, err)
	}
	f := os.NewFile(uintptr(fd), filepath.Join(s.dir, name))
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("stat walk cache %s: %w", f.Name(), err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || int(st.Uid) != os.Geteuid() || st.Mode&0o077 != 0 || st.Nlink != 1 || st.Size > maxWalkFile {
		return nil, fmt.Errorf("walk cache %s: not a regular file of uid %d, mode 0600, one link, at most %d bytes", f.Name(), os.Geteuid(), maxWalkFile)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxWalkFile+1))
	if err != nil {
		return nil, fmt.Errorf("read walk cache %s: %w", f.Name(), err)
	}
	dirs, err := decodeWalks(data, s.id, uid)
	if err != nil {
		return nil, fmt.Errorf("walk cache %s: %w", f.Name(), err)
	}
	return dirs, nil
}

// write replaces uid's file with data: a new file, then a rename.
func (s *walkStore) write(uid uint32, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(s.dir), 0o755); err != nil {
		return fmt.Errorf("create walk cache directory: %w", err)
	}
	if err := os.Mkdir(s.dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create walk cache directory: %w", err)
	}
	dfd, err := s.openDir()
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	name := strconv.FormatUint(uint64(uid), 10)
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := "." + name + ".tmp-" + hex.EncodeToString(rnd[:])
	fd, err := unix.Openat(dfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("write walk cache in %s: %w", s.dir, err)
	}
	f := os.NewFile(uintptr(fd), tmp)
	_, werr := f.Write(data)
	cerr := unix.Fchmod(fd, 0o600) // whatever the umask
	if err := errors.Join(werr, cerr, f.Close()); err != nil {
		_ = unix.Unlinkat(dfd, tmp, 0)
		return fmt.Errorf("write walk cache in %s: %w", s.dir, err)
	}
	if err := unix.Renameat(dfd, tmp, dfd, name); err != nil {
		_ = unix.Unlinkat(dfd, tmp, 0)
		return fmt.Errorf("replace walk cache %s/%s: %w", s.dir, name, err)
	}
	return nil
}

// The file: walkFileMagic, a body, and the SHA-256 of both. The body is
// the identity, the uid, the number of listings and each listing: its
// path, stamp, subdirectories, files and links, and, when known, the
// fingerprint of the policy and the files it matched, each as its index
// among the files and its read, write and exec rule ids (the ids are
// part of what the fingerprint covers). Strings and lists
// are length-prefixed (uvarint).

func encodeWalks(id string, uid uint32, paths []string, dirs map[string]*listing) []byte {
	var b bytes.Buffer
	b.WriteString(walkFileMagic)
	putString(&b, id)
	putUvarint(&b, uint64(uid))
	putUvarint(&b, uint64(len(paths)))
	for _, p := range paths {
		l := dirs[p]
		putString(&b, p)
		st := l.stamp
		for _, v := range []uint64{st.Dev, st.Ino, st.Nlink, uint64(st.Size), uint64(st.Mtime.Sec), uint64(st.Mtime.Nsec), uint64(st.Ctime.Sec), uint64(st.Ctime.Nsec)} {
			putUvarint(&b, v)
		}
		for _, names := range [][]string{l.subdirs, l.files, l.links} {
			putStrings(&b, names)
		}
		l.mu.Lock()
		if l.matched != nil && l.fp != ([32]byte{}) && l.rules != nil && l.rulesFP == l.fp {
			// Each matched file as its index in files and its rules:
			// the next run neither matches nor looks up a name again
			// (a user's build cache: 100,000 files, every one matched).
			b.WriteByte(1)
			b.Write(l.fp[:])
			putUvarint(&b, uint64(len(l.matched)))
			for i, name := range l.files {
				if !l.matched[name] {
					continue
				}
				r := l.rules[name]
				putUvarint(&b, uint64(i))
				putUvarint(&b, uint64(r.read))
				putUvarint(&b, uint64(r.write))
				putUvarint(&b, uint64(r.exec))
			}
		} else {
			b.WriteByte(0)
		}
		l.mu.Unlock()
	}
	sum := sha256.Sum256(b.Bytes())
	b.Write(sum[:])
	return b.Bytes()
}

func putUvarint(b *bytes.Buffer, v uint64) { b.Write(binary.AppendUvarint(nil, v)) }

func putString(b *bytes.Buffer, s string) {
	putUvarint(b, uint64(len(s)))
	b.WriteString(s)
}

func putStrings(b *bytes.Buffer, ss []string) {
	putUvarint(b, uint64(len(ss)))
	for _, s := range ss {
		putString(b, s)
	}
}

var errCorrupt = errors.New("corrupt")

// walkDecoder reads a body, failing on the first malformed field. The
// body is one string, so that the names taken from it are substrings,
// not a copy each (a large home lists hundreds of thousands).
type walkDecoder struct {
	data string
	err  error
}

func (d *walkDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	// binary.Uvarint on a copy of the first bytes: no allocation.
	var buf [binary.MaxVarintLen64]byte
	v, n := binary.Uvarint(buf[:copy(buf[:], d.data)])
	if n <= 0 {
		d.err = errCorrupt
		return 0
	}
	d.data = d.data[n:]
	return v
}

func (d *walkDecoder) bytes(n uint64) string {
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.data)) {
		d.err = errCorrupt
		return ""
	}
	v := d.data[:n]
	d.data = d.data[n:]
	return v
}

func (d *walkDecoder) string() string { return d.bytes(d.uvarint()) }

// ruleID reads a rule id, which fits in 32 bits.
func (d *walkDecoder) ruleID() policy.RuleID {
	v := d.uvarint()
	if v > math.MaxUint32 {
		d.err = errCorrupt
	}
	return policy.RuleID(v)
}

// names reads a list of directory entry names.
func (d *walkDecoder) names() []string {
	n := d.uvarint()
	if n > uint64(len(d.data)) { // each name takes a byte at least
		d.err = errCorrupt
	}
	var out []string
	for i := uint64(0); i < n && d.err == nil; i++ {
		name := d.string()
		if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
			d.err = fmt.Errorf("%w: entry name %q", errCorrupt, name)
		}
		out = append(out, name)
	}
	return out
}

// decodeWalks checks data (header, checksum, identity, uid, every field)
// and returns its listings by path.
func decodeWalks(data []byte, id string, uid uint32) (map[string]*listing, error) {
	if len(data) < len(walkFileMagic)+sha256.Size || string(data[:len(walkFileMagic)]) != walkFileMagic {
		return nil, fmt.Errorf("%w: no header", errCorrupt)
	}
	body, sum := data[:len(data)-sha256.Size], data[len(data)-sha256.Size:]
	if got := sha256.Sum256(body); !bytes.Equal(got[:], sum) {
		return nil, fmt.Errorf("%w: checksum", errCorrupt)
	}
	d := &walkDecoder{data: string(body[len(walkFileMagic):])}
	if got := d.string(); d.err == nil && got != id {
		return nil, errors.New("written by another boot or aigate binary")
	}
	if got := d.uvarint(); d.err == nil && got != uint64(uid) {
		return nil, fmt.Errorf("written for uid %d", got)
	}
	n := d.uvarint()
	if n > maxCachedDirs {
		d.err = errCorrupt
	}
	dirs := make(map[string]*listing, min(n, maxCachedDirs))
	for i := uint64(0); i < n && d.err == nil; i++ {
		path := d.string()
		if !filepath.IsAbs(path) || filepath.Clean(path) != path || strings.ContainsRune(path, 0) {
			return nil, fmt.Errorf("%w: path %q", errCorrupt, path)
		}
		var v [8]uint64
		for j := range v {
			v[j] = d.uvarint()
		}
		l := &listing{stamp: dirStamp{
			Dev: v[0], Ino: v[1], Nlink: v[2], Size: int64(v[3]),
			Mtime: unix.Timespec{Sec: int64(v[4]), Nsec: int64(v[5])},
			Ctime: unix.Timespec{Sec: int64(v[6]), Nsec: int64(v[7])},
		}}
		l.subdirs, l.files, l.links = d.names(), d.names(), d.names()
		switch flag := d.bytes(1); {
		case d.err != nil:
		case flag[0] == 1:
			copy(l.fp[:], d.bytes(32))
			n := d.uvarint()
			if n > uint64(len(l.files)) {
				d.err = fmt.Errorf("%w: %s: %d matched files of %d", errCorrupt, path, n, len(l.files))
			}
			l.matched = make(map[string]bool, n)
			l.rules = make(map[string]fileRules, n)
			for j := uint64(0); j < n && d.err == nil; j++ {
				i := d.uvarint()
				r := fileRules{read: d.ruleID(), write: d.ruleID(), exec: d.ruleID()}
				switch {
				case d.err != nil:
				case i >= uint64(len(l.files)) || l.matched[l.files[i]]:
					d.err = fmt.Errorf("%w: %s: matched file %d not listed, or twice", errCorrupt, path, i)
				case !r.any():
					d.err = fmt.Errorf("%w: %s: matched file %q without a rule", errCorrupt, path, l.files[i])
				default:
					l.matched[l.files[i]] = true
					l.rules[l.files[i]] = r
				}
			}
			l.rulesFP = l.fp
			if l.fp == ([32]byte{}) {
				d.err = errCorrupt
			}
		case flag[0] != 0:
			d.err = errCorrupt
		}
		if _, dup := dirs[path]; dup {
			d.err = fmt.Errorf("%w: %s twice", errCorrupt, path)
		}
		dirs[path] = l
	}
	if d.err == nil && len(d.data) != 0 {
		d.err = fmt.Errorf("%w: trailing bytes", errCorrupt)
	}
	if d.err != nil {
		return nil, d.err
	}
	return dirs, nil
}

func newWalkStoreIf(dir string) *walkStore {
	if dir == "" {
		return nil
	}
	return newWalkStore(dir)
}
