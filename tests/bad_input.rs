//! Mistakes in a Deployfile or on the command line: each is reported with its exact place and
//! wording, exits 2, and is caught before any command runs on any host.

use crate::support::project::{TestProject, T1};

/// The Deployfile's path as dep reports it (dep runs in the canonical project directory).
fn deployfile(project: &TestProject) -> String {
    std::fs::canonicalize(project.path())
        .unwrap()
        .join("Deployfile.toml")
        .display()
        .to_string()
}

/// Run dep, expect exit 2, nothing on stdout and exactly `message` on stderr, and nothing on
/// any host.
#[track_caller]
fn assert_usage_error(project: &TestProject, args: &[&str], message: &str) {
    let output = project
        .dep(args)
        .now(T1)
        .status(2)
        .stdout("")
        .stderr(message)
        .run();
    // Also unnormalised: the path dep names is the canonical one.
    assert_eq!(output.stderr, message);
    assert!(
        !project.join("hosts").exists(),
        "a host was touched\n{}",
        output.transcript()
    );
}

#[test]
fn malformed_toml_points_at_line_and_column() {
    let project = TestProject::new().raw_deployfile(
        "[config]\napplication = \"shop\"\ndeploy_path = /var/www/shop\nkeep_releases = 3\n",
    );
    let file = deployfile(&project);
    assert_usage_error(
        &project,
        &["deploy", "test"],
        &format!(
            "error: {file}:3:15: invalid string\nexpected `\"`, `'`\n  |\n3 | deploy_path = /var/www/shop\n  |               ^\n"
        ),
    );
}

#[test]
fn an_unknown_key_in_a_host_is_rejected_with_its_place() {
    let project = TestProject::new().raw_deployfile(
        "[hosts.web1]\nhostname = \"203.0.113.10\"\nstage = \"production\"\nrole = [\"web\"]\n",
    );
    let file = deployfile(&project);
    assert_usage_error(
        &project,
        &["hosts"],
        &format!(
            "error: {file}:4:1: unknown field `role`, expected one of `hostname`, `user`, `port`, \
             `identity_file`, `known_hosts_file`, `host_key_check`, `stage`, `roles`, `local`, `color`, `config`\n  \
             |\n4 | role = [\"web\"]\n  | ^^^^\n"
        ),
    );
}

#[test]
fn an_unknown_key_in_a_task_is_rejected_with_its_place() {
    let project = TestProject::new()
        .fleet(1)
        .deployfile("[tasks.build]\nrun = \"make\"\naftre = \"deploy:update_code\"\n");
    let output = project.run(&["deploy", "test"]);
    output.expect_status(2);
    let file = deployfile(&project);
    assert!(
        output.stderr.starts_with(&format!(
            "error: {file}:7:1: unknown field `aftre`, expected one of "
        )),
        "{}",
        output.transcript()
    );
    output.stderr_has("7 | aftre = \"deploy:update_code\"\n  | ^^^^^\n");
}

#[test]
fn an_unknown_task_suggests_the_closest_name() {
    let project = TestProject::new().fleet(2);
    assert_usage_error(
        &project,
        &["deplyo", "test"],
        "error: unknown task `deplyo`\n  did you mean `deploy`?\n",
    );
}

#[test]
fn a_hook_on_an_unknown_task_names_the_referring_task_and_file() {
    let project = TestProject::new()
        .fleet(2)
        .deployfile("[tasks.\"app:build\"]\nrun = \"make\"\nafter = \"deploy:updte_code\"\n");
    let file = deployfile(&project);
    assert_usage_error(
        &project,
        &["deploy", "test"],
        &format!(
            "error: unknown task `deploy:updte_code` (referenced by task `app:build` in {file})\n  \
             did you mean `deploy:update_code`?\n"
        ),
    );
}

#[test]
fn a_cycle_in_steps_is_reported_as_the_whole_circle() {
    let project = TestProject::new().fleet(1).deployfile(
        r#"
[tasks.a]
steps = ["b"]
[tasks.b]
steps = ["c"]
[tasks.c]
steps = ["a"]
"#,
    );
    assert_usage_error(
        &project,
        &["deploy", "test"],
        "error: tasks form a cycle: a -> b -> c -> a\n",
    );
}

#[test]
fn a_cycle_in_hooks_is_reported_as_the_whole_circle() {
    let project = TestProject::new().fleet(1).deployfile(
        r#"
[tasks."one"]
run = "true"
after = "two"
[tasks."two"]
run = "true"
before = "three"
[tasks."three"]
run = "true"
after = "one"
"#,
    );
    // one runs after two, three after one, two before three: a circle made of hooks alone.
    let output = project.run_env(&["deploy", "test"], &[("DEP_NOW", T1)]);
    output.expect_status(2);
    let message = output.stderr.trim_end();
    let circle = message
        .strip_prefix("error: tasks form a cycle: ")
        .unwrap_or_else(|| panic!("{}", output.transcript()));
    let names: Vec<&str> = circle.split(" -> ").collect();
    assert_eq!(names.first(), names.last(), "{message}");
    let mut members = names[1..].to_vec();
    members.sort();
    assert_eq!(members, ["one", "three", "two"], "{message}");
    assert!(!project.join("hosts").exists());
}

#[test]
fn an_undefined_variable_is_reported_before_any_command_runs() {
    let project = TestProject::new().fleet(2).deployfile(
        r#"
[tasks."app:notify"]
run = "echo deployed {{ release_name }} to {{ aplication }}"
after = "deploy:symlink"
"#,
    );
    let file = deployfile(&project);
    let (line, column, snippet) = pointed(&project, "aplication");
    assert_usage_error(
        &project,
        &["deploy", "test"],
        &format!(
            "error: {file}:{line}:{column}: task `app:notify`: host `h1`: undefined variable `aplication`\n{snippet}"
        ),
    );
}

#[test]
fn an_undefined_variable_in_a_standalone_task_is_reported_before_it_runs() {
    let project = TestProject::new().fleet(2).deployfile(
        r#"
[tasks."cache:clear"]
run = ["touch {{ (deployfile_dir ~ '/ran')|quote }}", "rm -rf {{ cache_dir }}/*"]
"#,
    );
    let file = deployfile(&project);
    let (line, column, snippet) = pointed(&project, "cache_dir");
    assert_usage_error(
        &project,
        &["cache:clear", "test"],
        &format!(
            "error: {file}:{line}:{column}: task `cache:clear`: host `h1`: undefined variable `cache_dir`\n{snippet}"
        ),
    );
    assert!(!project.join("ran").exists());
}

#[test]
fn a_selector_matching_no_host_lists_hosts_and_stages() {
    let project = TestProject::new()
        .fleet(2)
        .deployfile("[hosts.p1]\nlocal = true\nstage = \"production\"\nconfig = { deploy_path = \"/nonexistent/p1\" }\n");
    assert_usage_error(
        &project,
        &["deploy", "staging"],
        "error: no host matches `staging`\n  hosts: p1, h1, h2\n  stages: production, test\n",
    );
    // A mistyped part of a list is refused too, and nothing runs: never a deploy to part of it.
    assert_usage_error(
        &project,
        &["deploy", "h1,h3"],
        "error: no host matches `h3`\n  did you mean `h1`?\n  hosts: p1, h1, h2\n  stages: production, test\n",
    );
    assert!(project.releases("h1").is_empty(), "h1 was deployed");
}

#[test]
fn a_deploy_without_a_selector_is_refused() {
    let project = TestProject::new().fleet(2);
    assert_usage_error(
        &project,
        &["deploy"],
        "error: name the hosts to work on: a stage (test), a host, or `role=NAME`\n",
    );
}

#[test]
fn a_deploy_path_naming_the_root_is_refused() {
    for path in ["/", "/.", "//./"] {
        let project = TestProject::new().deployfile(&format!(
            "[hosts.h1]\nlocal = true\nstage = \"test\"\nconfig = {{ deploy_path = {path:?} }}\n"
        ));
        assert_usage_error(
            &project,
            &["deploy", "test", "--dry-run"],
            &format!(
                "error: host `h1`: `deploy_path` must not be `/` or contain `..` (got `{path}`)\n"
            ),
        );
    }
}

#[test]
fn a_relative_deploy_path_is_refused() {
    let project = TestProject::new().deployfile(
        "[hosts.h1]\nlocal = true\nstage = \"test\"\nconfig = { deploy_path = \"var/www/shop\" }\n",
    );
    assert_usage_error(
        &project,
        &["deploy", "test"],
        "error: host `h1`: `deploy_path` must be an absolute path, not `var/www/shop`\n",
    );
}

#[test]
fn the_root_as_deploy_path_is_refused() {
    for path in ["/", "//", "/srv/../"] {
        let project = TestProject::new().deployfile(&format!(
            "[hosts.h1]\nlocal = true\nstage = \"test\"\nconfig = {{ deploy_path = \"{path}\" }}\n"
        ));
        assert_usage_error(
            &project,
            &["deploy", "test"],
            &format!(
                "error: host `h1`: `deploy_path` must not be `/` or contain `..` (got `{path}`)\n"
            ),
        );
    }
}

#[test]
fn an_unknown_recipe_import_suggests_the_closest_name() {
    let project = TestProject::new().raw_deployfile("import = [\"laravl\"]\n");
    let file = deployfile(&project);
    assert_usage_error(
        &project,
        &["hosts"],
        &format!("error: {file}: unknown recipe `laravl` in `import`\n  did you mean `laravel`?\n"),
    );
}

#[test]
fn a_missing_imported_file_is_named() {
    let project = TestProject::new().raw_deployfile("import = [\"deploy/acme.toml\"]\n");
    let file = deployfile(&project);
    let dir = std::fs::canonicalize(project.path()).unwrap();
    assert_usage_error(
        &project,
        &["hosts"],
        &format!(
            "error: {file}: imported file `deploy/acme.toml` does not exist (looked for `{}`)\n",
            dir.join("deploy/acme.toml").display()
        ),
    );
}

#[test]
fn recipes_importing_each_other_are_reported_as_the_whole_circle() {
    let project = TestProject::new()
        .file("deploy/a.toml", "import = [\"b.toml\"]\n")
        .file("deploy/b.toml", "import = [\"a.toml\"]\n")
        .raw_deployfile("import = [\"deploy/a.toml\"]\n");
    let dir = std::fs::canonicalize(project.path()).unwrap();
    let a = dir.join("deploy/a.toml").display().to_string();
    let b = dir.join("deploy/b.toml").display().to_string();
    assert_usage_error(
        &project,
        &["hosts"],
        &format!("error: recipes import each other in a circle: {a} -> {b} -> {a}\n"),
    );
}

#[test]
fn a_bad_option_is_a_usage_error() {
    let project = TestProject::new().fleet(1);
    assert_usage_error(
        &project,
        &["deploy", "test", "-o", "novalue"],
        "error: `-o novalue`: expected `name=value`\n",
    );
}

#[test]
fn an_unknown_strategy_is_a_configuration_error() {
    let project = TestProject::new().fleet(1).config("strategy", "\"rsync\"");
    let file = deployfile(&project);
    assert_usage_error(
        &project,
        &["deploy", "test"],
        &format!("error: {file}: unknown `strategy = \"rsync\"` (use \"git\", \"upload\" or \"artifact\")\n"),
    );
}

#[test]
fn no_deployfile_is_named() {
    let project = TestProject::new().no_deployfile();
    let dir = std::fs::canonicalize(project.path()).unwrap();
    // (A Deployfile.toml in a parent of the temporary directory would be found instead.)
    assert_usage_error(
        &project,
        &["deploy", "test"],
        &format!(
            "error: no `Deployfile.toml` found in `{}` or any parent directory (use `-f FILE` or `dep init`)\n",
            dir.display()
        ),
    );
}

#[test]
fn a_shared_dir_outside_the_release_is_refused_before_anything_runs() {
    let project = TestProject::new()
        .fleet(2)
        .config("shared_dirs", r#"["storage", "../../etc"]"#);
    assert_usage_error(
        &project,
        &["deploy", "test"],
        "error: <built-in>/recipes/common.toml:79:1: task `deploy:shared`: host `h1`: invalid operation: \
         `../../etc` must be a relative path inside the release, without `..` (template line 3)\n   |\n\
         79 | [tasks.\"deploy:shared\"]\n   | ^^^^^^^^^^^^^^^^^^^^^^^\n",
    );
}

#[test]
fn a_bad_keep_releases_is_refused_before_anything_runs() {
    for value in ["many", "-1"] {
        let project = TestProject::new()
            .fleet(2)
            .config("keep_releases", &format!("{value:?}"));
        let output = project.run_env(&["deploy", "test"], &[("DEP_NOW", T1)]);
        let deployfile = project.join("Deployfile.toml").canonicalize().unwrap();
        output.expect_status(2).stderr_has(&format!(
            "host `h1`: `keep_releases` must be a whole number (how many releases to keep), \
             not `{value}` (set by {})",
            deployfile.display()
        ));
        assert!(!project.join("hosts").exists(), "{}", output.transcript());
    }
}

/// Where `needle` first appears in the generated Deployfile: line, column and the pointed
/// snippet dep prints under the message (gutter, source line, carets).
fn pointed(project: &TestProject, needle: &str) -> (usize, usize, String) {
    let text = project.deployfile_text();
    let (index, source) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains(needle))
        .expect("needle in the Deployfile");
    let line = index + 1;
    let column = source.find(needle).unwrap() + 1;
    let gutter = " ".repeat(line.to_string().len());
    let snippet = format!(
        "{gutter} |\n{line} | {source}\n{gutter} | {}{}\n",
        " ".repeat(column - 1),
        "^".repeat(needle.len())
    );
    (line, column, snippet)
}

#[test]
fn a_connection_pacing_of_zero_is_refused_before_anything_runs() {
    let project = TestProject::new().fleet(2);
    let file = deployfile(&project);
    assert_usage_error(
        &project,
        &["deploy", "test", "-o", "max_concurrent_starts=0"],
        &format!(
            "error: {file}: `max_concurrent_starts` must be a whole number of at least 1, not `0`\n"
        ),
    );
}

/// DEP_NOW pins the clock as a release name or an RFC 3339 time; anything else is refused before
/// anything runs, instead of silently deploying at the real time.
#[test]
fn a_clock_pinned_to_something_that_is_not_a_time_is_refused() {
    let project = TestProject::new().fleet(1);
    project
        .dep(&["deploy", "test"])
        .env("DEP_NOW", "next tuesday")
        .status(2)
        .stderr("error: DEP_NOW=\"next tuesday\" is not a time: use YYYYMMDDHHMMSS (UTC) or RFC 3339, e.g. 20260101100000 or 2026-01-01T10:00:00Z\n")
        .run();
    assert_eq!(project.current("h1"), None);
    project
        .dep(&["deploy", "test"])
        .env("DEP_NOW", "2026-01-01T11:00:00+01:00")
        .run();
    assert_eq!(project.current("h1").as_deref(), Some("20260101100000"));
}

/// A duration too long to be one (issue 11) is pointed at, not a panic: a task's `timeout` and
/// a health check's `interval`, written as text or as seconds.
#[test]
fn an_overflowing_duration_is_pointed_at_with_its_file_and_line() {
    let cases = [
        (
            "[tasks.slow]\nrun = \"true\"\ntimeout = \"99999999999999999999h\"\n",
            "\"99999999999999999999h\"",
            "`99999999999999999999h` is too long a duration (at most 100000h)",
        ),
        (
            "[[health]]\ncommand = \"true\"\ninterval = \"99999999999999999999999m\"\n",
            "\"99999999999999999999999m\"",
            "`99999999999999999999999m` is too long a duration (at most 100000h)",
        ),
        (
            "[[health]]\ncommand = \"true\"\ntimeout = 9000000000000000000\n",
            "9000000000000000000",
            "`9000000000000000000` is too long a duration (at most 100000h)",
        ),
    ];
    for (toml, needle, message) in cases {
        let project = TestProject::new().fleet(1).deployfile(toml);
        let file = deployfile(&project);
        let (line, column, snippet) = pointed(&project, needle);
        assert_usage_error(
            &project,
            &["deploy", "test"],
            &format!("error: {file}:{line}:{column}: {message}\n{snippet}"),
        );
    }
}

/// `-o connect_timeout=…` too long for a duration names the host, the variable and where it came
/// from, before any connection.
#[test]
fn an_overflowing_connect_timeout_names_the_host_and_the_variable() {
    let project = TestProject::new().raw_deployfile(
        "[config]\ndeploy_path = \"/var/www/shop\"\n\n[hosts.web1]\nhostname = \"127.0.0.1\"\nport = 9\nstage = \"production\"\n",
    );
    assert_usage_error(
        &project,
        &[
            "run",
            "production",
            "-o",
            "connect_timeout=99999999999999999999h",
            "--",
            "true",
        ],
        "error: host `web1`: `connect_timeout` (from -o): `99999999999999999999h` is too long a \
         duration (at most 100000h)\n",
    );
}

#[test]
fn an_unknown_on_post_switch_failure_is_refused_before_anything_runs() {
    let project = TestProject::new()
        .fleet(1)
        .config("on_post_switch_failure", "\"undo\"");
    let file = deployfile(&project);
    assert_usage_error(
        &project,
        &["deploy", "test"],
        &format!(
            "error: {file}: unknown `on_post_switch_failure = \"undo\"` (use \"keep\" or \"rollback\")\n"
        ),
    );
}

/// `--branch`, `--tag` and `--revision` pick a commit only for the git strategy: with an upload,
/// they are refused rather than ignored (the deploy would ship other code than asked for).
#[test]
fn a_commit_flag_without_the_git_strategy_is_refused() {
    let project = TestProject::new().fleet(1);
    for flag in ["--branch", "--tag", "--revision"] {
        assert_usage_error(
            &project,
            &["deploy", "test", flag, "main"],
            &format!(
                "error: `{flag}` picks a commit for the `git` strategy; this deploy uses `upload`, \
                 which ships `upload_from` as it is\n"
            ),
        );
    }
}

/// Two hosts deploying to one directory of one machine would lock it twice (and then report a
/// lock held by dep itself): refused before anything runs, naming both.
#[test]
fn two_hosts_with_one_deploy_path_are_refused() {
    let project = TestProject::new().fleet(2);
    let shared = project.deploy_path("h1").display().to_string();
    let project = project.host_config("h2", "deploy_path", &format!("{shared:?}"));
    assert_usage_error(
        &project,
        &["deploy", "test"],
        &format!(
            "error: hosts `h1` and `h2` both deploy to `{shared}` on this machine: give each its \
             own `deploy_path`, or select one of them\n"
        ),
    );
}

/// `switch_confirm_timeout` is used at the switch, but a bad one is refused before any host is
/// touched, not after every host prepared the release.
#[test]
fn a_bad_switch_confirm_timeout_is_refused_before_anything_runs() {
    let project = TestProject::new().fleet(2);
    assert_usage_error(
        &project,
        &["deploy", "test", "-o", "switch_confirm_timeout=abc"],
        "error: host `h1`: `switch_confirm_timeout`: `abc` is not a duration (e.g. \"30s\", \"5m\")\n",
    );
}

/// An upload whose source does not exist, with no `local` task before it that could build it,
/// is refused before the lock, like a missing `upload_from`.
#[test]
fn an_upload_task_with_no_source_is_refused_before_anything_runs() {
    let project = TestProject::new().fleet(1).deployfile(
        "[tasks.extra]\nupload = { from = \"nope\", to = \"{{ release_path }}/extra\" }\nafter = \"deploy:update_code\"\n",
    );
    let output = project.dep(&["deploy", "test"]).status(2).run();
    output.stderr_has(&format!(
        "task `extra`: host `h1`: the upload source `nope` does not exist (looked for `{}`)",
        project.join("nope").display()
    ));
    assert!(!project.join("hosts").exists(), "a host was touched");
    // A `local` task before it may build it: then it is looked for when the upload runs.
    let project = TestProject::new().fleet(1).deployfile(
        "[tasks.build]\nlocal = true\nrun = \"mkdir -p built && echo hi > built/x\"\nafter = \"deploy:update_code\"\n\
         [tasks.extra]\nupload = { from = \"built\", to = \"{{ release_path }}/extra\" }\nafter = \"build\"\n",
    );
    project.dep(&["deploy", "test"]).now(T1).run();
    assert_eq!(
        std::fs::read_to_string(project.deploy_path("h1").join("current/extra/x")).unwrap(),
        "hi\n"
    );
}

/// `dep config -v | head -1`: a printing command whose reader stops early ends quietly (no
/// panic, no backtrace), as any Unix tool does.
#[test]
fn a_reader_that_stops_early_ends_a_printing_command_quietly() {
    use std::io::Read;
    // More than a pipe holds, so that dep is still writing when the reader goes.
    let project = TestProject::new()
        .fleet(1)
        .config("big", &format!("{:?}", "x".repeat(300_000)));
    let args = ["config", "-v", "test"];
    let mut child = project
        .command(&args, &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 8];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // The pipe is closed here, long before the output ends.
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `dep run` runs where a release is live and says where it did not run (a new host, a
/// blue-green router); with no live release anywhere, it is refused and runs nothing.
#[test]
fn dep_run_runs_where_a_release_is_live_and_says_where_not() {
    let project = TestProject::new().fleet(2);
    let output = project
        .dep(&["run", "test", "--", "touch", "ran-here"])
        .status(1)
        .run();
    output.stderr_has(
        "`dep run` needs a live release, and no selected host has one; nothing was run",
    );
    project.dep(&["deploy", "h1"]).now(T1).run();
    let output = project
        .dep(&["run", "test", "--", "touch", "ran-here"])
        .run();
    output.stdout_has(&format!(
        "not run: host `h2`: no release is live in `{}`",
        project.deploy_path("h2").display()
    ));
    assert!(project.deploy_path("h1").join("current/ran-here").exists());
    assert!(!project.deploy_path("h2").exists(), "h2 was touched");
}

/// `-o` with a mistyped name, or a variable dep sets itself: a warning that says so (the run
/// goes on; a name close to nothing is a variable of the user's own, and says nothing).
#[test]
fn a_mistyped_override_is_warned_about() {
    let project = TestProject::new().fleet(1);
    project
        .dep(&[
            "hosts",
            "-o",
            "keep_relases=1",
            "-o",
            "release_name=x",
            "-o",
            "greeting=hi",
        ])
        .stderr(
            "warning: `-o keep_relases=…`: no recipe or Deployfile defines `keep_relases`; did you mean `keep_releases`?\n\
             warning: `-o release_name=…` changes nothing: dep sets `release_name` itself for each host\n",
        )
        .run();
}

/// A missing or dynamic `deploy_path` says what to do about it.
#[test]
fn a_missing_or_dynamic_deploy_path_says_what_to_do() {
    let project = TestProject::new().deployfile("[hosts.h1]\nlocal = true\nstage = \"test\"\n");
    assert_usage_error(
        &project,
        &["deploy", "test"],
        "error: host `h1`: `deploy_path` is not set: give it in `[config]` (e.g. `deploy_path = \
         \"/var/www/{{ application }}\"`) or in the host's `config`\n",
    );
    let project = TestProject::new().deployfile(
        "[hosts.h1]\nlocal = true\nstage = \"test\"\nconfig = { deploy_path = { run = \"echo /tmp\" } }\n",
    );
    assert_usage_error(
        &project,
        &["deploy", "test"],
        "error: host `h1`: `deploy_path` cannot be dynamic (`{ run = … }`): dep needs it before it \
         runs anything on the host\n",
    );
}

/// A `template` task's file that does not render names the file and the line in it.
#[test]
fn a_template_that_does_not_render_names_its_file_and_line() {
    for (text, message) in [
        ("line one\nname={{ nope }}\n", "undefined variable `nope`"),
        ("line one\nname={{ host \n", "template syntax error"),
    ] {
        let project = TestProject::new()
            .fleet(1)
            .file("templates/app.conf", text)
            .deployfile(
                "[tasks.\"app:config\"]\ntemplate = { src = \"app.conf\", dest = \"{{ release_path }}/app.conf\" }\nafter = \"deploy:update_code\"\n",
            );
        let output = project.dep(&["deploy", "test"]).status(2).run();
        output.stderr_has(&format!(
            "task `app:config`: host `h1`: templates/app.conf:2: {message}"
        ));
        assert!(!project.join("hosts").exists(), "a host was touched");
    }
}

/// `-f DIR` takes the Deployfile in DIR; a directory without one says so.
#[test]
fn dash_f_takes_a_directory_holding_the_deployfile() {
    let project = TestProject::new().fleet(1);
    let elsewhere = tempfile::tempdir().unwrap();
    let dir = project.path().display().to_string();
    let output = project
        .command(&["-f", &dir, "hosts"], &[])
        .current_dir(elsewhere.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("h1"));
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_dep"))
        .arg("-f")
        .arg(elsewhere.path())
        .arg("hosts")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("a directory without a Deployfile.toml"),
        "{output:?}"
    );
}

/// A Deployfile that does not parse still masks its secrets' values in the error's snippet.
#[test]
fn a_deployfile_that_does_not_parse_masks_its_secrets() {
    let project = TestProject::empty().raw_deployfile(
        "secrets = [\"DEP_TEST_SECRET\"]\n[config]\npassword = \"s3cr3t-value-q7\n",
    );
    let output = project
        .dep(&["hosts"])
        .env("DEP_TEST_SECRET", "s3cr3t-value-q7")
        .status(2)
        .run();
    output.stderr_has("invalid basic string").stderr_has("****");
    assert!(
        !output.stderr.contains("s3cr3t-value-q7"),
        "{}",
        output.stderr
    );
}
