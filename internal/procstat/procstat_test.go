package procstat

import (
	"os"
	"os/exec"
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

// TestCPUTimeOf counts the CPU of processes by name, reaped children included: a shell that ran
// a busy child shell and waited for it has the child's time in its own cutime, which it keeps when
// it becomes sleep (exec), the name counted.
func TestCPUTimeOf(t *testing.T) {
	if got := CPUTimeOf("no-such-command-here"); got != 0 {
		t.Errorf("CPUTimeOf(no such command) = %v, want 0", got)
	}
	cmd := exec.Command("sh", "-c", `sh -c 'i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done'; exec sleep 30`)
	if err := cmd.Start(); err != nil {
		t.Skipf("no sh: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if CPUTimeOf("sleep") >= 50*time.Millisecond {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("CPUTimeOf(sleep) = %v after the loop, want its CPU", CPUTimeOf("sleep"))
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
