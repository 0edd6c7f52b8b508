// Package doctor checks whether this machine can run aigate's sandbox and,
// for every check that fails, says exactly how to fix it.
package doctor
