//! `dep deploy` on a fleet of local hosts: release names, links, the releases log, shared and
//! writable paths, cleanup, task options (`once`, `local`, `roles`, hooks), dry runs, variable
//! precedence, dynamic variables and the git strategy.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::support::git::git;
use crate::support::project::{TestProject, T1, T2, T3, T4};

const HOSTS: [&str; 3] = ["h1", "h2", "h3"];

/// The lines of a file in the project (none when it does not exist).
fn lines(project: &TestProject, rel: &str) -> Vec<String> {
    project
        .read(rel)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn three_deploys_share_names_and_switch_every_host() {
    let project = TestProject::new().fleet(3);
    let r1 = project.deploy_at(T1);
    let r2 = project.deploy_at(T2);
    let r3 = project.deploy_at(T3);
    assert_eq!([r1.as_str(), r2.as_str(), r3.as_str()], [T1, T2, T3]);
    for host in HOSTS {
        assert_eq!(project.releases(host), [T1, T2, T3], "{host}");
        assert_eq!(project.current(host).as_deref(), Some(T3), "{host}");
        assert_eq!(project.previous(host).as_deref(), Some(T2), "{host}");
        for release in [T1, T2, T3] {
            assert_eq!(
                project.last_status(host, release).as_deref(),
                Some("live"),
                "{host} {release}"
            );
        }
        // The log is append-only: each release was `prepared` before it went `live`.
        let statuses: Vec<(String, String)> = project
            .log(host)
            .iter()
            .map(|e| {
                (
                    e["release"].as_str().unwrap().to_string(),
                    e["status"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let expected: Vec<(String, String)> = [T1, T2, T3]
            .iter()
            .flat_map(|r| {
                [
                    (r.to_string(), "prepared".into()),
                    (r.to_string(), "live".into()),
                ]
            })
            .collect();
        assert_eq!(statuses, expected, "{host}");
        let live = project.last_entry(host, T3).unwrap();
        assert!(
            live["user"].as_str().unwrap().contains('@'),
            "user is who@machine: {live}"
        );
        assert!(live["started_at"].is_string() && live["finished_at"].is_string());
        // The code is in place behind `current`, and no lock is left behind.
        let index = project.deploy_path(host).join("current/index.html");
        assert_eq!(fs::read_to_string(index).unwrap(), "hello\n");
        assert!(!project.locked(host), "{host} still locked");
    }
}

#[test]
fn a_taken_release_name_moves_one_second_later() {
    let project = TestProject::new().fleet(2);
    assert_eq!(project.deploy_at(T1), T1);
    assert_eq!(project.deploy_at(T1), "20250101100001");
    assert_eq!(project.deploy_at(T1), "20250101100002");
    for host in ["h1", "h2"] {
        assert_eq!(
            project.releases(host),
            [T1, "20250101100001", "20250101100002"]
        );
    }
}

#[test]
fn shared_paths_are_seeded_from_the_first_release_and_linked() {
    let project = TestProject::new()
        .fleet(2)
        .config("shared_dirs", r#"["storage", "var/data"]"#)
        .config("shared_files", r#"[".env"]"#)
        .file("app/storage/seed.txt", "seed v1\n")
        .file("app/.env", "APP_ENV=one\n");
    project.deploy_at(T1);
    for host in ["h1", "h2"] {
        let dp = project.deploy_path(host);
        let shared = dp.join("shared");
        assert_eq!(
            fs::read_to_string(shared.join("storage/seed.txt")).unwrap(),
            "seed v1\n"
        );
        assert_eq!(
            fs::read_to_string(shared.join(".env")).unwrap(),
            "APP_ENV=one\n"
        );
        // A shared dir missing from the code is created empty.
        assert!(shared.join("var/data").is_dir(), "{host}: var/data");
        let release = dp.join("releases").join(T1);
        for (rel, target) in [
            ("storage", shared.join("storage")),
            ("var/data", shared.join("var/data")),
            (".env", shared.join(".env")),
        ] {
            let link = release.join(rel);
            let meta = fs::symlink_metadata(&link).unwrap();
            assert!(meta.file_type().is_symlink(), "{host}: {rel} is a link");
            assert_eq!(
                fs::canonicalize(&link).unwrap(),
                fs::canonicalize(&target).unwrap()
            );
        }
        // What the running app writes lives in shared/.
        fs::write(shared.join("storage/upload.txt"), "user data\n").unwrap();
    }
    // A new release: shared content is kept, never overwritten by the new code.
    project.write("app/storage/seed.txt", "seed v2\n");
    project.write("app/.env", "APP_ENV=two\n");
    project.deploy_at(T2);
    for host in ["h1", "h2"] {
        let current = project.deploy_path(host).join("current");
        assert_eq!(
            fs::read_to_string(current.join("storage/seed.txt")).unwrap(),
            "seed v1\n"
        );
        assert_eq!(
            fs::read_to_string(current.join("storage/upload.txt")).unwrap(),
            "user data\n"
        );
        assert_eq!(
            fs::read_to_string(current.join(".env")).unwrap(),
            "APP_ENV=one\n"
        );
    }
}

#[test]
fn writable_dirs_exist_and_are_group_writable() {
    let project = TestProject::new()
        .fleet(2)
        .config("writable_dirs", r#"["var/cache", "var/log"]"#)
        .file("app/var/cache/.keep", "");
    project.deploy_at(T1);
    for host in ["h1", "h2"] {
        for dir in ["var/cache", "var/log"] {
            let path = project.deploy_path(host).join("current").join(dir);
            let mode = fs::metadata(&path)
                .unwrap_or_else(|e| panic!("{host}: {dir}: {e}"))
                .permissions()
                .mode();
            assert!(path.is_dir());
            assert_eq!(mode & 0o770, 0o770, "{host}: {dir} mode {mode:o}");
        }
    }
}

#[test]
fn cleanup_keeps_releases_and_never_removes_current_or_previous() {
    let project = TestProject::new().fleet(3).config("keep_releases", "2");
    for now in [T1, T2, T3, T4] {
        project.deploy_at(now);
    }
    for host in HOSTS {
        assert_eq!(project.releases(host), [T3, T4], "{host}");
        assert_eq!(project.current(host).as_deref(), Some(T4));
        assert_eq!(project.previous(host).as_deref(), Some(T3));
    }
}

#[test]
fn cleanup_below_two_still_keeps_previous() {
    let project = TestProject::new().fleet(2).config("keep_releases", "1");
    for now in [T1, T2, T3] {
        project.deploy_at(now);
    }
    for host in ["h1", "h2"] {
        assert_eq!(project.releases(host), [T2, T3], "{host}");
        assert_eq!(project.previous(host).as_deref(), Some(T2));
    }
}

#[test]
fn cleanup_after_a_rollback_keeps_the_old_current_as_previous() {
    let project = TestProject::new().fleet(2).config("keep_releases", "2");
    for now in [T1, T2, T3] {
        project.deploy_at(now);
    }
    project.run(&["rollback", "test"]).success();
    // current = T2, previous = T3 (rolled back); the next deploy makes T2 previous.
    let r4 = project.deploy_at(T4);
    for host in ["h1", "h2"] {
        assert_eq!(project.current(host).as_deref(), Some(r4.as_str()));
        assert_eq!(project.previous(host).as_deref(), Some(T2));
        assert_eq!(project.releases(host), [T2, T4], "{host}");
    }
}

#[test]
fn a_once_task_runs_on_exactly_one_host() {
    let project = TestProject::new().fleet(3).deployfile(
        r#"
[tasks.migrate]
once = true
run = "echo {{ host }} >> {{ (deployfile_dir ~ '/once.log')|quote }}"
after = "deploy:update_code"
"#,
    );
    project.deploy_at(T1);
    let ran = lines(&project, "once.log");
    assert_eq!(ran.len(), 1, "once.log: {ran:?}");
    assert!(HOSTS.contains(&ran[0].as_str()), "{ran:?}");
    project.deploy_at(T2);
    assert_eq!(lines(&project, "once.log").len(), 2);
}

#[test]
fn a_local_task_runs_once_on_the_controller() {
    let project = TestProject::new().fleet(3).deployfile(
        r#"
[tasks."assets:build"]
local = true
run = "echo built-for-{{ release_name }} >> {{ (deployfile_dir ~ '/local.log')|quote }}"
after = "deploy:update_code"
"#,
    );
    project.deploy_at(T1);
    assert_eq!(lines(&project, "local.log"), [format!("built-for-{T1}")]);
}

#[test]
fn a_task_with_roles_runs_only_on_hosts_with_one_of_them() {
    let project = TestProject::new()
        .fleet(3)
        .roles("h1", &["web"])
        .roles("h2", &["db"])
        .roles("h3", &["web", "db"])
        .deployfile(
            r#"
[tasks."web:only"]
roles = ["web"]
run = "touch {{ (release_path ~ '/web-marker')|quote }}"
after = "deploy:update_code"
"#,
        );
    project.deploy_at(T1);
    let marked = |host: &str| {
        project
            .deploy_path(host)
            .join("current/web-marker")
            .exists()
    };
    assert!(marked("h1"));
    assert!(!marked("h2"));
    assert!(marked("h3"));
}

#[test]
fn a_role_selector_deploys_only_to_matching_hosts() {
    let project = TestProject::new()
        .fleet(3)
        .roles("h1", &["web"])
        .roles("h2", &["db"])
        .roles("h3", &["web", "db"]);
    project
        .run_env(&["deploy", "role=db"], &[("DEP_NOW", T1)])
        .success();
    assert!(!project.deploy_path("h1").exists(), "h1 was touched");
    assert_eq!(project.current("h2").as_deref(), Some(T1));
    assert_eq!(project.current("h3").as_deref(), Some(T1));
}

#[test]
fn hooks_run_before_and_after_their_task() {
    let project = TestProject::new().fleet(2).deployfile(
        r#"
[tasks."hook:before_switch"]
run = "echo \"before $(readlink {{ current_path|quote }} || echo none)\" >> {{ (deployfile_dir ~ '/hooks-' ~ host)|quote }}"
before = "deploy:symlink"

[tasks."hook:after_switch"]
run = "echo \"after $(readlink {{ current_path|quote }})\" >> {{ (deployfile_dir ~ '/hooks-' ~ host)|quote }}"
after = "deploy:symlink"

[tasks."hook:code_is_there"]
run = "test -f {{ (release_path ~ '/index.html')|quote }} && echo code >> {{ (deployfile_dir ~ '/hooks-' ~ host)|quote }}"
after = "deploy:update_code"
"#,
    );
    project.deploy_at(T1);
    project.deploy_at(T2);
    for host in ["h1", "h2"] {
        assert_eq!(
            lines(&project, &format!("hooks-{host}")),
            [
                "code".to_string(),
                "before none".into(),
                format!("after releases/{T1}"),
                "code".into(),
                format!("before releases/{T1}"),
                format!("after releases/{T2}"),
            ],
            "{host}"
        );
    }
}

#[test]
fn dry_run_prints_each_hosts_commands_and_changes_nothing() {
    let project = TestProject::new().fleet(3).deployfile(
        r#"
[tasks."app:build"]
run = "echo building > {{ (deployfile_dir ~ '/built')|quote }}"
after = "deploy:update_code"
"#,
    );
    let output = project.run_env(&["deploy", "test", "--dry-run"], &[("DEP_NOW", T1)]);
    output.success();
    for host in HOSTS {
        let dp = project.deploy_path(host).display().to_string();
        for expected in [
            format!(
                "[{host}] deploy:setup\n[{host}]   mkdir -p {dp}/releases {dp}/shared {dp}/.dep"
            ),
            format!("[{host}] deploy:release\n[{host}]   mkdir {dp}/releases/{T1} "),
            format!("[{host}] app:build\n[{host}]   echo building > "),
            format!("[{host}] deploy:symlink"),
        ] {
            output.stdout_has(&expected);
        }
        assert!(!project.deploy_path(host).exists(), "{host} created");
    }
    assert!(!project.join("hosts").exists());
    assert!(!project.join("built").exists());
}

#[test]
fn variable_precedence_config_stage_host_environment_option() {
    let base = TestProject::new().fleet(2).config("greeting", "\"config\"");
    let task = r#"
[tasks.greet]
run = "echo {{ greeting|quote }} > {{ (deployfile_dir ~ '/greeting-' ~ host)|quote }}"
"#;
    let greetings = |project: &TestProject| -> Vec<String> {
        ["h1", "h2"]
            .iter()
            .map(|h| {
                project
                    .read(&format!("greeting-{h}"))
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            })
            .collect()
    };
    let project = base.deployfile(task);
    project.run(&["greet", "test"]).success();
    assert_eq!(greetings(&project), ["config", "config"]);

    let project = project.deployfile("[stages.test.config]\ngreeting = \"stage\"\n");
    project.run(&["greet", "test"]).success();
    assert_eq!(greetings(&project), ["stage", "stage"]);

    let project = project.host_config("h2", "greeting", "\"host\"");
    project.run(&["greet", "test"]).success();
    assert_eq!(greetings(&project), ["stage", "host"]);

    project
        .run_env(&["greet", "test"], &[("DEP_GREETING", "environment")])
        .success();
    assert_eq!(greetings(&project), ["environment", "environment"]);

    project
        .run_env(
            &["greet", "test", "-o", "greeting=option=with=equals"],
            &[("DEP_GREETING", "environment")],
        )
        .success();
    assert_eq!(
        greetings(&project),
        ["option=with=equals", "option=with=equals"]
    );
}

#[test]
fn dynamic_variables_a_step_needs_are_evaluated_together_layer_by_layer() {
    // Each command records the shell that evaluated it: `$$` is the evaluating script's pid.
    let record = |name: &str| {
        format!(
            r#"{{ run = "echo {name} $$ >> {{{{ (deployfile_dir ~ '/shells-' ~ host)|quote }}}}; echo {name}-value" }}"#
        )
    };
    let project = TestProject::new()
        .fleet(2)
        .config("php", &record("php"))
        .config("composer", &record("composer"))
        .config(
            "both",
            r#"{ run = "echo both $$ >> {{ (deployfile_dir ~ '/shells-' ~ host)|quote }}; echo {{ php }}+{{ composer }}" }"#,
        )
        .deployfile(
            r#"
[tasks."use:all"]
run = "echo {{ php|quote }} {{ composer|quote }} {{ both|quote }} > {{ (release_path ~ '/used')|quote }}"
after = "deploy:update_code"
"#,
        );
    project.deploy_at(T1);
    for host in ["h1", "h2"] {
        let shells = lines(&project, &format!("shells-{host}"));
        let pid = |name: &str| {
            shells
                .iter()
                .find_map(|line| line.strip_prefix(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} was not evaluated on {host}: {shells:?}"))
                .to_string()
        };
        assert_eq!(shells.len(), 3, "{host}: {shells:?}");
        // `php` and `composer` need nothing else: one script; `both` needs their values.
        assert_eq!(pid("php"), pid("composer"), "{host}: {shells:?}");
        assert_ne!(pid("php"), pid("both"), "{host}: {shells:?}");
        assert_eq!(
            fs::read_to_string(project.deploy_path(host).join("current/used")).unwrap(),
            "php-value composer-value php-value+composer-value\n"
        );
    }
}

#[test]
fn a_dynamic_variable_is_evaluated_once_per_host() {
    let project = TestProject::new()
        .fleet(3)
        .config(
            "stamp",
            r#"{ run = "echo x >> {{ (deployfile_dir ~ '/evaluated-' ~ host)|quote }}; echo value-of-{{ host }}" }"#,
        )
        .deployfile(
            r#"
[tasks."use:one"]
run = "echo {{ stamp|quote }} > {{ (release_path ~ '/one')|quote }}"
after = "deploy:update_code"

[tasks."use:two"]
run = "echo {{ stamp|quote }} > {{ (release_path ~ '/two')|quote }}"
after = "deploy:shared"
"#,
        );
    project.deploy_at(T1);
    for host in HOSTS {
        assert_eq!(
            lines(&project, &format!("evaluated-{host}")),
            ["x"],
            "{host}: evaluations"
        );
        let current = project.deploy_path(host).join("current");
        for file in ["one", "two"] {
            assert_eq!(
                fs::read_to_string(current.join(file)).unwrap(),
                format!("value-of-{host}\n")
            );
        }
    }
}

/// A git repository in the project: `main` with one commit, `feature` one commit ahead.
/// Returns (sha of main, sha of feature).
fn git_repository(project: &TestProject) -> (String, String) {
    let repo = project.join("repo");
    fs::create_dir_all(&repo).unwrap();
    let git = |args: &[&str]| git(&repo, args);
    git(&["init", "-q", "-b", "main"]);
    fs::write(repo.join("index.html"), "main\n").unwrap();
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "first"]);
    let main = git(&["rev-parse", "HEAD"]);
    git(&["checkout", "-q", "-b", "feature"]);
    fs::write(repo.join("index.html"), "feature\n").unwrap();
    git(&["commit", "-q", "-am", "second"]);
    let feature = git(&["rev-parse", "HEAD"]);
    git(&["checkout", "-q", "main"]);
    (main, feature)
}

fn git_project() -> (TestProject, String, String) {
    let project = TestProject::new().fleet(2);
    let (main, feature) = git_repository(&project);
    let repository = format!("{:?}", project.join("repo").display().to_string());
    let project = project
        .config("strategy", "\"git\"")
        .config("repository", &repository);
    (project, main, feature)
}

fn assert_revision(project: &TestProject, release: &str, revision: &str, content: &str) {
    for host in ["h1", "h2"] {
        let dir = project.deploy_path(host).join("releases").join(release);
        assert_eq!(
            fs::read_to_string(dir.join("REVISION")).unwrap().trim(),
            revision,
            "{host}"
        );
        assert_eq!(fs::read_to_string(dir.join("index.html")).unwrap(), content);
        let entry = project.last_entry(host, release).unwrap();
        assert_eq!(entry["revision"], revision, "{host}: {entry}");
        assert_eq!(entry["status"], "live");
    }
}

#[test]
fn git_strategy_deploys_the_default_branch_a_branch_and_a_revision() {
    let (project, main, feature) = git_project();
    let r1 = project.deploy_at(T1);
    assert_revision(&project, &r1, &main, "main\n");
    assert!(project.deploy_path("h1").join(".dep/repo").is_dir());

    project
        .run_env(
            &["deploy", "test", "--branch", "feature"],
            &[("DEP_NOW", T2)],
        )
        .success();
    assert_revision(&project, T2, &feature, "feature\n");
    assert_eq!(project.last_entry("h1", T2).unwrap()["branch"], "feature");

    project
        .run_env(&["deploy", "test", "--revision", &main], &[("DEP_NOW", T3)])
        .success();
    assert_revision(&project, T3, &main, "main\n");
}

#[test]
fn git_branch_with_shell_metacharacters_fails_cleanly() {
    let (project, _, _) = git_project();
    let pwned = project.join("pwned");
    let target = pwned.display().to_string();
    let branches = [
        format!("x;touch {target}"),
        format!("x$(touch {target})"),
        format!("x`touch {target}`"),
        format!("x' ; touch {target}; '"),
        format!("x\"; touch {target}; \""),
        format!("x\ntouch {target}"),
    ];
    for branch in &branches {
        let output = project.run_env(&["deploy", "test", "--branch", branch], &[("DEP_NOW", T1)]);
        assert!(
            output.status == 1 || output.status == 2,
            "branch {branch:?}\n{}",
            output.transcript()
        );
        output.stderr_has(branch.lines().next().unwrap());
        assert!(!pwned.exists(), "branch {branch:?} ran a command");
        for host in ["h1", "h2"] {
            assert_eq!(project.current(host), None, "{host}");
            assert!(!project.locked(host), "{host} left locked");
        }
    }
}

#[test]
fn git_revision_with_shell_metacharacters_is_refused() {
    let (project, _, _) = git_project();
    let pwned = project.join("pwned");
    let revision = format!("HEAD;touch {}", pwned.display());
    let output = project.run_env(
        &["deploy", "test", "--revision", &revision],
        &[("DEP_NOW", T1)],
    );
    assert!(
        output.status == 1 || output.status == 2,
        "{}",
        output.transcript()
    );
    output.stderr_has(&revision);
    assert!(!pwned.exists());
    assert!(!Path::new(&project.deploy_path("h1").join("current")).exists());
}

/// Run git in the project's repository.
fn git_in(project: &TestProject, args: &[&str]) {
    git(&project.join("repo"), args);
}

#[test]
fn git_annotated_tag_records_the_commit() {
    let (project, main, _) = git_project();
    // An annotated tag: its own object id differs from the commit's.
    git_in(&project, &["tag", "-a", "v1", "-m", "version 1"]);
    project
        .run_env(&["deploy", "test", "--tag", "v1"], &[("DEP_NOW", T1)])
        .success();
    assert_revision(&project, T1, &main, "main\n");
}

#[test]
fn git_lightweight_tag_records_the_commit() {
    let (project, main, _) = git_project();
    git_in(&project, &["tag", "v1"]);
    project
        .run_env(&["deploy", "test", "--tag", "v1"], &[("DEP_NOW", T1)])
        .success();
    assert_revision(&project, T1, &main, "main\n");
}

#[test]
fn git_short_revision_is_resolved_to_the_full_commit() {
    let (project, main, _) = git_project();
    project
        .run_env(
            &["deploy", "test", "--revision", &main[..10]],
            &[("DEP_NOW", T1)],
        )
        .success();
    assert_revision(&project, T1, &main, "main\n");
}

#[test]
fn an_unknown_revision_is_refused_before_any_host_changes() {
    let (project, _, _) = git_project();
    let output = project.run_env(
        &[
            "deploy",
            "test",
            "--revision",
            "0123456789abcdef0123456789abcdef01234567",
        ],
        &[("DEP_NOW", T1)],
    );
    assert!(
        output.status == 1 || output.status == 2,
        "{}",
        output.transcript()
    );
    output.stderr_has("0123456789abcdef0123456789abcdef01234567");
    for host in ["h1", "h2"] {
        assert_eq!(project.releases(host), Vec::<String>::new(), "{host}");
        assert!(project.log(host).is_empty(), "{host}");
    }
}

#[test]
fn the_announced_release_name_is_the_one_deployed() {
    let project = TestProject::new().fleet(2);
    project.deploy_at(T1);
    let output = project.run_env(&["deploy", "test"], &[("DEP_NOW", T1)]);
    output.success();
    assert_eq!(project.current("h1").as_deref(), Some("20250101100001"));
    assert!(
        output
            .stdout
            .starts_with("deploying release 20250101100001 to 2 hosts: h1, h2\n"),
        "{}",
        output.transcript()
    );
    output.stdout_has("release 20250101100001 is live");
}

#[test]
fn json_output_is_one_event_per_line() {
    let project = TestProject::new().fleet(2);
    let output = project.run_env(&["deploy", "test", "--json"], &[("DEP_NOW", T1)]);
    output.success();
    let events: Vec<serde_json::Value> = output
        .stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}"))
        })
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().expect("every line has an `event`"))
        .collect();
    assert_eq!(kinds.first(), Some(&"deploy_started"));
    assert_eq!(kinds.last(), Some(&"deploy_finished"));
    assert_eq!(events[0]["release"], T1);
    assert_eq!(events[0]["hosts"], serde_json::json!(["h1", "h2"]));
    let last = events.last().unwrap();
    assert_eq!(
        (&last["release"], &last["ok"]),
        (&serde_json::json!(T1), &serde_json::json!(true))
    );
    for host in ["h1", "h2"] {
        let switched: Vec<&serde_json::Value> = events
            .iter()
            .filter(|e| e["event"] == "switched" && e["host"] == host)
            .collect();
        assert_eq!(switched.len(), 1, "{host}");
        assert_eq!(switched[0]["release"], T1);
        for task in ["deploy:setup", "deploy:update_code", "deploy:symlink"] {
            assert!(
                events.iter().any(|e| e["event"] == "task_finished"
                    && e["host"] == host
                    && e["task"] == task
                    && e["status"] == "ok"),
                "{host} {task}"
            );
        }
    }
}

#[test]
fn releases_lists_each_host_with_current_and_previous_marked() {
    let project = TestProject::new().fleet(2);
    for now in [T1, T2, T3] {
        project.deploy_at(now);
    }
    let output = project.run(&["releases", "test"]);
    output.success();
    let lines: Vec<&str> = output.stdout.lines().collect();
    for (block, host) in lines.chunks(5).zip(["h1", "h2"]) {
        assert_eq!(
            block[0],
            format!("{host} ({})", project.deploy_path(host).display())
        );
        let header: Vec<&str> = block[1].split_whitespace().collect();
        assert_eq!(header, ["RELEASE", "STATUS", "REVISION", "WHO", "WHEN"]);
        let rows: Vec<Vec<&str>> = block[2..]
            .iter()
            .map(|l| l.split_whitespace().collect())
            .collect();
        // Newest first; the mark is the last column.
        assert_eq!(rows[0][0], T3);
        assert_eq!(rows[0][1], "live");
        assert_eq!(rows[0].last(), Some(&"current"));
        assert_eq!(rows[1][0], T2);
        assert_eq!(rows[1].last(), Some(&"previous"));
        assert_eq!(rows[2][0], T1);
    }
    assert_eq!(lines.len(), 10, "{}", output.stdout);
}

#[test]
fn run_executes_a_command_in_current_on_every_host() {
    let project = TestProject::new().fleet(2);
    project.deploy_at(T1);
    let output = project.run(&["run", "test", "--", "cat index.html; pwd"]);
    output.success();
    let mut lines: Vec<&str> = output.stdout.lines().collect();
    lines.sort();
    let current = |host: &str| {
        project
            .deploy_path(host)
            .join("current")
            .display()
            .to_string()
    };
    assert_eq!(
        lines,
        [
            format!("[h1] {}", current("h1")),
            "[h1] hello".to_string(),
            format!("[h2] {}", current("h2")),
            "[h2] hello".to_string(),
        ]
    );
}

#[test]
fn upload_template_cwd_and_env_tasks() {
    let project = TestProject::new()
        .fleet(2)
        .config("app_name", "\"shop's \\\"best\\\"\"")
        .file("conf/app.ini", "mode = production\n")
        .file("conf/nested/keys.txt", "k1\n")
        .file(
            "templates/env.tpl",
            "APP_NAME={{ app_name }}\nHOST={{ host }}\nRELEASE={{ release_name }}\n",
        )
        .deployfile(
            r#"
[tasks."config:upload"]
upload = { from = "conf", to = "{{ release_path }}/config" }
after = "deploy:update_code"

[tasks."config:env"]
template = { src = "env.tpl", dest = "{{ release_path }}/.env", mode = "0640" }
after = "config:upload"

[tasks."config:check"]
cwd = "{{ release_path }}/config"
env = { EXPECTED = "{{ app_name }}" }
run = "test -f app.ini && test -f nested/keys.txt && grep -qxF \"APP_NAME=$EXPECTED\" ../.env && pwd > ../checked"
after = "config:env"
"#,
        );
    project.deploy_at(T1);
    for host in ["h1", "h2"] {
        let current = project.deploy_path(host).join("current");
        assert_eq!(
            fs::read_to_string(current.join("config/app.ini")).unwrap(),
            "mode = production\n"
        );
        assert_eq!(
            fs::read_to_string(current.join("config/nested/keys.txt")).unwrap(),
            "k1\n"
        );
        let env = current.join(".env");
        assert_eq!(
            fs::read_to_string(&env).unwrap(),
            format!("APP_NAME=shop's \"best\"\nHOST={host}\nRELEASE={T1}\n")
        );
        assert_eq!(
            fs::metadata(&env).unwrap().permissions().mode() & 0o777,
            0o640
        );
        let release = project.deploy_path(host).join("releases").join(T1);
        assert_eq!(
            fs::read_to_string(current.join("checked")).unwrap(),
            format!("{}/config\n", release.display())
        );
    }
}

#[test]
fn the_release_name_is_later_than_any_release_on_any_host() {
    let project = TestProject::new().fleet(3);
    project.deploy_at(T1);
    // h2 alone has a newer release (say, from a deploy to h2 only).
    project
        .run_env(&["deploy", "h2"], &[("DEP_NOW", T3)])
        .success();
    let release = project.deploy_at(T2);
    assert_eq!(release, "20250101120001");
    for host in HOSTS {
        assert_eq!(
            project.current(host).as_deref(),
            Some(release.as_str()),
            "{host}"
        );
    }
}

#[test]
fn a_local_task_evaluates_its_dynamic_variables_on_this_machine() {
    let project = TestProject::new().fleet(2).deployfile(
        r#"
[config.build_id]
run = "echo build-$(printf 42)"

[tasks."assets:local"]
local = true
run = "echo {{ build_id }} >> {{ (deployfile_dir ~ '/built')|quote }}"
after = "deploy:update_code"
"#,
    );
    project.deploy_at(T1);
    assert_eq!(project.read("built").as_deref(), Some("build-42\n"));
}

#[test]
fn a_mirror_that_has_the_revision_is_not_fetched_again() {
    let (project, main, feature) = git_project();
    let fetched = |host: &str| {
        project
            .deploy_path(host)
            .join(".dep/repo/FETCH_HEAD")
            .exists()
    };
    project.deploy_at(T1);
    // The first deploy clones the mirror (every branch); deploying what it has fetches nothing.
    project
        .run_env(
            &["deploy", "test", "--branch", "feature"],
            &[("DEP_NOW", T2)],
        )
        .success();
    assert_revision(&project, T2, &feature, "feature\n");
    assert!(
        !fetched("h1") && !fetched("h2"),
        "a fetch for a commit the mirror had"
    );
    // A new commit is fetched.
    fs::write(project.join("repo/index.html"), "third\n").unwrap();
    git_in(&project, &["commit", "-q", "-am", "third"]);
    let output = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(project.join("repo"))
        .output()
        .unwrap();
    let third = String::from_utf8(output.stdout).unwrap().trim().to_string();
    assert_ne!(third, main);
    project.deploy_at(T3);
    assert_revision(&project, T3, &third, "third\n");
    assert!(
        fetched("h1") && fetched("h2"),
        "the new commit was not fetched"
    );
}

#[test]
fn a_health_check_for_one_role_evaluates_its_variables_only_there() {
    let project = TestProject::new()
        .fleet(2)
        .roles("h1", &["web"])
        .roles("h2", &["db"])
        .config(
            "db_ping",
            r#"{ run = "[ {{ host }} = h2 ] || exit 9; echo pong" }"#,
        )
        .deployfile(
            r#"
[[health]]
name = "db"
roles = ["db"]
command = "test {{ db_ping|quote }} = pong"
"#,
        );
    let output = project.run_env(&["deploy", "test"], &[("DEP_NOW", T1)]);
    output.success();
    for host in ["h1", "h2"] {
        assert_eq!(project.current(host).as_deref(), Some(T1), "{host}");
    }
}
