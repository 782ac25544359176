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
