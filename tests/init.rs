//! `dep init` on a Laravel-shaped directory: what it writes, that the result loads, and that it
//! refuses to overwrite without --force.

use crate::support::project::TestProject;

/// An empty project (no Deployfile) that looks like a Laravel app.
fn laravel_dir() -> TestProject {
    TestProject::empty()
        .no_deployfile()
        .file(
            "composer.json",
            r#"{"require": {"laravel/framework": "^8.83"}}"#,
        )
        .file("artisan", "<?php\n")
}

#[test]
fn init_scaffolds_a_laravel_deployfile_and_workflow_that_load() {
    let dir = laravel_dir();
    dir.dep(&[
        "init",
        "--yes",
        "--application",
        "shop",
        "--production-host",
        "prod.example.test",
        "--user",
        "www",
    ])
    .stdout(
        "wrote Deployfile.toml\nwrote .github/workflows/deploy.yml\n\
         next: check the hosts in Deployfile.toml, then `dep deploy staging --dry-run`\n\
         CI: set the secrets SSH_PRIVATE_KEY and SSH_KNOWN_HOSTS and the variable DEP_URL (dep's docs/ci.md)\n",
    )
    .stderr("")
    .run();
    let deployfile = dir.read("Deployfile.toml").unwrap();
    assert!(
        deployfile.contains("import = [\"laravel\"]"),
        "{deployfile}"
    );
    assert!(deployfile.contains("application = \"shop\""));
    assert!(deployfile.contains("deploy_path = \"/var/www/{{ application }}\""));
    let workflow = dir.read(".github/workflows/deploy.yml").unwrap();
    for job in [
        "test:",
        "build:",
        "staging:",
        "production:",
        "dep deploy staging",
        "dep promote staging production",
        "php artisan test",
    ] {
        assert!(workflow.contains(job), "workflow lacks {job}:\n{workflow}");
    }
    assert!(
        workflow.contains("${{ secrets.SSH_PRIVATE_KEY }}"),
        "{workflow}"
    );

    // The scaffold is a valid Deployfile: hosts and the Laravel deploy flow load.
    dir.dep(&["hosts"])
        .stdout(
            "HOST        ADDRESS              USER  STAGE       ROLES\n\
             staging     staging.example.com  www   staging     app,web\n\
             production  prod.example.test    www   production  app,web\n",
        )
        .stderr("")
        .run();
    // `dep config` fits the recipe's many-line shell helpers in its table; -v shows them whole.
    let config = dir.run(&["config", "staging"]);
    config.success();
    let helpers = config
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("db_functions "))
        .unwrap_or_else(|| panic!("no db_functions:\n{}", config.stdout));
    assert!(
        helpers.contains("lines)") && helpers.len() < 160,
        "{helpers}"
    );
    assert!(
        config.stdout.lines().all(|l| l.chars().count() < 160),
        "{}",
        config.stdout
    );
    config.stdout_has("`dep config -v` shows them whole");
    dir.run(&["config", "staging", "-v"])
        .stdout_has("\ndb_dump() {\n");
    let tree = dir.run(&["tree", "deploy"]).stdout;
    assert!(
        tree.contains("artisan:migrate [once]") && tree.contains("after: assets:build"),
        "{tree}"
    );
}

#[test]
fn init_refuses_to_overwrite_without_force() {
    let dir = laravel_dir();
    dir.write("Deployfile.toml", "# mine\n");
    let output = dir
        .dep(&["init", "--yes"])
        .status(2)
        .stdout("")
        .stderr(&format!(
            "error: `{}` exists already; `dep init --force` overwrites it\n",
            dir.join("Deployfile.toml").display()
        ))
        .run();
    // Unnormalised too: the path is the one dep was run in.
    assert_eq!(
        output.stderr,
        format!(
            "error: `{}` exists already; `dep init --force` overwrites it\n",
            dir.join("Deployfile.toml").display()
        )
    );
    assert_eq!(dir.read("Deployfile.toml").unwrap(), "# mine\n");
    dir.dep(&["init", "--yes", "--force"]).run();
    assert!(dir
        .read("Deployfile.toml")
        .unwrap()
        .contains("[hosts.production]"));
}

#[test]
fn init_without_laravel_imports_no_recipe() {
    let dir = TestProject::empty().no_deployfile();
    dir.dep(&["init", "--yes"]).run();
    let deployfile = dir.read("Deployfile.toml").unwrap();
    assert!(!deployfile.contains("import"), "{deployfile}");
    assert!(!deployfile.contains("php_fpm_service"));
}
