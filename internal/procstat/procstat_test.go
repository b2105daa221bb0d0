package procstat

import (
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"
)

func TestCPUTime(t *testing.T) {
	before, err := CPUTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Spin until the kernel has counted at least a few ticks more.
	deadline := time.Now().Add(5 * time.Second)
	for x := 0; time.Now().Before(deadline); x++ {
		if x%1_000_000 == 0 {
			after, err := CPUTime(os.Getpid())
			if err != nil {
				t.Fatal(err)
			}
			if after-before >= 50*time.Millisecond {
				return
			}
		}
	}
	t.Fatal("CPUTime did not grow while the test spun for 5 s")
}

func TestReadMemory(t *testing.T) {
	m, err := ReadMemory(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS <= 0 || m.Peak < m.RSS || m.Anon <= 0 || m.Anon > m.RSS {
		t.Errorf("ReadMemory(self) = %+v: want 0 < Anon <= RSS <= Peak", m)
	}
	if _, err := ReadMemory(-1); err == nil {
		t.Error("ReadMemory(-1): no error")
	}
}

// TestTreeCPUTime counts a process's descendants, live and reaped: a shell whose child shell
// loops and then sleeps (live), and one whose child looped and was waited for (reaped, in the
// shell's cutime). A process that has gone is an error, not zero.
func TestTreeCPUTime(t *testing.T) {
	const busy = `i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done`
	for name, script := range map[string]string{
		"live child":   `sh -c '` + busy + `; exec sleep 30' & wait`,
		"reaped child": `sh -c '` + busy + `'; exec sleep 30`,
	} {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command("sh", "-c", script)
			// A process group of its own, so the end of the test ends the child shell too.
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			if err := cmd.Start(); err != nil {
				t.Skipf("no sh: %v", err)
			}
			t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() })
			if p, err := Lookup(cmd.Process.Pid); err != nil || p.PPID != os.Getpid() {
				t.Errorf("Lookup(the shell) = %+v, %v; want the child of %d (this process)", p, err, os.Getpid())
			}
			if kids, err := Children(os.Getpid()); err != nil || !slices.Contains(kids, cmd.Process.Pid) {
				t.Errorf("Children(this process) = %v, %v; want the shell %d among them", kids, err, cmd.Process.Pid)
			}
			deadline := time.Now().Add(20 * time.Second)
			for {
				got, err := TreeCPUTime(cmd.Process.Pid)
				if err != nil {
					t.Fatal(err)
				}
				if got >= 50*time.Millisecond {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("TreeCPUTime(the shell) = %v after the loop, want its child's CPU", got)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("no true: %v", err)
	}
	if got, err := TreeCPUTime(cmd.Process.Pid); err == nil {
		t.Errorf("TreeCPUTime(a process that has gone) = %v, want an error", got)
	}
}
