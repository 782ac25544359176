//! The output of `artisan migrate --pretend`, as the migrations it would run and their SQL.
//! Laravel 8 prints one `ClassName: statement` line per statement (the file name instead of a
//! class name for an anonymous migration); Laravel 9 and later print the file name, dots, then
//! one `⇂ statement` line per statement. A statement that spans lines keeps its later lines.

/// One pending migration and the statements it would run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// As printed: the file name without `.php`, or the class name (Laravel 8).
    pub name: String,
    pub statements: Vec<String>,
}

impl Migration {
    /// The name a user writes in `migrations_allow`: the file name as printed, or for a class
    /// name its file name without the date prefix (`DropBodyFromNotes` → `drop_body_from_notes`).
    pub fn file_name(&self) -> String {
        if is_file_name(&self.name) {
            return self.name.clone();
        }
        let class = self.name.rsplit('\\').next().unwrap_or(&self.name);
        let mut snake = String::new();
        for (index, c) in class.chars().enumerate() {
            if c.is_uppercase() && index > 0 {
                snake.push('_');
            }
            snake.extend(c.to_lowercase());
        }
        snake
    }

    /// Whether `entry` (a file name, with or without its date prefix and `.php`) names it.
    pub fn is_named(&self, entry: &str) -> bool {
        let entry = entry.strip_suffix(".php").unwrap_or(entry);
        let file = self.file_name();
        entry == file || without_date(entry) == without_date(&file)
    }
}

/// `2024_03_01_000000_drop_body` → `drop_body`.
fn without_date(name: &str) -> &str {
    let prefix = name.as_bytes().iter().take(18);
    let shape = b"dddd_dd_dd_dddddd_";
    let dated = name.len() > 18
        && prefix.zip(shape).all(|(c, s)| match s {
            b'd' => c.is_ascii_digit(),
            _ => c == s,
        });
    if dated {
        &name[18..]
    } else {
        name
    }
}

fn is_file_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '\\')
}

/// The migrations of a pretend run, in order.
pub fn parse(output: &str) -> Vec<Migration> {
    let mut migrations: Vec<Migration> = Vec::new();
    // The last line was a statement: a line that fits no shape continues it.
    let mut in_statement = false;
    for raw in output.lines() {
        let line = raw.trim();
        if line.is_empty() {
            in_statement = false;
            continue;
        }
        // Laravel 9+: `⇂ statement` under the file name.
        if let Some(statement) = line.strip_prefix('⇂') {
            if let Some(last) = migrations.last_mut() {
                last.statements.push(statement.trim().to_string());
                in_statement = true;
            }
            continue;
        }
        // Laravel 9+: `2024_01_01_000000_create_notes_table .......... `.
        let (head, rest) = line.split_once(' ').unwrap_or((line, ""));
        if is_file_name(head) && head.contains('_') && rest.trim().chars().all(|c| c == '.') {
            migrations.push(Migration {
                name: head.to_string(),
                statements: Vec::new(),
            });
            in_statement = false;
            continue;
        }
        // Laravel 8: `ClassName: statement`.
        if let Some((name, statement)) = line.split_once(": ") {
            if is_identifier(name) {
                match migrations.last_mut() {
                    Some(last) if last.name == name => {}
                    _ => migrations.push(Migration {
                        name: name.to_string(),
                        statements: Vec::new(),
                    }),
                }
                let last = migrations.last_mut().expect("just pushed");
                last.statements.push(statement.trim().to_string());
                in_statement = true;
                continue;
            }
        }
        if in_statement {
            if let Some(statement) = migrations.last_mut().and_then(|m| m.statements.last_mut()) {
                statement.push('\n');
                statement.push_str(line);
            }
        }
        // Anything else (`INFO  Running migrations.`, `Nothing to migrate.`) is not SQL.
    }
    migrations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_and_statements(output: &str) -> Vec<(String, Vec<String>)> {
        parse(output)
            .into_iter()
            .map(|m| (m.name, m.statements))
            .collect()
    }

    #[test]
    fn laravel_8_lines_name_the_class() {
        let output = "CreateTagsTable: create table \"tags\" (\"id\" integer not null primary key autoincrement, \"name\" varchar not null)\n\
CreateTagsTable: create unique index \"tags_name_unique\" on \"tags\" (\"name\")\n\
DropBodyFromNotes: alter table notes drop column body\n";
        assert_eq!(
            names_and_statements(output),
            [
                (
                    "CreateTagsTable".to_string(),
                    vec![
                        "create table \"tags\" (\"id\" integer not null primary key autoincrement, \"name\" varchar not null)".to_string(),
                        "create unique index \"tags_name_unique\" on \"tags\" (\"name\")".to_string(),
                    ]
                ),
                (
                    "DropBodyFromNotes".to_string(),
                    vec!["alter table notes drop column body".to_string()]
                ),
            ]
        );
        assert_eq!(parse(output)[1].file_name(), "drop_body_from_notes");
    }

    #[test]
    fn laravel_10_lines_name_the_file() {
        let output = "\n   INFO  Running migrations.  \n\n  2024_02_01_000000_create_tags_table .................................. \n  ⇂ create table `tags` (`id` bigint unsigned not null auto_increment primary key)  \n  ⇂ alter table `tags` add unique `tags_name_unique`(`name`)  \n  2024_03_01_000000_drop_body ......... \n  ⇂ alter table `notes` drop `body`  \n\n";
        let parsed = parse(output);
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].name, "2024_02_01_000000_create_tags_table");
        assert_eq!(parsed[0].statements.len(), 2);
        assert_eq!(parsed[1].statements, ["alter table `notes` drop `body`"]);
        assert!(parsed[1].is_named("2024_03_01_000000_drop_body.php"));
        assert!(parsed[1].is_named("drop_body"));
        assert!(!parsed[1].is_named("drop"));
    }

    #[test]
    fn a_statement_over_several_lines_is_one_and_other_lines_are_not_sql() {
        let output = "Nothing to migrate.\nBackfill: update notes\nset title = body\nwhere title is null\n\nDone.\n";
        assert_eq!(
            names_and_statements(output),
            [(
                "Backfill".to_string(),
                vec!["update notes\nset title = body\nwhere title is null".to_string()]
            )]
        );
        assert!(parse("Nothing to migrate.\n").is_empty());
    }
}
