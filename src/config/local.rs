//! This machine, as dep names it in lock holders and the releases log: who runs dep, and where.

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
