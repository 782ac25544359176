//! Safe migrations: the pending migrations and their SQL as a `migrate --pretend` run prints
//! them (`pretend`), which of their statements would break the release still serving
//! (`classify`), and the policy that lets some through (`Policy`).

pub mod classify;
pub mod pretend;

use classify::Destructive;
use pretend::Migration;

/// What lets a destructive migration through: `allow_destructive_migrations = true`, or its
/// file name (with or without the date prefix and `.php`) in `migrations_allow`.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub allow_all: bool,
    pub allowed: Vec<String>,
}

impl Policy {
    pub fn allows(&self, migration: &Migration) -> bool {
        self.allow_all
            || self
                .allowed
                .iter()
                .any(|entry| migration.is_named(entry.trim()))
    }
}

/// A destructive statement that the policy does not let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The migration, as `migrate --pretend` names it (file name, or class name on Laravel 8).
    pub migration: String,
    pub statement: String,
    pub kind: Destructive,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "migration `{}` would break the release still serving ({}): {}",
            self.migration, self.kind, self.statement
        )
    }
}

/// Every destructive statement of `output` (a `migrate --pretend` run) the policy refuses.
pub fn refusals(output: &str, policy: &Policy) -> Vec<Refusal> {
    pretend::parse(output)
        .into_iter()
        .filter(|migration| !policy.allows(migration))
        .flat_map(|migration| {
            migration
                .statements
                .iter()
                .filter_map(|statement| {
                    classify::classify(statement).map(|kind| Refusal {
                        migration: migration.file_name(),
                        statement: statement.clone(),
                        kind,
                    })
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The error for a task whose pretend output holds refused statements: each one, then how to
/// let them through.
pub fn refusal_message(refusals: &[Refusal]) -> String {
    let mut message = refusals
        .iter()
        .map(Refusal::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    message.push_str(
        ". Use expand/contract (add nullable, dual write, backfill, switch, drop in a later \
         release), or let it through with `allow_destructive_migrations = true` (`-o \
         allow_destructive_migrations=true`) or the file name in `migrations_allow`",
    );
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "CreateTagsTable: create table \"tags\" (\"id\" integer not null primary key autoincrement)\n\
DropBodyFromNotes: alter table notes drop column body\n";

    #[test]
    fn refusals_name_the_migration_and_the_statement() {
        let found = refusals(OUTPUT, &Policy::default());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].migration, "drop_body_from_notes");
        assert_eq!(found[0].statement, "alter table notes drop column body");
        assert_eq!(found[0].kind, Destructive::DropColumn);
        let message = refusal_message(&found);
        assert!(
            message.starts_with(
                "migration `drop_body_from_notes` would break the release still serving (drops a column): alter table notes drop column body."
            ),
            "{message}"
        );
    }

    #[test]
    fn the_policy_lets_all_or_named_migrations_through() {
        let all = Policy {
            allow_all: true,
            allowed: vec![],
        };
        assert!(refusals(OUTPUT, &all).is_empty());
        for name in [
            "drop_body_from_notes",
            "2024_03_01_000000_drop_body_from_notes",
            "2024_03_01_000000_drop_body_from_notes.php",
        ] {
            let named = Policy {
                allow_all: false,
                allowed: vec![name.into()],
            };
            assert!(refusals(OUTPUT, &named).is_empty(), "{name}");
        }
        let other = Policy {
            allow_all: false,
            allowed: vec!["create_tags_table".into()],
        };
        assert_eq!(refusals(OUTPUT, &other).len(), 1);
    }
}
