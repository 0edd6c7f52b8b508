// Package usersock finds, for one run, the unix sockets of the user's own services outside the sandbox (tmux's and screen's servers, an ssh-agent, gpg-agent, D-Bus) in the shared places a sandbox can write, so that they are kept in place for the run: a sandbox that removes or replaces one makes the user's clients outside talk to a server of its own.
package usersock
