package config

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
)

// User is the person aigate acts for. Under sudo that is the user who ran
// sudo, not root: their config applies and the files aigate creates for
// them must stay theirs.
type User struct {
	Name string
	Home string
	UID  int
	GID  int
	// Sudo is true when the user was found through SUDO_UID/SUDO_USER, so
	// that new files must be handed back to UID/GID.
	Sudo bool
}

// Env is the process environment Locate works from; tests replace it.
type Env struct {
	Getenv func(string) string
	Euid   int
	// Getwd returns the working directory.
	Getwd func() (string, error)
}

// OSEnv is the environment of the running process.
func OSEnv() Env {
	return Env{Getenv: os.Getenv, Euid: os.Geteuid(), Getwd: os.Getwd}
}

// InvokingUser returns the user aigate acts for. SUDO_UID and SUDO_USER are
// honoured only when running as root: for anyone else they are just
// variables the caller could set, and the home that matters is their own.
func InvokingUser(env Env) (*User, error) {
	if env.Euid == 0 {
		if u, err := sudoUser(env); u != nil || err != nil {
			return u, err
		}
	}
	u := &User{UID: env.Euid, GID: os.Getegid(), Home: env.Getenv("HOME")}
	if cur, err := user.Current(); err == nil {
		u.Name = cur.Username
		if u.Home == "" {
			u.Home = cur.HomeDir
		}
	}
	if u.Home == "" {
		return nil, fmt.Errorf("find home directory: HOME is not set and the user database has no entry for uid %d", env.Euid)
	}
	return u, nil
}

// sudoUser returns the user who ran sudo, or nil when not under sudo. The
// home comes from the user database, never from HOME, which sudo may have
// set to /root.
func sudoUser(env Env) (*User, error) {
	var (
		u   *user.User
		err error
	)
	switch {
	case env.Getenv("SUDO_UID") != "":
		u, err = user.LookupId(env.Getenv("SUDO_UID"))
	case env.Getenv("SUDO_USER") != "":
		u, err = user.Lookup(env.Getenv("SUDO_USER"))
	default:
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("find the user who ran sudo: %w", err)
	}
	if u.Uid == "0" {
		// sudo from a root shell: root is the invoking user.
		return nil, nil
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return nil, fmt.Errorf("user %s: uid %q is not a number", u.Username, u.Uid)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return nil, fmt.Errorf("user %s: gid %q is not a number", u.Username, u.Gid)
	}
	if u.HomeDir == "" {
		return nil, fmt.Errorf("user %s (who ran sudo) has no home directory in the user database", u.Username)
	}
	return &User{Name: u.Username, Home: u.HomeDir, UID: uid, GID: gid, Sudo: true}, nil
}

// AsUser is User.Do for a function with a result.
func AsUser[T any](u *User, fn func() (T, error)) (T, error) {
	var v T
	err := u.Do(func() error {
		var err error
		v, err = fn()
		return err
	})
	return v, err
}
