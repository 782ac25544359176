//! Finding the processes a test started, by a distinctive word in their command line.

/// How many live (not zombie) processes have `marker` in their command line.
pub fn running_with(marker: &str) -> usize {
    let marker = marker.as_bytes();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let cmdline = std::fs::read(path.join("cmdline")).ok()?;
            let stat = std::fs::read_to_string(path.join("stat")).ok()?;
            let zombie = stat.rsplit(") ").next()?.starts_with('Z');
            (!zombie && cmdline.windows(marker.len()).any(|w| w == marker)).then_some(())
        })
        .count()
}
