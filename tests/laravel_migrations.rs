//! Safe migrations, end to end on the real Laravel 8 application (`examples/laravel-app`,
//! deployed as tests/laravel.rs does, to a real OpenSSH host on loopback): a release whose
//! migration drops a column the live release still reads is refused before it migrates; one
//! whose migrations fail half way gets the backup `db:backup` took restored (verified); a safe
//! additive migration goes through, and `migrate:status` shows nothing pending; a destructive
//! migration named in `migrations_allow` goes through too.

use std::fs;

use crate::laravel::{migrations, notes, printed_by, sql, Setup, WATCHDOG};
use crate::support::process::Watchdog;
use crate::support::project::{TestProject, T1, T2, T3, T4};

const CREATE_NOTES: &str = "2024_01_01_000000_create_notes_table";
const DROP_BODY: &str = "2024_03_01_000000_drop_body_from_notes";
const CREATE_LABELS: &str = "2024_03_02_000000_create_labels_table";
const FILL_LABELS: &str = "2024_03_03_000000_fill_label_colors";
const ADD_TITLE: &str = "2024_03_04_000000_add_title_to_notes";
const T5: &str = "20250101140000";

/// A migration class `class` whose `up()` is `body`.
fn migration(class: &str, body: &str) -> String {
    format!(
        "<?php\n\nuse Illuminate\\Database\\Migrations\\Migration;\nuse Illuminate\\Database\\Schema\\Blueprint;\n\
         use Illuminate\\Support\\Facades\\DB;\nuse Illuminate\\Support\\Facades\\Schema;\n\n\
         class {class} extends Migration\n{{\n    public function up()\n    {{\n        {body}\n    }}\n}}\n"
    )
}

fn columns(setup: &Setup, table: &str) -> Vec<String> {
    sql(
        &setup.db,
        &format!("SELECT name FROM pragma_table_info('{table}')"),
    )
    .lines()
    .map(str::to_string)
    .collect()
}

fn tables(setup: &Setup) -> Vec<String> {
    sql(
        &setup.db,
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )
    .lines()
    .map(str::to_string)
    .collect()
}

#[test]
fn destructive_migrations_are_refused_failed_ones_restored_and_safe_ones_run() {
    let _watchdog = Watchdog::arm("laravel migrations", WATCHDOG * 2);
    let setup = Setup::new(1);
    let migration_file = |name: &str| format!("database/migrations/{name}.php");

    setup.dep(&["deploy", "test"], &[("DEP_NOW", T1)]).success();
    setup
        .dep(&["run", "host0", "--", "php artisan note:add keep-me"], &[])
        .success();
    let before = migrations(&setup.db);
    assert_eq!(before, [format!("1|{CREATE_NOTES}")]);

    // A release that drops a column the live release reads: refused before it migrates.
    setup.project.write(
        &migration_file(DROP_BODY),
        &migration(
            "DropBodyFromNotes",
            "DB::statement('alter table notes drop column body');",
        ),
    );
    let refused = setup.dep(&["-vv", "deploy", "test"], &[("DEP_NOW", T2)]);
    refused
        .expect_status(1)
        .stderr_has("artisan:migrate:check")
        .stderr_has("migration `drop_body_from_notes` would break the release still serving (drops a column): alter table notes drop column body")
        .stderr_has("allow_destructive_migrations");
    // The pretend run showed the pending SQL before anything ran, at any verbosity.
    refused.stdout_has(
        "[host0] 1 migration pending:\n[host0]   drop_body_from_notes\n[host0]     alter table notes drop column body\n",
    );
    assert_eq!(
        printed_by(
            &refused,
            "DropBodyFromNotes: alter table notes drop column body"
        ),
        ["host0"],
        "{}",
        refused.transcript()
    );
    assert_eq!(setup.link(0, "current").as_deref(), Some(T1));
    assert_eq!(
        columns(&setup, "notes"),
        ["id", "body", "created_at", "updated_at"]
    );
    assert_eq!(notes(&setup.db), ["keep-me"]);
    assert_eq!(migrations(&setup.db), before);
    fs::remove_file(setup.project.join(&migration_file(DROP_BODY))).unwrap();

    // Migrations that fail half way: the first creates a table and a row, the second fails.
    setup.project.write(
        &migration_file(CREATE_LABELS),
        &migration(
            "CreateLabelsTable",
            "Schema::create('labels', function (Blueprint $table) { $table->id(); $table->string('name'); });\n        \
             DB::table('labels')->insert(['name' => 'urgent']);",
        ),
    );
    setup.project.write(
        &migration_file(FILL_LABELS),
        &migration(
            "FillLabelColors",
            "DB::table('label_colors')->insert(['label' => 'urgent', 'color' => 'red']);",
        ),
    );
    let failed = setup.dep(&["-vv", "deploy", "test"], &[("DEP_NOW", T3)]);
    failed.expect_status(1).stderr_has("artisan:migrate");
    assert_eq!(
        printed_by(&failed, &format!("Migrated:  {CREATE_LABELS}")),
        ["host0"],
        "{}",
        failed.transcript()
    );
    assert_eq!(
        printed_by(&failed, "artisan:migrate: restored "),
        ["host0"],
        "{}",
        failed.transcript()
    );
    assert!(
        failed.stdout.contains("and verified"),
        "{}",
        failed.transcript()
    );
    assert_eq!(setup.link(0, "current").as_deref(), Some(T1));
    assert_eq!(tables(&setup), ["migrations", "notes"]);
    assert_eq!(migrations(&setup.db), before);
    assert_eq!(notes(&setup.db), ["keep-me"]);
    for name in [CREATE_LABELS, FILL_LABELS] {
        fs::remove_file(setup.project.join(&migration_file(name))).unwrap();
    }

    // A safe additive migration (a nullable column) goes through; nothing is left pending.
    setup.project.write(
        &migration_file(ADD_TITLE),
        &migration(
            "AddTitleToNotes",
            "Schema::table('notes', function (Blueprint $table) { $table->string('title')->nullable(); });",
        ),
    );
    let additive = setup.dep(&["-vv", "deploy", "test"], &[("DEP_NOW", T4)]);
    additive.success();
    assert_eq!(setup.link(0, "current").as_deref(), Some(T4));
    assert!(columns(&setup, "notes").contains(&"title".to_string()));
    assert_eq!(
        printed_by(
            &additive,
            "artisan:migrate: migrate:status shows nothing pending"
        ),
        ["host0"],
        "{}",
        additive.transcript()
    );
    assert_eq!(
        migrations(&setup.db),
        [format!("1|{CREATE_NOTES}"), format!("2|{ADD_TITLE}")]
    );

    // The destructive one, named in `migrations_allow` (here with `-o`): let through.
    setup.project.write(
        &migration_file(DROP_BODY),
        &migration(
            "DropBodyFromNotes",
            "DB::statement('alter table notes drop column body');",
        ),
    );
    let allowed_name = format!("migrations_allow={DROP_BODY}.php");
    setup
        .dep(&["-o", &allowed_name, "deploy", "test"], &[("DEP_NOW", T5)])
        .success();
    assert_eq!(setup.link(0, "current").as_deref(), Some(T5));
    assert!(!columns(&setup, "notes").contains(&"body".to_string()));
}

/// `check_output = "migrations"` in a recipe of one's own (local hosts, no PHP): Laravel 9+'s
/// pretend output is read too; a bad `allow_destructive_migrations` is an error naming it.
#[test]
fn a_task_of_ones_own_can_check_its_migrations() {
    let pretend = "printf '  2024_03_01_000000_rename_notes ....\\n  ⇂ alter table `notes` rename to `posts`\\n'";
    let project = TestProject::new().fleet(1).deployfile(&format!(
        "[tasks.\"app:pretend\"]\nrun = \"{pretend}\"\ncheck_output = \"migrations\"\nafter = \"deploy:update_code\"\n"
    ));
    let refused = project.dep(&["deploy", "test"]).now(T1).status(1).run();
    refused
        .stdout_has("[h1] 1 migration pending:\n[h1]   2024_03_01_000000_rename_notes\n[h1]     alter table `notes` rename to `posts`\n")
        .stderr_has("task `app:pretend`: migration `2024_03_01_000000_rename_notes` would break the release still serving (renames a table or column): alter table `notes` rename to `posts`");
    assert_eq!(project.current("h1"), None);

    project
        .dep(&["-o", "migrations_allow=rename_notes", "deploy", "test"])
        .now(T2)
        .run()
        .success();
    assert_eq!(project.current("h1").as_deref(), Some(T2));

    project
        .dep(&["-o", "allow_destructive_migrations=maybe", "deploy", "test"])
        .now(T3)
        .status(1)
        .run()
        .stderr_has("`allow_destructive_migrations` must be true or false, not `maybe`");
}
