package pglocal

import (
	"strings"
	"syscall"

	"github.com/reports-server/reports-server/internal/procstat"
)

// childProcesses returns the pids whose parent is pid, from /proc.
func childProcesses(pid int) ([]int, error) { return procstat.Children(pid) }

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
	p, err := procstat.Lookup(pid)
	if err != nil {
		return true // cannot tell: assume it is
	}
	if p.State == "Z" {
		return false // a zombie is not a running server
	}
	return strings.HasPrefix(p.Comm, "postgres") || strings.HasPrefix(p.Comm, "postmaster")
}
