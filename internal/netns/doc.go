// Package netns opens a descriptor in another network namespace (a socket the kernel ties to the namespace it was made in) from a thread that enters it and comes back, leaving every other thread of the process where it was.
package netns
