// Package kallsyms finds a kernel symbol's address in /proc/kallsyms.
package kallsyms
