package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"time"

	yaml "go.yaml.in/yaml/v3"
)

// TrustState says whether a project file's loosening entries apply.
type TrustState int

const (
	// NoProject: there is no project file.
	NoProject TrustState = iota
	// Untrusted: the file has never been trusted by this user.
	Untrusted
	// Changed: the file was trusted, but its content has changed since.
	Changed
	// Trusted: this exact content was trusted with `aigate trust`.
	Trusted
)

func (s TrustState) String() string {
	switch s {
	case NoProject:
		return "none"
	case Untrusted:
		return "untrusted"
	case Changed:
		return "changed since trusted"
	case Trusted:
		return "trusted"
	}
	return fmt.Sprintf("trust(%d)", int(s))
}

// TrustEntry records one trusted project file, like direnv's allow list:
// the absolute path and the SHA-256 of the exact bytes the user approved.
type TrustEntry struct {
	Path    string    `yaml:"path"`
	SHA256  string    `yaml:"sha256"`
	Trusted time.Time `yaml:"trusted_at"`
}

// TrustStore is the content of ~/.aigate/trusted.yaml.
type TrustStore struct {
	Entries []TrustEntry `yaml:"trusted"`
}

const trustHeader = "# Project config files trusted with `aigate trust`: path and SHA-256 of the\n" +
	"# exact content approved. Any change to a file un-trusts it. Managed by aigate.\n"

// Hash is the trust hash of a file's content.
func Hash(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// ReadTrustStore reads the trust store; a missing store is empty.
func ReadTrustStore(path string) (*TrustStore, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &TrustStore{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read trust store: %w", err)
	}
	var ts TrustStore
	if err := yaml.Unmarshal(data, &ts); err != nil {
		return nil, fmt.Errorf("trust store %s is corrupt (%v): remove it and run `aigate trust` again in each project", path, err)
	}
	return &ts, nil
}

// State reports whether path with content data is trusted.
func (ts *TrustStore) State(path string, data []byte) TrustState {
	i := ts.index(path)
	switch {
	case i < 0:
		return Untrusted
	case ts.Entries[i].SHA256 != Hash(data):
		return Changed
	}
	return Trusted
}

// Set trusts data as the content of path, replacing any earlier entry.
func (ts *TrustStore) Set(path string, data []byte, now time.Time) {
	ts.SetHash(path, Hash(data), now)
}

// SetHash trusts the content with SHA-256 sum as the content of path.
func (ts *TrustStore) SetHash(path, sum string, now time.Time) {
	e := TrustEntry{Path: path, SHA256: sum, Trusted: now.UTC().Truncate(time.Second)}
	if i := ts.index(path); i >= 0 {
		ts.Entries[i] = e
		return
	}
	ts.Entries = append(ts.Entries, e)
}

// Remove forgets path; it reports whether there was an entry.
func (ts *TrustStore) Remove(path string) bool {
	i := ts.index(path)
	if i < 0 {
		return false
	}
	ts.Entries = slices.Delete(ts.Entries, i, i+1)
	return true
}

func (ts *TrustStore) index(path string) int {
	return slices.IndexFunc(ts.Entries, func(e TrustEntry) bool { return e.Path == path })
}

// Write stores ts atomically at path, for the invoking user u.
func (ts *TrustStore) Write(path string, u *User) error {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(ts); err != nil {
		return fmt.Errorf("encode trust store: %w", err)
	}
	body := buf.Bytes()
	if err := EnsureDir(dirOf(path), u); err != nil {
		return err
	}
	return WriteFileAtomic(path, append([]byte(trustHeader), body...), 0o600, u)
}
