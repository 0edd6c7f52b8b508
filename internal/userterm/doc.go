// Package userterm finds, for one run, the user's terminals other than
// the run's own: the pseudo-terminals of their other terminal windows,
// tmux panes and ssh sessions, and their virtual consoles. A sandbox of
// the same user could open one by its name and read what is typed there
// (a password at a sudo prompt goes to whichever reader comes first) or
// write to it (fake output, a clipboard write through OSC 52).
package userterm
