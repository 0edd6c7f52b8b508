// Package claudejson keeps the entries of Claude Code's ~/.claude.json that
// make a later claude run commands (MCP servers, approvals of a project's
// .mcp.json servers, allowed tools, folder trust) as they were before a
// sandboxed run: Claude Code rewrites the file all the time, so it cannot
// be write-protected, and aigate run puts those entries back afterwards
// instead. Pure Go; the caller reads and writes the file.
package claudejson
