//! What the load generator reads about itself and about the proxy under test:
//! CPU time (utime+stime from /proc/PID/stat), VmHWM/VmRSS, clear_refs.

use std::io;
use std::time::Duration;

/// utime + stime of a whole process (all its threads), in clock ticks.
pub fn cpu_ticks(pid: u32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may contain spaces and ')': split after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).ok_or_else(|| io::Error::other("bad /proc/PID/stat"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    let get = |i: usize| -> io::Result<u64> {
        f.get(i).and_then(|v| v.parse().ok()).ok_or_else(|| io::Error::other("bad /proc/PID/stat"))
    };
    Ok(get(11)? + get(12)?)
}

pub fn clk_tck() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// Sum of utime+stime over the given processes, in seconds.
pub fn cpu_seconds(pids: &[u32]) -> io::Result<f64> {
    let mut ticks = 0;
    for &p in pids {
        ticks += cpu_ticks(p)?;
    }
    Ok(ticks as f64 / clk_tck() as f64)
}

/// A `Vm*:` field of /proc/PID/status, in KiB.
pub fn status_kib(pid: u32, field: &str) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    for line in status.lines() {
        if let Some(v) = line.strip_prefix(field).and_then(|v| v.strip_prefix(':')) {
            let v = v.trim().trim_end_matches("kB").trim();
            return v.parse().map_err(|_| io::Error::other(format!("bad {field} in /proc/{pid}/status")));
        }
    }
    Err(io::Error::other(format!("no {field} in /proc/{pid}/status")))
}

pub fn sum_status_kib(pids: &[u32], field: &str) -> io::Result<u64> {
    let mut sum = 0;
    for &p in pids {
        sum += status_kib(p, field)?;
    }
    Ok(sum)
}

/// Reset the peak RSS (VmHWM) of a process: `echo 5 > /proc/PID/clear_refs`.
pub fn reset_hwm(pids: &[u32]) -> io::Result<()> {
    for &p in pids {
        std::fs::write(format!("/proc/{p}/clear_refs"), b"5")
            .map_err(|e| io::Error::new(e.kind(), format!("/proc/{p}/clear_refs: {e}")))?;
    }
    Ok(())
}

/// CPU time (user + system) used by this process so far.
pub fn self_cpu() -> Duration {
    // SAFETY: getrusage writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Raise the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit.
pub fn raise_nofile() -> u64 {
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        let mut rl: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return 0;
        }
        if rl.rlim_cur < rl.rlim_max {
            let want = libc::rlimit { rlim_cur: rl.rlim_max, rlim_max: rl.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                return want.rlim_cur as u64;
            }
        }
        rl.rlim_cur as u64
    }
}
