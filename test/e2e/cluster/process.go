package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/reports-server/reports-server/internal/procstat"
)

// Process is one component of the cluster, run as a child in a process group of its own so that
// stopping it also stops anything it started, and killed by the kernel if the test binary dies
// (parent-death signal), so a crashed or timed-out test leaves nothing running.
type Process struct {
	Name    string
	LogPath string

	bin  string
	args []string
	env  []string
	dir  string

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when the current run has exited
	waitErr error
	// runStart is the size of the log when the current run started: its lines follow.
	runStart int64
}

// newProcess describes a process; start runs it. Its standard output and error are appended to
// logPath, across restarts.
func newProcess(name, logPath, dir, bin string, args, env []string) *Process {
	return &Process{Name: name, LogPath: logPath, dir: dir, bin: bin, args: args, env: env}
}

// start runs the process. It must not be running.
func (p *Process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done != nil {
		select {
		case <-p.done:
		default:
			return fmt.Errorf("%s is already running", p.Name)
		}
	}
	log, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open log of %s: %w", p.Name, err)
	}
	info, err := log.Stat()
	if err != nil {
		log.Close()
		return fmt.Errorf("stat log of %s: %w", p.Name, err)
	}
	p.runStart = info.Size()
	fmt.Fprintf(log, "=== %s: %s %s\n", time.Now().Format(time.RFC3339Nano), p.bin, strings.Join(p.args, " "))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Dir = p.dir
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("start %s (%s): %w", p.Name, p.bin, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.waitErr = cmd, done, nil
	go func() {
		err := cmd.Wait()
		log.Close()
		p.mu.Lock()
		p.waitErr = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// exited reports whether the current run has ended, and how.
func (p *Process) exited() (bool, error) {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return true, errors.New("never started")
	}
	select {
	case <-done:
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.waitErr == nil {
			return true, errors.New("exited with status 0")
		}
		return true, p.waitErr
	default:
		return false, nil
	}
}

// Kill sends SIGKILL to the process group and waits for the process to exit: a crash, as far as
// the rest of the cluster can tell.
func (p *Process) Kill() error { return p.stop(0) }

// Stop asks the process group to terminate (SIGTERM) and kills it after grace.
func (p *Process) Stop(grace time.Duration) error { return p.stop(grace) }

func (p *Process) stop(grace time.Duration) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	default:
	}
	pgid := cmd.Process.Pid // Setpgid: the group id is the child's pid
	if grace > 0 {
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-done:
			return nil
		case <-time.After(grace):
		}
	}
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill %s (process group %d): %w", p.Name, pgid, err)
	}
	select {
	case <-done:
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("%s (pid %d) did not exit 30s after SIGKILL", p.Name, pgid)
	}
}

// Restart starts the process again with the same command line after it has stopped.
func (p *Process) Restart() error { return p.start() }

// Tail returns the last n lines of the process's log.
func (p *Process) Tail(n int) string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", p.LogPath, err)
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// RunLog returns what the current (or last) run has logged so far: the log from the line that
// started it, without the earlier runs.
func (p *Process) RunLog() (string, error) {
	p.mu.Lock()
	from := p.runStart
	p.mu.Unlock()
	f, err := os.Open(p.LogPath)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return "", err
	}
	b, err := io.ReadAll(f)
	return string(b), err
}

// Running reports whether the process is running.
func (p *Process) Running() bool {
	exited, _ := p.exited()
	return !exited
}

// describe is the tail of the log, for error messages.
func (p *Process) describe() string {
	return fmt.Sprintf("--- last lines of %s (%s) ---\n%s\n--- end of %s log ---", p.Name, p.LogPath, p.Tail(40), p.Name)
}

func (p *Process) title() string { return p.Name }

// watched is what waitFor watches while it polls: a process, or several.
type watched interface {
	// exited reports whether waiting is pointless: the process (every process) has exited.
	exited() (bool, error)
	// describe is the tail of the log(s), for error messages.
	describe() string
	title() string
}

// processes are watched together: waiting fails only once every one of them has exited, as
// replicas behind a Service, any of which may answer.
type processes []*Process

func (ps processes) exited() (bool, error) {
	var errs []error
	for _, p := range ps {
		exited, err := p.exited()
		if !exited {
			return false, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", p.Name, err))
	}
	return true, errors.Join(errs...)
}

func (ps processes) describe() string {
	var parts []string
	for _, p := range ps {
		parts = append(parts, p.describe())
	}
	return strings.Join(parts, "\n")
}

func (ps processes) title() string {
	var names []string
	for _, p := range ps {
		names = append(names, p.Name)
	}
	return strings.Join(names, ", ")
}

// waitFor polls check until it succeeds, the process exits, ctx ends or timeout passes. The error
// says what was awaited, the last failure of check and the tail of the process's log.
func waitFor(ctx context.Context, p watched, what string, timeout time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		attemptCtx, cancelAttempt := context.WithTimeout(ctx, 10*time.Second)
		last = check(attemptCtx)
		cancelAttempt()
		if last == nil {
			return nil
		}
		if exited, err := p.exited(); exited {
			return fmt.Errorf("%s exited (%v) while waiting for %s (last check: %v)\n%s", p.title(), err, what, last, p.describe())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %s not reached within %s (last check: %v)\n%s", p.title(), what, timeout, last, p.describe())
		case <-tick.C:
		}
	}
}

// Pid is the process ID of the current run (0 when it is not running).
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// runningPID is Pid, or an error naming the process when it is not running.
func (p *Process) runningPID() (int, error) {
	if pid := p.Pid(); pid != 0 {
		return pid, nil
	}
	return 0, fmt.Errorf("%s is not running", p.Name)
}

// PeakRSS is the largest resident set the running process has had (VmHWM), in bytes.
func (p *Process) PeakRSS() (int64, error) {
	pid, err := p.runningPID()
	if err != nil {
		return 0, err
	}
	m, err := procstat.ReadMemory(pid)
	return m.Peak, err
}

// CPUTime is the CPU time (user and system) the running process has used so far.
func (p *Process) CPUTime() (time.Duration, error) {
	pid, err := p.runningPID()
	if err != nil {
		return 0, err
	}
	return procstat.CPUTime(pid)
}
