//! Who owns an in-flight message, and whether that process still lives.
//!
//! A consumer records its host identity, pid and (on Linux) the process start
//! time from `/proc/<pid>/stat`. Another consumer on the same host (same
//! hostname, boot and pid namespace) can then tell for sure that the owner is
//! gone: no such pid, a zombie, or a pid reused by a process started at
//! another time. Anywhere else the answer is "unknown" and the lease timeout
//! decides.

use std::sync::OnceLock;

/// This process, as recorded in the `consumers` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcessIdentity {
    /// Hostname, plus on Linux the boot id and the pid namespace: a pid means
    /// the same process only where all three match.
    pub host: String,
    /// The process id.
    pub pid: u32,
    /// The start time in clock ticks since boot (Linux), if known.
    pub start: Option<u64>,
}

/// Whether the owner of an in-flight message is still running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// Running (or cannot be ruled out on this host).
    Alive,
    /// Certainly gone: its messages can be taken back at once.
    Dead,
    /// Another host, or no way to know: only the lease decides.
    Unknown,
}

/// This process.
pub(crate) fn current() -> &'static ProcessIdentity {
    static CURRENT: OnceLock<ProcessIdentity> = OnceLock::new();
    CURRENT.get_or_init(|| {
        let pid = std::process::id();
        ProcessIdentity {
            host: host_identity(),
            pid,
            start: stat(pid).ok().and_then(|s| s.start),
        }
    })
}

fn host_identity() -> String {
    let hostname = gethostname::gethostname().to_string_lossy().into_owned();
    if cfg!(target_os = "linux") {
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let pidns = std::fs::read_link("/proc/self/ns/pid")
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!("{hostname}|{boot}|{pidns}")
    } else {
        hostname
    }
}

/// What `/proc/<pid>/stat` says.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
struct Stat {
    /// Zombie or dead: the process has exited.
    exited: bool,
    start: Option<u64>,
}

#[cfg(target_os = "linux")]
fn stat(pid: u32) -> std::io::Result<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    Ok(parse_stat(&text))
}

#[cfg(not(target_os = "linux"))]
fn stat(_pid: u32) -> std::io::Result<Stat> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "no /proc on this system",
    ))
}

/// Fields after the command name (which may hold spaces and parentheses):
/// field 3 is the state, field 22 the start time.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_stat(text: &str) -> Stat {
    let rest = text.rfind(')').map_or("", |i| &text[i + 1..]);
    let mut fields = rest.split_whitespace();
    let state = fields.next().unwrap_or("");
    let start = fields.nth(18).and_then(|s| s.parse().ok());
    Stat {
        exited: matches!(state, "Z" | "X" | "x"),
        start,
    }
}

/// Whether the process recorded as (`host`, `pid`, `start`) still runs.
pub(crate) fn liveness(host: &str, pid: i64, start: Option<i64>) -> Liveness {
    let me = current();
    if host != me.host || me.start.is_none() {
        // Another machine or container, or no /proc here: only the lease tells.
        return Liveness::Unknown;
    }
    let Ok(pid) = u32::try_from(pid) else {
        return Liveness::Unknown;
    };
    match stat(pid) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Liveness::Dead,
        Err(_) => Liveness::Unknown,
        Ok(s) if s.exited => Liveness::Dead,
        Ok(s) => match (start.and_then(|v| u64::try_from(v).ok()), s.start) {
            (Some(recorded), Some(now)) if recorded != now => Liveness::Dead,
            _ => Liveness::Alive,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_state_and_start_time_after_odd_command_names() {
        let line = "1234 (a (weird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        let s = parse_stat(line);
        assert!(!s.exited);
        assert_eq!(s.start, Some(987654));
        let z = parse_stat("99 (x) Z 1 99 99 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0");
        assert!(z.exited);
        assert_eq!(z.start, Some(5));
        let junk = parse_stat("garbage");
        assert!(!junk.exited);
        assert_eq!(junk.start, None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_alive_and_a_reused_pid_is_not() {
        let me = current();
        let start = me.start.map(|s| s as i64);
        assert_eq!(liveness(&me.host, i64::from(me.pid), start), Liveness::Alive);
        assert_eq!(
            liveness(&me.host, i64::from(me.pid), start.map(|s| s + 1)),
            Liveness::Dead
        );
        assert_eq!(liveness("elsewhere", i64::from(me.pid), start), Liveness::Unknown);
        // pid_max is at most 2^22 on Linux.
        assert_eq!(liveness(&me.host, 4_194_304 + 17, None), Liveness::Dead);
    }
}
