//! `dep init` on a Laravel-shaped directory: what it writes, that the result loads, and that it
//! refuses to overwrite without --force.

use std::path::Path;
use std::process::{Command, Output};

fn dep(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dep"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn laravel_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("composer.json"),
        r#"{"require": {"laravel/framework": "^8.83"}}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("artisan"), "<?php\n").unwrap();
    dir
}

#[test]
fn init_scaffolds_a_laravel_deployfile_and_workflow_that_load() {
    let dir = laravel_dir();
    let out = dep(
        dir.path(),
        &[
            "init",
            "--yes",
            "--application",
            "shop",
            "--production-host",
            "prod.example.test",
            "--user",
            "www",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "wrote Deployfile.toml\nwrote .github/workflows/deploy.yml\n\
         next: check the hosts in Deployfile.toml, then `dep deploy staging --dry-run`\n"
    );
    let deployfile = std::fs::read_to_string(dir.path().join("Deployfile.toml")).unwrap();
    assert!(
        deployfile.contains("import = [\"laravel\"]"),
        "{deployfile}"
    );
    assert!(deployfile.contains("application = \"shop\""));
    assert!(deployfile.contains("deploy_path = \"/var/www/{{ application }}\""));
    let workflow =
        std::fs::read_to_string(dir.path().join(".github/workflows/deploy.yml")).unwrap();
    for job in [
        "test:",
        "build:",
        "staging:",
        "production:",
        "dep deploy staging",
        "dep deploy production",
        "php artisan test",
    ] {
        assert!(workflow.contains(job), "workflow lacks {job}:\n{workflow}");
    }
    assert!(
        workflow.contains("${{ secrets.SSH_PRIVATE_KEY }}"),
        "{workflow}"
    );

    // The scaffold is a valid Deployfile: hosts and the Laravel deploy flow load.
    let hosts = dep(dir.path(), &["hosts"]);
    assert_eq!(
        String::from_utf8_lossy(&hosts.stdout),
        "HOST        ADDRESS              USER  STAGE       ROLES\n\
         staging     staging.example.com  www   staging     app,web\n\
         production  prod.example.test    www   production  app,web\n"
    );
    let tree = String::from_utf8_lossy(&dep(dir.path(), &["tree", "deploy"]).stdout).into_owned();
    assert!(
        tree.contains("artisan:migrate [once]") && tree.contains("after: assets:build"),
        "{tree}"
    );
}

#[test]
fn init_refuses_to_overwrite_without_force() {
    let dir = laravel_dir();
    std::fs::write(dir.path().join("Deployfile.toml"), "# mine\n").unwrap();
    let out = dep(dir.path(), &["init", "--yes"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "error: `{}` exists already; `dep init --force` overwrites it\n",
            dir.path().join("Deployfile.toml").display()
        )
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("Deployfile.toml")).unwrap(),
        "# mine\n"
    );
    let out = dep(dir.path(), &["init", "--yes", "--force"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(std::fs::read_to_string(dir.path().join("Deployfile.toml"))
        .unwrap()
        .contains("[hosts.production]"));
}

#[test]
fn init_without_laravel_imports_no_recipe() {
    let dir = tempfile::tempdir().unwrap();
    let out = dep(dir.path(), &["init", "--yes"]);
    assert_eq!(out.status.code(), Some(0));
    let deployfile = std::fs::read_to_string(dir.path().join("Deployfile.toml")).unwrap();
    assert!(!deployfile.contains("import"), "{deployfile}");
    assert!(!deployfile.contains("php_fpm_service"));
}
