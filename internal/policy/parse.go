package policy

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Keys lists the top-level configuration keys, in the order the
// documentation presents them.
var Keys = []string{
	"mode", "backend",
	"deny_read", "deny_write", "deny_exec",
	"allow_read", "allow_write", "allow_exec", "except_read",
	"net", "allow_net", "allow_loopback", "allow_inbound", "allow_unix", "dns",
	"allow_userns", "allow_io_uring",
	"resource_limits", "mask_output", "deny_env", "allow_env", "writable", "shared_caches",
}

var (
	limitKeys = []string{"max_memory", "max_cpu_percent", "max_pids", "if_unavailable"}
	dnsKeys   = []string{"min_ttl", "max_ttl"}
)

// Parse parses one configuration file. path is used in error messages only.
// An empty file (or one holding only comments) is an empty Config.
//
// Errors name the file, the line and what to do: malformed YAML, unknown keys
// (with the closest valid key), duplicated keys, values of the wrong type and
// every invalid pattern, endpoint, size, duration or regular expression, each
// with its own line. When a file has several problems the error is an Errors
// holding up to ten of them; otherwise it is an *Error.
func Parse(path string, data []byte) (*Config, error) {
	p := &parser{file: path, cfg: &Config{Path: path}}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return p.cfg, nil
		}
		return nil, p.yamlError(err, data)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		return nil, &Error{File: path, Line: next.Line, Msg: "a second YAML document (after \"---\")",
			Hint: "keep everything in one document"}
	case !errors.Is(err, io.EOF):
		return nil, p.yamlError(err, data)
	}

	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	root = deref(root)
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return p.cfg, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, &Error{File: path, Line: root.Line, Msg: "the file must be a mapping of keys such as deny_read",
			Hint: "see `aigate init` for an example"}
	}
	for _, kv := range p.pairs(root, "", Keys) {
		if kv.key == "dns" {
			p.dns(kv.key, kv.val, kv.keyLine)
			continue
		}
		p.topLevel(kv.key, kv.val)
	}
	// Lists are checked for types before their entries: report in file order.
	slices.SortStableFunc(p.errs, func(a, b *Error) int { return cmp.Compare(a.Line, b.Line) })
	switch len(p.errs) {
	case 0:
		return p.cfg, nil
	case 1:
		return nil, p.errs[0]
	}
	return nil, p.errs
}

type parser struct {
	file string
	cfg  *Config
	errs Errors
}

type keyValue struct {
	key     string
	keyLine int
	val     *yaml.Node
}

// errorf records a problem at node n.
func (p *parser) errorf(n *yaml.Node, hint, format string, args ...any) {
	p.add(&Error{Line: n.Line, Column: n.Column, Msg: fmt.Sprintf(format, args...), Hint: hint}, n)
}

// add records e, a value error, at node n.
func (p *parser) add(e *Error, n *yaml.Node) {
	if len(p.errs) >= maxErrors {
		return
	}
	e.File, e.Line, e.Column = p.file, n.Line, n.Column
	p.errs = append(p.errs, e)
}

// pairs returns the entries of mapping m whose keys are valid, reporting
// unknown and duplicated keys. parent names m in messages ("" for the top).
func (p *parser) pairs(m *yaml.Node, parent string, valid []string) []keyValue {
	seen := map[string]int{}
	var out []keyValue
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := deref(m.Content[i]), deref(m.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			p.errorf(k, "", "keys must be plain words such as deny_read")
			continue
		}
		name := k.Value
		if parent != "" {
			name = parent + "." + k.Value
		}
		if first, dup := seen[k.Value]; dup {
			p.errorf(k, fmt.Sprintf("the first is on line %d; keep one and merge their values", first),
				"duplicate key %q", name)
			continue
		}
		seen[k.Value] = k.Line
		if !contains(valid, k.Value) {
			p.errorf(k, didYouMean(k.Value, valid), "unknown key %q", name)
			continue
		}
		out = append(out, keyValue{name, k.Line, v})
	}
	return out
}

func (p *parser) topLevel(key string, v *yaml.Node) {
	c := p.cfg
	switch key {
	case "mode":
		if s, ok := p.enum(key, v, "enforce", "audit"); ok {
			m := Mode(s)
			c.Mode, c.ModeLine = &m, v.Line
		}
	case "backend":
		if s, ok := p.enum(key, v, "auto", "lsm", "fanotify"); ok {
			b := BackendChoice(s)
			c.Backend, c.BackendLine = &b, v.Line
		}
	case "net":
		if s, ok := p.enum(key, v, "deny", "allow"); ok {
			n := NetMode(s)
			c.Net, c.NetLine = &n, v.Line
		}
	case "allow_loopback":
		// true is the spelling of the time before own existed: it is read
		// as own, the safe default, and Merge asks for the new spelling.
		if v.Kind == yaml.ScalarNode && v.Tag == "!!bool" {
			m := LoopbackNone
			if v.Value == "true" {
				m, c.AllowLoopbackTrue = LoopbackOwn, true
			}
			c.AllowLoopback, c.AllowLoopbackLine = &m, v.Line
		} else if s, ok := p.enum(key, v, "own", "all", "false"); ok {
			m := LoopbackMode(s)
			c.AllowLoopback, c.AllowLoopbackLine = &m, v.Line
		}
	case "allow_inbound":
		if b, ok := p.boolean(key, v); ok {
			c.AllowInbound, c.AllowInboundLine = &b, v.Line
		}
	case "allow_userns":
		if b, ok := p.boolean(key, v); ok {
			c.AllowUserns, c.AllowUsernsLine = &b, v.Line
		}
	case "allow_io_uring":
		if b, ok := p.boolean(key, v); ok {
			c.AllowIOUring, c.AllowIOUringLine = &b, v.Line
		}
	case "deny_read":
		c.DenyRead = p.patterns(key, v)
	case "deny_write":
		c.DenyWrite = p.patterns(key, v)
	case "deny_exec":
		c.DenyExec = p.patterns(key, v)
	case "allow_read":
		c.AllowRead = p.patterns(key, v)
	case "allow_write":
		c.AllowWrite = p.patterns(key, v)
	case "allow_exec":
		c.AllowExec = p.patterns(key, v)
	case "allow_unix":
		c.AllowUnix = p.patterns(key, v)
	case "except_read":
		c.ExceptRead = p.patterns(key, v)
	case "allow_net":
		for _, s := range p.stringList(key, v, "domains or addresses", "api.github.com") {
			ep, err := parseEndpoint(s.Value)
			if err != nil {
				p.add(err, s)
				continue
			}
			ep.Source = p.source(s)
			c.AllowNet = append(c.AllowNet, ep)
		}
	case "mask_output":
		c.MaskOutput = p.regexps(key, v)
	case "deny_env":
		c.DenyEnv = p.envPatterns(key, v)
	case "allow_env":
		c.AllowEnv = p.envPatterns(key, v)
	case "writable":
		c.Writable = p.writable(key, v)
	case "shared_caches":
		c.SharedCaches = p.sharedCaches(key, v)
	case "resource_limits":
		p.limits(key, v)
	}
}

func (p *parser) source(n *yaml.Node) Source { return Source{File: p.file, Line: n.Line} }

// stringList returns the entries of a list of strings. what and example
// describe the entries in messages.
func (p *parser) stringList(key string, v *yaml.Node, what, example string) []*yaml.Node {
	if isNull(v) {
		return nil
	}
	if v.Kind != yaml.SequenceNode {
		p.errorf(v, fmt.Sprintf("write one entry per line:\n    %s:\n      - %s", key, example),
			"%s must be a list of %s, not %s", key, what, describe(v))
		return nil
	}
	var out []*yaml.Node
	for _, e := range v.Content {
		e = deref(e)
		switch {
		case e.Kind == yaml.ScalarNode && e.Tag == "!!str":
			out = append(out, e)
		case e.Kind == yaml.ScalarNode && isNull(e):
			p.errorf(e, "remove the empty \"-\" line", "empty entry in %s", key)
		case e.Kind == yaml.ScalarNode:
			p.errorf(e, fmt.Sprintf("quote it: \"%s\"", e.Value), "%s entries must be strings, not %s", key, describe(e))
		default:
			p.errorf(e, fmt.Sprintf("write one entry per line, e.g. - %s", example),
				"%s entries must be strings, not %s", key, describe(e))
		}
	}
	return out
}

// writable parses the writable list: directories or files, "~/" or
// absolute, named exactly (Landlock grants beneath a path, not a pattern).
func (p *parser) writable(key string, v *yaml.Node) []PathRule {
	var out []PathRule
	for _, s := range p.stringList(key, v, "paths", "~/.cache/my-tool") {
		path := s.Value
		switch {
		case !strings.HasPrefix(path, "/") && !strings.HasPrefix(path, "~/") && path != "~":
			p.errorf(s, "start it with ~/ (your home) or / (an absolute path)",
				"%s entry %q is not a path beneath your home or an absolute path", key, path)
		case strings.ContainsAny(path, "*?["):
			p.errorf(s, "name the directory itself: everything beneath it becomes writable",
				"%s entry %q is a pattern; %s takes paths", key, path, key)
		case slices.Contains(strings.Split(path, "/"), ".."):
			p.errorf(s, "write the path without ..", "%s entry %q climbs with ..", key, path)
		default:
			out = append(out, PathRule{Pattern: path, Source: p.source(s)})
		}
	}
	return out
}

func (p *parser) patterns(key string, v *yaml.Node) []PathRule {
	var out []PathRule
	for _, s := range p.stringList(key, v, "patterns", ".env") {
		if _, err := parsePattern(s.Value); err != nil {
			err.Msg = key + " " + err.Msg
			p.add(err, s)
			continue
		}
		out = append(out, PathRule{Pattern: s.Value, Source: p.source(s)})
	}
	return out
}

func (p *parser) regexps(key string, v *yaml.Node) []PathRule {
	var out []PathRule
	for _, s := range p.stringList(key, v, "regular expressions", `ghp_[A-Za-z0-9]{36}`) {
		if e := checkRegexp(s.Value); e != nil {
			p.add(e, s)
			continue
		}
		out = append(out, PathRule{Pattern: s.Value, Source: p.source(s)})
	}
	return out
}

// checkRegexp reports why s is not a usable mask_output expression.
func checkRegexp(s string) *Error {
	re, err := regexp.Compile(s)
	if err != nil {
		return valueError("mask_output uses Go regular expressions (RE2 syntax)",
			"mask_output entry %q: %s", s, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
	}
	if re.MatchString("") {
		return valueError("it would mask nothing useful; require at least one character, e.g. + instead of *",
			"mask_output entry %q matches the empty string", s)
	}
	return nil
}

func (p *parser) enum(key string, v *yaml.Node, valid ...string) (string, bool) {
	if v.Kind != yaml.ScalarNode || isNull(v) || !contains(valid, v.Value) {
		hint := fmt.Sprintf("write %s: %s", key, strings.Join(valid, " or "))
		if v.Kind == yaml.ScalarNode && !isNull(v) {
			if s := suggest(v.Value, valid); s != "" {
				hint = fmt.Sprintf("did you mean %q?", s)
			}
		}
		p.errorf(v, hint, "%s must be %s, not %s", key, strings.Join(valid, " or "), describe(v))
		return "", false
	}
	return v.Value, true
}

func (p *parser) boolean(key string, v *yaml.Node) (bool, bool) {
	if v.Kind != yaml.ScalarNode || v.Tag != "!!bool" {
		p.errorf(v, fmt.Sprintf("write %s: true or %s: false", key, key), "%s must be true or false, not %s", key, describe(v))
		return false, false
	}
	return v.Value == "true", true
}

// mapping returns the entries of a nested mapping such as resource_limits.
func (p *parser) mapping(key string, v *yaml.Node, valid []string) []keyValue {
	if isNull(v) {
		return nil
	}
	if v.Kind != yaml.MappingNode {
		p.errorf(v, fmt.Sprintf("write:\n    %s:\n      %s: ...", key, valid[0]),
			"%s must be a mapping with the keys %s, not %s", key, strings.Join(valid, ", "), describe(v))
		return nil
	}
	return p.pairs(v, key, valid)
}

func (p *parser) limits(key string, v *yaml.Node) {
	kvs := p.mapping(key, v, limitKeys)
	if kvs == nil {
		return
	}
	lim, lines := &ResourceLimits{}, &p.cfg.LimitLines
	for _, kv := range kvs {
		val := kv.val
		if val.Kind != yaml.ScalarNode || isNull(val) || (val.Tag != "!!str" && val.Tag != "!!int") {
			p.errorf(val, "write a number, or 0 or unlimited for no limit", "%s must be a number, not %s", kv.key, describe(val))
			continue
		}
		s := strings.TrimSpace(val.Value)
		if kv.key == "resource_limits.if_unavailable" {
			if s != "warn" && s != "refuse" {
				p.errorf(val, "write warn (run without the limit, saying so) or refuse (do not run)", "%s must be warn or refuse, not %q", kv.key, val.Value)
				continue
			}
			lim.Required, lines.IfUnavailable = s == "refuse", val.Line
			continue
		}
		if s == "unlimited" {
			s = "0"
		}
		switch kv.key {
		case "resource_limits.max_memory":
			n, err := parseSize(s)
			if err != nil {
				err.Msg = kv.key + ": " + err.Msg
				p.add(err, val)
				continue
			}
			if n != 0 && n < 1<<20 {
				p.errorf(val, "nothing runs in less than a few megabytes; write e.g. 512M", "%s %q is less than 1M", kv.key, val.Value)
				continue
			}
			lim.MaxMemory, lines.MaxMemory = n, val.Line
		case "resource_limits.max_cpu_percent":
			n, ok := p.number(kv.key, val, strings.TrimSuffix(s, "%"), 100*1024, "100 is one full CPU")
			if ok {
				lim.MaxCPUPercent, lines.MaxCPUPercent = n, val.Line
			}
		case "resource_limits.max_pids":
			n, ok := p.number(kv.key, val, s, 1<<22, "the kernel allows at most 4194304 processes")
			if ok {
				lim.MaxPIDs, lines.MaxPIDs = n, val.Line
			}
		}
	}
	p.cfg.ResourceLimits = lim
}

func (p *parser) number(key string, v *yaml.Node, s string, maxVal uint64, hint string) (uint32, bool) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n > maxVal || strings.HasPrefix(s, "+") {
		p.errorf(v, hint, "%s must be a whole number from 0 (unlimited) to %d, not %q", key, maxVal, v.Value)
		return 0, false
	}
	return uint32(n), true
}

func (p *parser) dns(key string, v *yaml.Node, line int) {
	kvs := p.mapping(key, v, dnsKeys)
	if kvs == nil {
		return
	}
	d := &DNS{}
	var minNode *yaml.Node
	for _, kv := range kvs {
		val := kv.val
		dur, err := time.ParseDuration(val.Value)
		if val.Kind != yaml.ScalarNode || val.Tag != "!!str" || err != nil || dur < 0 {
			p.errorf(val, "write a duration with a unit, e.g. 30s, 5m or 1h", "%s must be a duration, not %s", kv.key, describe(val))
			continue
		}
		if kv.key == "dns.min_ttl" {
			d.MinTTL, minNode = dur, val
		} else {
			d.MaxTTL = dur
		}
	}
	if minNode != nil && d.MaxTTL != 0 && d.MinTTL > d.MaxTTL {
		p.errorf(minNode, "lower min_ttl or raise max_ttl", "dns.min_ttl %s is greater than dns.max_ttl %s", d.MinTTL, d.MaxTTL)
	}
	p.cfg.DNS, p.cfg.DNSLine = d, line
}

// yamlLine matches the position yaml.v3 puts in its syntax errors. Compiled
// at the first error, not at every start of the binary (its inits run in
// each process, the client's included).
var yamlLine = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^yaml: line (\d+): (.*)$`) })

// yamlError turns a yaml.v3 syntax error into an *Error with the line of the
// problem. yaml.v3 reports the line where the enclosing construct started
// (0-based, for parser errors), or no line at all, so the problem line is
// found again as the shortest prefix of the file that fails with the same
// message: the parser is streaming, so that is the line it rejected.
func (p *parser) yamlError(err error, data []byte) *Error {
	problem := err.Error()
	e := &Error{File: p.file}
	if m := yamlLine().FindStringSubmatch(problem); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		problem = m[2]
	} else {
		problem = strings.TrimPrefix(problem, "yaml: ")
	}
	e.Msg = "invalid YAML: " + problem
	if line := problemLine(data, problem, e.Line); line > 0 {
		e.Line = line
	} else if e.Line == 0 {
		e.Line = badByteLine(data)
	}
	if lines := bytes.Split(data, []byte("\n")); e.Line > 0 && e.Line <= len(lines) &&
		bytes.Contains(lines[e.Line-1], []byte("\t")) {
		e.Hint = "indent with spaces: YAML does not allow tabs"
	}
	return e
}

// problemLine returns the first line n such that the file's first n lines
// fail to parse with problem, or 0. Once the parser has rejected a line,
// every longer prefix fails the same way, so a binary search finds it; from
// is a line known not to be after the problem.
func problemLine(data []byte, problem string, from int) int {
	lines := bytes.SplitAfter(data, []byte("\n"))
	same := func(n int) bool {
		err := decodeAll(bytes.Join(lines[:n], nil))
		if err == nil {
			return false
		}
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		if m := yamlLine().FindStringSubmatch(err.Error()); m != nil {
			msg = m[2]
		}
		return msg == problem
	}
	lo, hi := max(from, 1), len(lines)
	if lo > hi || !same(hi) {
		return 0
	}
	for lo < hi {
		mid := lo + (hi-lo)/2
		if same(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// decodeAll parses every document in data, for problemLine.
func decodeAll(data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		if err := dec.Decode(&n); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// badByteLine returns the line of the first byte that YAML refuses (invalid
// UTF-8 or a control character), for yaml.v3 errors that carry no line.
func badByteLine(data []byte) int {
	line := 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if (r == utf8.RuneError && size == 1) || (r < 0x20 && r != '\n' && r != '\r' && r != '\t') || r == 0x7f {
			return line
		}
		if r == '\n' {
			line++
		}
		i += size
	}
	return 0
}

// deref follows YAML aliases (*name) to the node they stand for.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// describe names the YAML type of n for messages: "a list", "the number 3".
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return "empty"
		case "!!int", "!!float":
			return "the number " + n.Value
		case "!!bool":
			return "the boolean " + n.Value
		}
		return strconv.Quote(n.Value)
	}
	return "an alias"
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
