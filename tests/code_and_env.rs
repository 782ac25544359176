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

/// A project that writes its `.env` with `deploy:env` (the laravel recipe's step) on one host.
fn dotenv_project(example: &str, stage: &str) -> TestProject {
    TestProject::new()
        .fleet(1)
        .config("dotenv_render", "true")
        .config("shared_files", "[\".env\"]")
        .top("secrets = [\"DB_PASSWORD\"]")
        .deployfile("[tasks.\"deploy:env\"]\nbuiltin = \"dotenv\"\nafter = \"deploy:shared\"\n")
        .file(".env.example", example)
        .file(".env.test", stage)
}

/// `dir/name` as Laravel's dotenv (vlucas/phpdotenv, Debian's) reads it.
fn read_with_phpdotenv(dir: &std::path::Path, name: &str) -> serde_json::Value {
    let autoload = std::path::Path::new("/usr/share/php/Dotenv/autoload.php");
    assert!(
        autoload.exists(),
        "{} is missing (Debian's php-vlucas-phpdotenv): run scripts/setup-test-deps",
        autoload.display()
    );
    let php = "require 'Dotenv/autoload.php'; \
               echo json_encode(Dotenv\\Dotenv::createArrayBacked($argv[1], $argv[2])->load());";
    let out = Command::new("php")
        .args(["-r", php])
        .arg(dir)
        .arg(name)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .output()
        .expect("cannot run php: run scripts/setup-test-deps");
    assert!(
        out.status.success(),
        "phpdotenv cannot read {}/{name}: {}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Issue 11: the layered `.env` reads back through Laravel's dotenv with the values the layers
/// mean. A `${NAME}` reference stays one (double-quoted, so dotenv expands it, now to the stage's
/// value), a literal `${…}` or `$` stays literal, a multi-line value stays whole, and what comes
/// from the environment is taken as it is.
#[test]
fn dotenv_keeps_references_and_multi_line_values_as_laravel_reads_them() {
    let example = "APP_NAME=\"Laravel Shop\"\nAPP_ENV=local\nAPP_URL=http://localhost\n\
                   VITE_APP_NAME=\"${APP_NAME}\"\nASSET_URL=${APP_URL}/assets\n\
                   PRICE='${APP_NAME} costs $5'\n\
                   PRIVATE_KEY=\"-----BEGIN KEY-----\nMIIB\\\"x\n-----END KEY-----\"\n\
                   MAIL_FROM_NAME=\"${APP_NAME} (mail)\"\n";
    let stage = "APP_NAME=\"Staging Shop\"\nAPP_URL=https://staging.example.com # the stage's\n";
    let project = dotenv_project(example, stage);
    let secret = "pa$$ \"w'rd\"\nline2";
    project
        .dep(&["deploy", "test"])
        .now(T1)
        .env("DEP_ENV_NOTE", "${APP_NAME} is literal")
        .env("DB_PASSWORD", secret)
        .run();
    let shared = project.deploy_path("h1").join("shared");
    assert_eq!(
        std::fs::read_to_string(shared.join(".env")).unwrap(),
        "APP_NAME='Staging Shop'\nAPP_ENV=local\nAPP_URL=https://staging.example.com\n\
         VITE_APP_NAME=\"${APP_NAME}\"\nASSET_URL=\"${APP_URL}/assets\"\n\
         PRICE='${APP_NAME} costs $5'\n\
         PRIVATE_KEY=\"-----BEGIN KEY-----\\nMIIB\\\"x\\n-----END KEY-----\"\n\
         MAIL_FROM_NAME=\"${APP_NAME} (mail)\"\nNOTE='${APP_NAME} is literal'\n\
         DB_PASSWORD=\"pa\\$\\$ \\\"w'rd\\\"\\nline2\"\n"
    );
    let env = read_with_phpdotenv(&shared, ".env");
    let expected = serde_json::json!({
        "APP_NAME": "Staging Shop",
        "APP_ENV": "local",
        "APP_URL": "https://staging.example.com",
        "VITE_APP_NAME": "Staging Shop",
        "ASSET_URL": "https://staging.example.com/assets",
        "PRICE": "${APP_NAME} costs $5",
        "PRIVATE_KEY": "-----BEGIN KEY-----\nMIIB\"x\n-----END KEY-----",
        "MAIL_FROM_NAME": "Staging Shop (mail)",
        "NOTE": "${APP_NAME} is literal",
        "DB_PASSWORD": secret,
    });
    assert_eq!(env, expected);
    // What no later layer changes reads as dotenv reads `.env.example` itself.
    let source = read_with_phpdotenv(project.path(), ".env.example");
    for key in ["APP_ENV", "PRICE", "PRIVATE_KEY"] {
        assert_eq!(env[key], source[key], "{key}");
    }
    assert_eq!(source["VITE_APP_NAME"], "Laravel Shop");
}

/// A layer Laravel's dotenv could not read is refused before anything runs, naming its file
/// and line, instead of being guessed at.
#[test]
fn a_dotenv_layer_dotenv_cannot_read_is_refused_with_its_line() {
    let project = dotenv_project("APP_NAME=Shop\n", "APP_ENV=staging\nAPP_NAME=My Shop\n");
    let file = std::fs::canonicalize(project.path())
        .unwrap()
        .join(".env.test");
    let output = project.run_env(&["deploy", "test"], &[("DEP_NOW", T1)]);
    output.expect_status(2).stderr_has(&format!(
        "task `deploy:env`: host `h1`: {}:2: unexpected whitespace in `APP_NAME=My Shop` \
         (Laravel's dotenv cannot read it)\n",
        file.display()
    ));
    assert!(!project.join("hosts").exists(), "{}", output.transcript());
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
