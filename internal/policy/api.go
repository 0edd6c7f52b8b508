package policy

// This file fixes the package's API so that other packages can be written
// against it; the implementations live in parse.go, merge.go and compile.go.

// Parse parses one configuration file. path is used in error messages only.
// Errors name the file, the line and what to do; unknown keys suggest the
// closest valid key.
//   func Parse(path string, data []byte) (*Config, error)

// Defaults returns the built-in default configuration (what `aigate init`
// writes, and what applies when no global file exists).
//   func Defaults() *Config

// Merge layers the project file over the global one. Deny rules from the
// project always apply; loosening entries (allow_*, allow_net, net: allow,
// mode: audit, backend) apply only when projectTrusted is true, otherwise they
// are dropped and reported in the returned warnings. global may be nil (then
// Defaults() is used) and project may be nil.
//   func Merge(global, project *Config, projectTrusted bool) (*Policy, []Warning)

// Compile turns a merged policy into flat rule sets for env.
//   func Compile(p *Policy, env Env) (*Compiled, error)

// Matching with exactly the semantics that the kernel programs implement:
//   func (c *Compiled) MatchOpen(path string, write bool) (RuleID, bool)
//   func (c *Compiled) MatchExec(path string) (RuleID, bool)
//   func (c *Compiled) MatchConnect(dst netip.AddrPort, resolved map[netip.Addr][]RuleID) (RuleID, bool)
