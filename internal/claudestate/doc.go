// Package claudestate finds, for one run, the files in Claude Code's reach that a later claude outside the sandbox runs or follows and that no fixed default deny_write entry names: the scripts the user's and the project's settings name, and each project's auto memory; and it seeds the sandboxes' own auto memory and subagent memory, which claude inside uses instead.
package claudestate
