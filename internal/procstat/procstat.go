// Package procstat reads what Linux's /proc says about a process: its CPU time, its memory and
// its children. The tests and benchmarks that measure a server as an OS process (its CPU per
// request, its peak RSS) and the PostgreSQL behind it read them here, in one way, and pglocal
// finds the processes of the PostgreSQL it runs.
package procstat

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of /proc/<pid>/stat's times: USER_HZ, 100 per second on every Linux
// architecture Go supports.
const clockTick = 10 * time.Millisecond

// stat is /proc/<pid>/stat: the command name and the fields after it. The name is in parentheses
// and may hold spaces and parentheses itself, so the fields start after the last ')'.
type stat struct {
	comm   string
	fields []string // fields[0] is the state, field 3 of proc(5); field n is fields[n-3]
}

func readStat(pid int) (stat, error) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return stat{}, err
	}
	s := string(data)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return stat{}, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	st := stat{comm: s[open+1 : end], fields: strings.Fields(s[end+1:])}
	// cstime, field 17, is the last one read here.
	if len(st.fields) < 17-2 {
		return stat{}, fmt.Errorf("/proc/%d/stat: %d fields after the command name", pid, len(st.fields))
	}
	return st, nil
}

// ppid is field 4 of proc(5), the parent's process ID (0 for the kernel's own first ones).
func (st stat) ppid() int {
	pid, _ := strconv.Atoi(st.fields[4-3])
	return pid
}

// ticks sums fields from..to of proc(5) (1-based, inclusive), each a count of clock ticks.
func (st stat) ticks(from, to int) (time.Duration, error) {
	var n int64
	for _, f := range st.fields[from-3 : to-2] {
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc stat field %q: %w", f, err)
		}
		n += v
	}
	return time.Duration(n) * clockTick, nil
}

// CPUTime is the CPU time, user and system (utime and stime), process pid has used so far.
func CPUTime(pid int) (time.Duration, error) {
	st, err := readStat(pid)
	if err != nil {
		return 0, err
	}
	return st.ticks(14, 15)
}

// Process is what /proc/<pid>/stat says of who a process is.
type Process struct {
	// Comm is the command name (the executable's, at most 15 bytes).
	Comm string
	// State is proc(5)'s one-letter state: R running, S sleeping, Z zombie, ….
	State string
	// PPID is the parent's process ID.
	PPID int
}

// Lookup reads who process pid is.
func Lookup(pid int) (Process, error) {
	st, err := readStat(pid)
	if err != nil {
		return Process{}, err
	}
	return Process{Comm: st.comm, State: st.fields[0], PPID: st.ppid()}, nil
}

// TreeCPUTime is the CPU time process root and every process descending from it have used so
// far, each one's own plus what its children that have exited and been waited for used (cutime
// and cstime): for a PostgreSQL server's postmaster, that server's CPU, its backends that ended
// meanwhile included, and no other server's. It only grows while root lives (a child's time
// moves into its parent's when it is reaped); an error when root has gone.
func TreeCPUTime(root int) (time.Duration, error) {
	rootStat, err := readStat(root)
	if err != nil {
		return 0, fmt.Errorf("process %d: %w", root, err)
	}
	all, err := processes()
	if err != nil {
		return 0, err
	}
	all[root] = rootStat
	children := map[int][]int{}
	for pid, st := range all {
		if pid != root {
			children[st.ppid()] = append(children[st.ppid()], pid)
		}
	}
	var total time.Duration
	for pending := []int{root}; len(pending) > 0; {
		pid := pending[len(pending)-1]
		pending = append(pending[:len(pending)-1], children[pid]...)
		t, err := all[pid].ticks(14, 17)
		if err != nil {
			return 0, err
		}
		total += t
	}
	return total, nil
}

// Children is the process IDs of process pid's children.
func Children(pid int) ([]int, error) {
	all, err := processes()
	if err != nil {
		return nil, err
	}
	var out []int
	for child, st := range all {
		if st.ppid() == pid {
			out = append(out, child)
		}
	}
	return out, nil
}

// processes is every process /proc lists, by process ID, but those that end while it reads.
func processes() (map[int]stat, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	out := make(map[int]stat, len(entries))
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readStat(pid); err == nil {
			out[pid] = st
		}
	}
	return out, nil
}

// Memory is what /proc/<pid>/status says of a process's resident memory, in bytes.
type Memory struct {
	// RSS is the resident set now (VmRSS); Peak the largest it has been (VmHWM).
	RSS, Peak int64
	// Anon is the part of RSS that is not file-backed (RssAnon): the binary's own pages, which
	// the kernel can drop and read again, are not in it.
	Anon int64
}

// ReadMemory reads process pid's resident memory.
func ReadMemory(pid int) (Memory, error) {
	var m Memory
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return m, err
	}
	found := 0
	for line := range strings.Lines(string(data)) {
		name, value, ok := strings.Cut(line, ":")
		var into *int64
		switch {
		case !ok:
			continue
		case name == "VmRSS":
			into = &m.RSS
		case name == "VmHWM":
			into = &m.Peak
		case name == "RssAnon":
			into = &m.Anon
		default:
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(value), "kB")), 10, 64)
		if err != nil {
			return m, fmt.Errorf("/proc/%d/status: %s: %w", pid, strings.TrimSpace(line), err)
		}
		*into = kb << 10
		found++
	}
	if found < 3 {
		return m, fmt.Errorf("/proc/%d/status: no VmRSS, VmHWM or RssAnon (a kernel thread, or not Linux)", pid)
	}
	return m, nil
}
