// Package termfilter removes, from what a sandboxed command writes to the
// user's terminal, the escape sequences that act outside the terminal's
// screen: clipboard writes and reads (OSC 52), reports that echo text the
// command chose back into the terminal's input, and device control
// strings that reach past the terminal (tmux passthrough, user-defined
// keys). Everything else passes byte for byte, as it streams.
package termfilter
