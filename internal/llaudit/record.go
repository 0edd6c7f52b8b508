package llaudit

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The audit record types this package reads (include/uapi/linux/audit.h).
const (
	TypeSyscall        = 1300 // AUDIT_SYSCALL: the task, at the end of its system call
	TypeEOE            = 1320 // AUDIT_EOE: end of a multi-record event
	TypeLandlockAccess = 1423 // AUDIT_LANDLOCK_ACCESS: one refusal
	TypeLandlockDomain = 1424 // AUDIT_LANDLOCK_DOMAIN: a domain's creator, or its end
)

// Wanted reports whether records of type typ matter here; the others are
// dropped before they are parsed (an auditd system multicasts every record).
func Wanted(typ uint16) bool {
	return typ == TypeSyscall || typ == TypeEOE || typ == TypeLandlockAccess || typ == TypeLandlockDomain
}

// Record is one parsed audit record. Which fields are set depends on Type.
// Strings are as the kernel logged them, decoded from audit's hex form:
// path, comm, ocomm and exe are chosen by the sandboxed process and must
// be escaped when printed (events.Format does).
type Record struct {
	Type   uint16
	Serial uint64 // the event's serial: records of one event share it
	// Landlock records.
	Domain   uint64   // the domain id (hex in the record)
	Blockers []string // ACCESS: the refused rights, "fs.write_file", "ptrace", "scope.signal"
	Path     string   // ACCESS: path= (or name=) of a file refusal
	OPid     int      // ACCESS: opid= of a process refusal (the target)
	OComm    string   // ACCESS: ocomm=
	Status   string   // DOMAIN: "allocated" or "deallocated"
	// PID is the task: SYSCALL's pid= (the refused task), DOMAIN's pid=
	// (the task that created the domain). UID likewise.
	PID  int
	UID  uint32
	Comm string // SYSCALL: the refused task's comm
}

// Parse parses the payload of one audit record of type typ:
// "audit(SECONDS.MILLIS:SERIAL): key=value ...". The payload is kernel
// text, but its string values are attacker-chosen; Parse never trusts a
// length or an offset from it.
func Parse(typ uint16, payload []byte) (Record, error) {
	r := Record{Type: typ}
	rest, ok := bytes.CutPrefix(payload, []byte("audit("))
	if !ok {
		return r, errors.New("parse audit record: no audit( stamp")
	}
	stamp, rest, ok := bytes.Cut(rest, []byte("): "))
	if !ok {
		// An EOE record has nothing after the stamp.
		stamp, rest, ok = bytes.Cut(rest, []byte("):"))
		if !ok {
			return r, errors.New("parse audit record: unterminated stamp")
		}
	}
	_, serial, ok := bytes.Cut(stamp, []byte(":"))
	if !ok {
		return r, errors.New("parse audit record: stamp without serial")
	}
	n, err := strconv.ParseUint(string(serial), 10, 64)
	if err != nil {
		return r, fmt.Errorf("parse audit record: serial: %w", err)
	}
	r.Serial = n
	fields, err := split(rest)
	if err != nil {
		return r, err
	}
	for _, f := range fields {
		if err := r.set(f.key, f.val); err != nil {
			return r, fmt.Errorf("parse audit record type %d: %s: %w", typ, f.key, err)
		}
	}
	return r, nil
}

func (r *Record) set(key, val string) error {
	var err error
	switch r.Type {
	case TypeLandlockAccess:
		switch key {
		case "domain":
			r.Domain, err = strconv.ParseUint(val, 16, 64)
		case "blockers":
			r.Blockers = strings.Split(val, ",")
		case "path", "name":
			if r.Path == "" {
				r.Path = val
			}
		case "opid":
			r.OPid, err = strconv.Atoi(val)
		case "ocomm":
			r.OComm = val
		}
	case TypeLandlockDomain:
		switch key {
		case "domain":
			r.Domain, err = strconv.ParseUint(val, 16, 64)
		case "status":
			r.Status = val
		case "pid":
			r.PID, err = strconv.Atoi(val)
		case "uid":
			r.UID, err = parseUID(val)
		}
	case TypeSyscall:
		switch key {
		case "pid":
			r.PID, err = strconv.Atoi(val)
		case "uid":
			r.UID, err = parseUID(val)
		case "comm":
			r.Comm = val
		}
	}
	return err
}

func parseUID(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err
}

type field struct{ key, val string }

// untrusted are the fields audit logs with audit_log_untrustedstring:
// quoted when plain, else upper-case hex of the raw bytes.
var untrusted = map[string]bool{"path": true, "name": true, "comm": true, "ocomm": true, "exe": true}

// split cuts the record's body into key=value fields. A quoted value ends
// at the next quote: audit hex-encodes every string that holds a quote,
// space or control character, so a value can neither hold a quote nor
// span fields.
func split(b []byte) ([]field, error) {
	var out []field
	for {
		b = bytes.TrimLeft(b, " ")
		if len(b) == 0 {
			return out, nil
		}
		eq := bytes.IndexByte(b, '=')
		sp := bytes.IndexByte(b, ' ')
		if eq < 0 || (sp >= 0 && sp < eq) {
			// A word without a value ("(null)" keys and the like): skip it.
			if sp < 0 {
				return out, nil
			}
			b = b[sp:]
			continue
		}
		key := string(b[:eq])
		b = b[eq+1:]
		var val string
		if len(b) > 0 && b[0] == '"' {
			end := bytes.IndexByte(b[1:], '"')
			if end < 0 {
				return nil, fmt.Errorf("parse audit record: %s: unterminated quote", key)
			}
			val, b = string(b[1:1+end]), b[2+end:]
		} else {
			end := bytes.IndexByte(b, ' ')
			if end < 0 {
				end = len(b)
			}
			val, b = string(b[:end]), b[end:]
			if untrusted[key] && val != "(null)" && val != "?" {
				raw, err := hex.DecodeString(val)
				if err != nil {
					return nil, fmt.Errorf("parse audit record: %s: neither quoted nor hex", key)
				}
				val = string(raw)
			}
		}
		out = append(out, field{key, val})
	}
}
