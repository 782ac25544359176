//! The artifact strategy (a directory or a .tar.gz built elsewhere), the layered `.env`, and
//! tagging the deployed revision.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::support::project::{TestProject, T1};

fn sh(dir: &std::path::Path, script: &str) -> String {
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn artifact_directory_is_deployed_with_its_recorded_revision() {
    let project = TestProject::new()
        .fleet(2)
        .config("strategy", "\"artifact\"")
        .config("artifact_path", "\"dist\"")
        .config("artifact_revision", "\"ci-build-42\"")
        .file("dist/public/app.js", "console.log(1)\n");
    project.deploy_at(T1);
    for host in ["h1", "h2"] {
        let js = project.deploy_path(host).join("current/public/app.js");
        assert_eq!(std::fs::read_to_string(js).unwrap(), "console.log(1)\n");
        assert_eq!(
            project.last_entry(host, T1).unwrap()["revision"],
            "ci-build-42"
        );
    }
}

#[test]
fn artifact_tarball_is_streamed_as_built() {
    let project = TestProject::new()
        .fleet(2)
        .config("strategy", "\"artifact\"")
        .config("artifact_path", "\"build.tar.gz\"")
        .file("stage/index.php", "<?php echo 'built';\n");
    sh(project.path(), "tar -czf build.tar.gz -C stage .");
    project.deploy_at(T1);
    for host in ["h1", "h2"] {
        let page = project.deploy_path(host).join("current/index.php");
        assert_eq!(
            std::fs::read_to_string(page).unwrap(),
            "<?php echo 'built';\n"
        );
    }
    let missing = TestProject::new()
        .fleet(1)
        .config("strategy", "\"artifact\"")
        .config("artifact_path", "\"nope.tar.gz\"");
    let output = missing.run(&["deploy", "test"]);
    output.expect_status(2).stderr_has("`artifact_path`: `");
    assert!(missing.releases("h1").is_empty());
}

#[test]
fn dotenv_is_layered_written_0640_and_secrets_never_shown() {
    let project = TestProject::new()
        .fleet(2)
        .config("dotenv_render", "true")
        .config("shared_files", "[\".env\"]")
        .top("secrets = [\"DB_PASSWORD\"]")
        .deployfile("[tasks.\"show:env\"]\nrun = \"cat {{ release_path|quote }}/.env\"\nafter = \"deploy:env\"\n")
        .deployfile("[tasks.\"deploy:env\"]\nbuiltin = \"dotenv\"\nafter = \"deploy:shared\"\n")
        .file(".env.example", "APP_NAME=Shop\nAPP_ENV=local\nAPP_DEBUG=true\nDB_PASSWORD=\nCACHE_DRIVER=file\n")
        .file(".env.test", "APP_ENV=staging\nCACHE_DRIVER=redis\n");
    let secret = "s3cr3t-pa$$ word";
    let output = project.run_env(
        &["deploy", "test", "-vv"],
        &[
            ("DEP_NOW", T1),
            ("DEP_ENV_APP_DEBUG", "false"),
            ("DB_PASSWORD", secret),
        ],
    );
    output.success();
    assert!(
        !output.stdout.contains("s3cr3t") && !output.stderr.contains("s3cr3t"),
        "{}",
        output.transcript()
    );
    output.stdout_has("│ DB_PASSWORD='****'");
    for host in ["h1", "h2"] {
        let shared_env = project.deploy_path(host).join("shared/.env");
        assert_eq!(
            std::fs::read_to_string(&shared_env).unwrap(),
            "APP_NAME=Shop\nAPP_ENV=staging\nAPP_DEBUG=false\nDB_PASSWORD='s3cr3t-pa$$ word'\nCACHE_DRIVER=redis\n"
        );
        let mode = std::fs::metadata(&shared_env).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "{host}: mode {mode:o}");
        let link = std::fs::read_link(
            project
                .deploy_path(host)
                .join(format!("releases/{T1}/.env")),
        )
        .unwrap();
        assert_eq!(link, shared_env);
    }
}

#[test]
fn deploy_tag_tags_and_pushes_the_deployed_revision() {
    let project = TestProject::new().fleet(1).config("deploy_tag", "true");
    let dir = project.path();
    sh(dir, "git init -q -b main . && git -c user.name=t -c user.email=t@localhost commit -qm init --allow-empty && \
             git add app && git -c user.name=t -c user.email=t@localhost commit -qm app && \
             git init -q --bare origin.git && git remote add origin \"$PWD/origin.git\"");
    let head = sh(dir, "git rev-parse HEAD");
    project.deploy_at(T1);
    assert_eq!(
        project.last_entry("h1", T1).unwrap()["revision"],
        head.as_str()
    );
    let pushed = sh(
        dir,
        &format!("git ls-remote origin refs/tags/deploy/test/{T1}"),
    );
    assert!(
        pushed.starts_with(&head),
        "origin has {pushed:?}, deployed {head}"
    );
    // A rollback re-runs the hosts' post-switch tasks, never the controller's tag.
    project.deploy_at("20250101100100");
    let output = project.run(&["rollback", "test"]);
    output.success();
    assert!(
        !output.stdout.contains("deploy:tag"),
        "{}",
        output.transcript()
    );
}
