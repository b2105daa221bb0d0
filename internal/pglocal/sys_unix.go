//go:build unix && !linux

package pglocal

import (
	"errors"
	"syscall"
)

// childProcesses needs /proc (see sys_linux.go).
func childProcesses(int) ([]int, error) {
	return nil, errors.New("listing child processes is only supported on Linux")
}

// sysProcAttr: see sys_linux.go. Without a parent-death signal here, a postgres whose parent
// crashed keeps running until stopped by hand.
func sysProcAttr(who account) *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{Setpgid: true}
	if who.switchUser {
		attr.Credential = &syscall.Credential{Uid: who.uid, Gid: who.gid}
	}
	return attr
}

func isPostgresProcess(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}
