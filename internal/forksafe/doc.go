// Package forksafe starts child processes from a process that answers
// fanotify permission events itself, without the deadlock Go's vfork
// allows there (see Start).
package forksafe
