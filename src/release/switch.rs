//! The links a release switch moves, as shell commands: `current` and `previous` are replaced by
//! renaming a temporary symlink over them, so neither is ever missing or half-made.

use crate::quote::quote;

/// Point `current` at `releases/NEW` and `previous` at the release that was current. Both links
/// are relative, so the deploy path can move.
pub fn switch_command(deploy_path: &str, new: &str, old: Option<&str>) -> String {
    let mut script = format!(
        "cd {dp} && [ -d releases/{new} ] && ",
        dp = quote(deploy_path),
        new = quote(new)
    );
    if let Some(old) = old.filter(|o| *o != new) {
        script.push_str(&format!("{} && ", link("previous", old)));
    }
    script.push_str(&link("current", new));
    script
}

/// Put `current` and `previous` back where they pointed (None: the link did not exist).
pub fn revert_command(deploy_path: &str, current: Option<&str>, previous: Option<&str>) -> String {
    let restore = |name: &str, target: Option<&str>| match target {
        Some(t) => link(name, t),
        None => format!("rm -f {name}"),
    };
    format!(
        "cd {} && {} && {}",
        quote(deploy_path),
        restore("current", current),
        restore("previous", previous)
    )
}

/// Where a host keeps the id of a switch that awaits the fleet's confirmation.
const PENDING: &str = ".dep/switch.pending";

/// The dead man's switch, armed on a host right before its switch to `new`: after `seconds`,
/// unless [`disarm_command`] removed the pending id, a process of its own puts the links back
/// with `revert` (when `current` still points at `new`) and appends `log`. It runs in a process
/// group of its own (`set -m`), so that what kills the session's commands when the controller
/// dies does not kill it too.
pub fn arm_command(
    deploy_path: &str,
    id: &str,
    seconds: u64,
    new: &str,
    revert: &str,
    log: &str,
) -> String {
    let guard = format!(
        "sleep {seconds}; cd {dp} || exit 0\n\
         [ \"$(cat {PENDING} 2>/dev/null)\" = {id} ] || exit 0\n\
         if [ \"$(readlink current)\" = releases/{new} ]; then {revert} && {log}; fi\n\
         rm -f {PENDING}\n",
        dp = quote(deploy_path),
        id = quote(id),
        new = quote(new),
    );
    format!(
        "printf '%s\\n' {id} > {dp}/{PENDING} && (set -m; bash -c {guard} >/dev/null 2>&1 </dev/null &)",
        id = quote(id),
        dp = quote(deploy_path),
        guard = quote(&guard),
    )
}

/// The fleet's confirmation: the switch with `id` stays.
pub fn disarm_command(deploy_path: &str, id: &str) -> String {
    format!(
        "cd {dp} && if [ \"$(cat {PENDING} 2>/dev/null)\" = {id} ]; then rm -f {PENDING}; fi",
        dp = quote(deploy_path),
        id = quote(id)
    )
}

/// `name` -> releases/TARGET, atomically.
fn link(name: &str, target: &str) -> String {
    format!(
        "ln -sfn releases/{t} {name}.dep-tmp && mv -fT {name}.dep-tmp {name}",
        t = quote(target)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, dir: &std::path::Path) {
        let status = std::process::Command::new("bash")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .status()
            .unwrap();
        assert!(status.success(), "{script}");
    }

    fn target(dir: &std::path::Path, link: &str) -> Option<String> {
        std::fs::read_link(dir.join(link))
            .ok()
            .map(|t| t.display().to_string())
    }

    #[test]
    fn an_unconfirmed_switch_puts_the_links_back_by_itself_and_a_confirmed_one_stays() {
        let dir = tempfile::tempdir().unwrap();
        let dp = dir.path().display().to_string();
        std::fs::create_dir_all(dir.path().join(".dep")).unwrap();
        for r in ["20260101000000", "20260102000000"] {
            std::fs::create_dir_all(dir.path().join("releases").join(r)).unwrap();
        }
        sh(&switch_command(&dp, "20260101000000", None), dir.path());
        let revert = revert_command(&dp, Some("20260101000000"), None);
        let log = "echo reverted >> .dep/releases.log";
        let switch = |id: &str| {
            format!(
                "{} && {}",
                arm_command(&dp, id, 1, "20260102000000", &revert, log),
                switch_command(&dp, "20260102000000", Some("20260101000000"))
            )
        };
        // Confirmed: it stays.
        sh(&switch("a1"), dir.path());
        sh(&disarm_command(&dp, "a1"), dir.path());
        std::thread::sleep(std::time::Duration::from_millis(1600));
        assert_eq!(
            target(dir.path(), "current").as_deref(),
            Some("releases/20260102000000")
        );
        // Never confirmed: back to where it was, by itself.
        sh(&revert, dir.path());
        sh(&switch("b2"), dir.path());
        assert_eq!(
            target(dir.path(), "current").as_deref(),
            Some("releases/20260102000000")
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        // The guard's last step removes the pending id: then all it does is done.
        while dir.path().join(PENDING).exists() {
            assert!(std::time::Instant::now() < deadline, "never reverted");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert_eq!(
            target(dir.path(), "current").as_deref(),
            Some("releases/20260101000000")
        );
        assert_eq!(target(dir.path(), "previous"), None);
        assert!(!dir.path().join(PENDING).exists());
        let log = std::fs::read_to_string(dir.path().join(".dep/releases.log")).unwrap();
        assert_eq!(log, "reverted\n");
    }

    #[test]
    fn switch_then_revert_restores_both_links() {
        let dir = tempfile::tempdir().unwrap();
        let dp = dir.path().display().to_string();
        for r in ["20260101000000", "20260102000000"] {
            std::fs::create_dir_all(dir.path().join("releases").join(r)).unwrap();
        }
        sh(&switch_command(&dp, "20260101000000", None), dir.path());
        assert_eq!(
            target(dir.path(), "current").as_deref(),
            Some("releases/20260101000000")
        );
        assert_eq!(target(dir.path(), "previous"), None);
        sh(
            &switch_command(&dp, "20260102000000", Some("20260101000000")),
            dir.path(),
        );
        assert_eq!(
            target(dir.path(), "current").as_deref(),
            Some("releases/20260102000000")
        );
        assert_eq!(
            target(dir.path(), "previous").as_deref(),
            Some("releases/20260101000000")
        );
        sh(
            &revert_command(&dp, Some("20260101000000"), None),
            dir.path(),
        );
        assert_eq!(
            target(dir.path(), "current").as_deref(),
            Some("releases/20260101000000")
        );
        assert_eq!(target(dir.path(), "previous"), None);
    }

    #[test]
    fn a_missing_release_is_never_switched_to() {
        let dir = tempfile::tempdir().unwrap();
        let dp = dir.path().display().to_string();
        let status = std::process::Command::new("bash")
            .arg("-c")
            .arg(switch_command(&dp, "20260101000000", None))
            .status()
            .unwrap();
        assert!(!status.success());
        assert_eq!(target(dir.path(), "current"), None);
    }
}
