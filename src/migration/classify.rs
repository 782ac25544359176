//! Which SQL statements break the release still serving once they ran: the old code reads and
//! writes the database the new release migrated until the switch. One classifier reads the
//! three dialects Laravel speaks (MySQL/MariaDB, PostgreSQL, SQLite): their quoting and their
//! own ways of dropping, renaming and retyping columns.

/// What a destructive statement does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destructive {
    DropTable,
    DropColumn,
    Rename,
    /// TRUNCATE, or a DELETE without WHERE (SQLite's truncate).
    Truncate,
    TypeChange,
    /// NOT NULL without a default on a table that exists: the old code's inserts fail.
    NotNullWithoutDefault,
    /// Laravel could not show the SQL (a column change through Doctrine DBAL).
    Uninspectable,
}

impl std::fmt::Display for Destructive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Destructive::DropTable => "drops a table",
            Destructive::DropColumn => "drops a column",
            Destructive::Rename => "renames a table or column",
            Destructive::Truncate => "deletes every row",
            Destructive::TypeChange => "changes a column's type",
            Destructive::NotNullWithoutDefault => {
                "makes a column of an existing table NOT NULL without a default"
            }
            Destructive::Uninspectable => "its SQL could not be shown, so it cannot be checked",
        })
    }
}

/// Whether `statement` is destructive, and how.
pub fn classify(statement: &str) -> Option<Destructive> {
    let sql = normalize(statement);
    let sql = sql.trim_end_matches(';').trim();
    if sql.starts_with("failed to dump queries") {
        return Some(Destructive::Uninspectable);
    }
    if sql.starts_with("drop table") {
        return Some(Destructive::DropTable);
    }
    if sql.starts_with("truncate") {
        return Some(Destructive::Truncate);
    }
    if sql.starts_with("delete from") && !sql.contains(" where ") {
        return Some(Destructive::Truncate);
    }
    if sql.starts_with("rename table") || sql.contains("sp_rename") {
        return Some(Destructive::Rename);
    }
    let rest = sql.strip_prefix("alter table ")?;
    let rest = strip_words(rest, &["if exists", "only"]);
    // Past the table's name: the actions, comma-separated.
    let (_, actions) = rest.split_once(' ')?;
    split_top_level(actions)
        .iter()
        .find_map(|action| classify_action(action.trim()))
}

/// One action of an ALTER TABLE.
fn classify_action(action: &str) -> Option<Destructive> {
    let word = |n: usize| action.split(' ').nth(n).unwrap_or("");
    match word(0) {
        "drop" => match word(1) {
            // Indexes and constraints: the old code does not name them.
            "index" | "key" | "foreign" | "primary" | "constraint" | "unique" | "check"
            | "default" | "fulltext" | "spatial" | "partition" => None,
            _ => Some(Destructive::DropColumn),
        },
        "rename" => match word(1) {
            "index" | "key" | "constraint" => None,
            _ => Some(Destructive::Rename),
        },
        "modify" | "change" => Some(Destructive::TypeChange),
        "alter" => {
            // alter [column] NAME type … | set data type … | set not null
            let after_name = if word(1) == "column" { 3 } else { 2 };
            let tail: Vec<&str> = action.split(' ').skip(after_name).collect();
            match tail.as_slice() {
                ["type", ..] | ["set", "data", "type", ..] => Some(Destructive::TypeChange),
                ["set", "not", "null", ..] => Some(Destructive::NotNullWithoutDefault),
                _ => None,
            }
        }
        "add" => match word(1) {
            "index" | "key" | "constraint" | "unique" | "primary" | "foreign" | "fulltext"
            | "spatial" | "check" | "partition" => None,
            _ if action.contains("not null")
                && !action.contains(" default ")
                && !action.contains("auto_increment")
                && !action.contains("generated ") =>
            {
                Some(Destructive::NotNullWithoutDefault)
            }
            _ => None,
        },
        _ => None,
    }
}

/// Lower case, identifiers unquoted (`"x"`, `` `x` ``, `[x]`), string literals emptied (a
/// default of 'drop table' is not a statement), whitespace collapsed.
fn normalize(statement: &str) -> String {
    let mut out = String::with_capacity(statement.len());
    let mut in_literal = false;
    for c in statement.chars() {
        if in_literal {
            if c == '\'' {
                in_literal = false;
                out.push('\'');
            }
            continue;
        }
        match c {
            '\'' => {
                in_literal = true;
                out.push('\'');
            }
            '"' | '`' | '[' | ']' => {}
            c if c.is_whitespace() => {
                if !out.ends_with(' ') {
                    out.push(' ');
                }
            }
            c => out.extend(c.to_lowercase()),
        }
    }
    out.trim().to_string()
}

fn strip_words<'s>(mut text: &'s str, words: &[&str]) -> &'s str {
    for word in words {
        if let Some(rest) = text.strip_prefix(word).and_then(|r| r.strip_prefix(' ')) {
            text = rest;
        }
    }
    text
}

/// `a int, b decimal(8, 2)` → [`a int`, ` b decimal(8, 2)`].
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (index, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::Destructive::*;
    use super::*;

    /// (dialect, statement as Laravel or a hand-written migration sends it, expected).
    const CASES: &[(&str, &str, Option<Destructive>)] = &[
        // MySQL / MariaDB
        ("mysql", "create table `tags` (`id` bigint unsigned not null auto_increment primary key, `name` varchar(255) not null) default character set utf8mb4 collate 'utf8mb4_unicode_ci'", None),
        ("mysql", "alter table `notes` add `title` varchar(255) null", None),
        ("mysql", "alter table `notes` add `title` varchar(255) not null default 'untitled'", None),
        ("mysql", "alter table `notes` add `title` varchar(255) not null", Some(NotNullWithoutDefault)),
        ("mysql", "alter table `notes` add `a` int null, add `b` decimal(8, 2) not null", Some(NotNullWithoutDefault)),
        ("mysql", "alter table `notes` add `id2` bigint unsigned not null auto_increment primary key", None),
        ("mysql", "alter table `notes` add unique `notes_title_unique`(`title`)", None),
        ("mysql", "alter table `notes` add index `notes_a_b_index`(`a`, `b`)", None),
        ("mysql", "alter table `notes` drop `body`", Some(DropColumn)),
        ("mysql", "alter table `notes` drop column `body`", Some(DropColumn)),
        ("mysql", "alter table `notes` drop index `notes_title_unique`", None),
        ("mysql", "alter table `notes` drop foreign key `notes_user_id_foreign`", None),
        ("mysql", "alter table `notes` drop primary key", None),
        ("mysql", "alter table `notes` rename column `body` to `content`", Some(Rename)),
        ("mysql", "alter table `notes` rename index `a` to `b`", None),
        ("mysql", "rename table `notes` to `posts`", Some(Rename)),
        ("mysql", "ALTER TABLE notes CHANGE body content TEXT", Some(TypeChange)),
        ("mysql", "alter table `notes` modify `body` varchar(100) null", Some(TypeChange)),
        ("mysql", "drop table if exists `notes`", Some(DropTable)),
        ("mysql", "truncate table `notes`", Some(Truncate)),
        ("mysql", "insert into `notes` (`body`) values ('drop table notes')", None),
        ("mysql", "update `notes` set `title` = `body` where `title` is null", None),
        // PostgreSQL
        ("pgsql", "create table \"tags\" (\"id\" bigserial primary key not null, \"name\" varchar(255) not null)", None),
        ("pgsql", "alter table \"notes\" add column \"title\" varchar(255) null", None),
        ("pgsql", "alter table \"notes\" add column \"title\" varchar(255) not null", Some(NotNullWithoutDefault)),
        ("pgsql", "alter table \"notes\" add column \"flag\" boolean not null default '0'", None),
        ("pgsql", "alter table \"notes\" drop column \"body\"", Some(DropColumn)),
        ("pgsql", "alter table \"notes\" drop constraint \"notes_title_unique\"", None),
        ("pgsql", "alter table \"notes\" rename column \"body\" to \"content\"", Some(Rename)),
        ("pgsql", "alter table \"notes\" rename to \"posts\"", Some(Rename)),
        ("pgsql", "alter table \"notes\" alter column \"body\" type text using (\"body\"::text)", Some(TypeChange)),
        ("pgsql", "ALTER TABLE notes ALTER COLUMN body SET DATA TYPE varchar(50)", Some(TypeChange)),
        ("pgsql", "alter table \"notes\" alter column \"title\" set not null", Some(NotNullWithoutDefault)),
        ("pgsql", "alter table \"notes\" alter column \"title\" drop not null", None),
        ("pgsql", "alter table \"notes\" alter column \"title\" set default 'x'", None),
        ("pgsql", "alter table if exists \"notes\" drop column \"body\"", Some(DropColumn)),
        ("pgsql", "drop table \"notes\"", Some(DropTable)),
        ("pgsql", "truncate \"notes\" restart identity cascade", Some(Truncate)),
        ("pgsql", "create index \"notes_title_index\" on \"notes\" (\"title\")", None),
        // SQLite
        ("sqlite", "create table \"tags\" (\"id\" integer not null primary key autoincrement, \"name\" varchar not null)", None),
        ("sqlite", "alter table \"notes\" add column \"title\" varchar", None),
        ("sqlite", "alter table \"notes\" add column \"title\" varchar not null default ''", None),
        ("sqlite", "alter table \"notes\" add column \"title\" varchar not null", Some(NotNullWithoutDefault)),
        ("sqlite", "alter table notes drop column body", Some(DropColumn)),
        ("sqlite", "alter table \"notes\" rename column \"body\" to \"content\"", Some(Rename)),
        ("sqlite", "alter table \"notes\" rename to \"posts\"", Some(Rename)),
        // Laravel's SQLite rebuild of a table for a column change: the drop of the original.
        ("sqlite", "CREATE TEMPORARY TABLE __temp__notes AS SELECT id, body FROM notes", None),
        ("sqlite", "DROP TABLE notes", Some(DropTable)),
        ("sqlite", "delete from \"notes\"", Some(Truncate)),
        ("sqlite", "delete from \"notes\" where \"id\" = 3", None),
        ("sqlite", "delete from sqlite_sequence where name = ?", None),
        ("sqlite", "NotesChange: failed to dump queries. This may be due to changing database columns using Doctrine, which is not supported while pretending to run migrations.", None),
        ("sqlite", "failed to dump queries. This may be due to changing database columns using Doctrine, which is not supported while pretending to run migrations.", Some(Uninspectable)),
        ("sqlite", "create unique index \"tags_name_unique\" on \"tags\" (\"name\")", None),
    ];

    #[test]
    fn statements_of_each_dialect_are_classified() {
        let mut wrong = Vec::new();
        for (dialect, statement, expected) in CASES {
            let found = classify(statement);
            if found != *expected {
                wrong.push(format!(
                    "{dialect}: {statement}\n  expected {expected:?}, found {found:?}"
                ));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        for dialect in ["mysql", "pgsql", "sqlite"] {
            assert!(
                CASES.iter().filter(|c| c.0 == dialect).count() >= 10,
                "{dialect}"
            );
        }
    }
}
