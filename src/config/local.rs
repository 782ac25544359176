//! This machine, as dep names it in lock holders and the releases log: who runs dep, and where;
//! and whether a process of a lock holder still runs here.

/// The user running dep on this machine.
pub fn local_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| {
            // SAFETY: getuid has no preconditions and cannot fail.
            let uid = unsafe { libc::getuid() };
            if uid == 0 {
                "root".to_string()
            } else {
                format!("uid{uid}")
            }
        })
}

/// This machine's name, for lock holders and the releases log.
pub fn local_machine() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// Where this process's pid means something: the boot (a reboot reuses pids) and the pid
/// namespace (a container has its own), on Linux; empty where neither can be read.
pub fn pid_space() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let namespace = std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    if boot.trim().is_empty() && namespace.is_empty() {
        return String::new();
    }
    format!("{}/{namespace}", boot.trim())
}

/// Whether a process `pid` runs on this machine (one of another user counts).
pub fn process_running(pid: u32) -> bool {
    // 0 and negative pids name process groups, not a process.
    let pid = match libc::pid_t::try_from(pid) {
        Ok(pid) if pid > 0 => pid,
        _ => return false,
    };
    // SAFETY: kill(2) with signal 0 sends nothing; it only checks that the process exists.
    if unsafe { libc::kill(pid, 0) } == 0 {
        return true;
    }
    std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_runs_and_a_reaped_child_does_not() {
        assert!(process_running(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!process_running(pid));
        assert!(!process_running(0));
    }
}
