package pglocal

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// childProcesses returns the pids whose parent is pid, from /proc.
func childProcesses(pid int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		// "<pid> (<comm>) <state> <ppid> ...": comm may hold spaces and parentheses.
		s := string(b)
		rest := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(rest) > 1 && rest[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out, nil
}

// sysProcAttr runs the child in its own process group (a terminal's Ctrl-C reaches us, and we
// stop postgres in order), as the server account when we are root, and asks the kernel to send
// it SIGINT (fast shutdown) if we die. Go sets the parent-death signal after switching user, so
// the credential change does not clear it.
func sysProcAttr(who account) *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGINT}
	if who.switchUser {
		attr.Credential = &syscall.Credential{Uid: who.uid, Gid: who.gid}
	}
	return attr
}

// isPostgresProcess reports whether pid is alive and is a postgres server process (not a
// recycled pid).
func isPostgresProcess(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && err != syscall.EPERM {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true // cannot tell: assume it is
	}
	// "<pid> (<comm>) <state> ..."; a zombie is not a running server.
	s := string(b)
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open {
		return true
	}
	comm := s[open+1 : closing]
	if rest := strings.Fields(s[closing+1:]); len(rest) > 0 && rest[0] == "Z" {
		return false
	}
	return strings.HasPrefix(comm, "postgres") || strings.HasPrefix(comm, "postmaster")
}
