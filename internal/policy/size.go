package policy

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ParseSize parses a memory size: a number of bytes ("1073741824") or a
// whole number with a unit, K, M, G or T, optionally followed by "i" and/or
// "B" and in either case ("512M", "4G", "4GiB", "512mb"). Every unit is a
// power of 1024, as for cgroups and docker: "1G" is 1073741824 bytes.
func ParseSize(s string) (uint64, error) {
	n, err := parseSize(s)
	if err != nil {
		return 0, err
	}
	return n, nil
}

func parseSize(s string) (uint64, *Error) {
	const hint = "write bytes or a whole number with a unit: 512M, 4G"
	digits := strings.TrimRight(s, "KMGTkmgtIiBb")
	unit := strings.ToUpper(s[len(digits):])
	n, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || digits[0] == '+' {
		if _, ferr := strconv.ParseFloat(digits, 64); ferr == nil && strings.Contains(digits, ".") {
			return 0, valueError("use a smaller unit: 1536M instead of 1.5G", "size %q is not a whole number", s)
		}
		return 0, valueError(hint, "invalid size %q", s)
	}
	var shift uint
	switch strings.TrimSuffix(strings.TrimSuffix(unit, "B"), "I") {
	case "":
		if unit != "" && unit != "B" {
			return 0, valueError(hint, "invalid unit in size %q", s)
		}
	case "K":
		shift = 10
	case "M":
		shift = 20
	case "G":
		shift = 30
	case "T":
		shift = 40
	default:
		return 0, valueError(hint, "invalid unit in size %q", s)
	}
	if n > math.MaxUint64>>shift {
		return 0, valueError("", "size %q is too large", s)
	}
	return n << shift, nil
}

// formatSize is the inverse of ParseSize, in the largest exact unit.
func formatSize(n uint64) string {
	if n == 0 {
		return "0"
	}
	for _, u := range []struct {
		shift uint
		unit  string
	}{{40, "T"}, {30, "G"}, {20, "M"}, {10, "K"}} {
		if n%(1<<u.shift) == 0 {
			return fmt.Sprintf("%d%s", n>>u.shift, u.unit)
		}
	}
	return fmt.Sprint(n)
}
