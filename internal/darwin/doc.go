// Package darwin is aigate's macOS path: the sandboxed tool runs as a hidden
// system user, denied files get ACL deny entries for that user, and a pf
// anchor limits the user's egress. The generators (dscl, chmod, pf text) are
// pure and tested on Linux; commands run through a Runner so the
// orchestration is tested with a fake, and only exec_darwin.go touches the
// real system.
package darwin
