// Package unixdiag asks the kernel about one unix socket, named by its
// inode number, through sock_diag (linux/unix_diag.h): whether it is
// alive, the socket at its other end, the file it is bound to.
package unixdiag
