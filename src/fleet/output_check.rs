//! `check_output`: what dep reads in a task's output once it ran, and the failure it makes of
//! it. `migrations`: the SQL of a `migrate --pretend` run, refused when destructive unless
//! `allow_destructive_migrations` or `migrations_allow` lets it through.

use serde_json::Value;

use crate::config::deployfile::OutputCheck;
use crate::config::vars::Vars;
use crate::migration::{self, Policy};

/// The variable that lets every destructive migration through.
pub const ALLOW_ALL: &str = "allow_destructive_migrations";
/// The variable that lets the migrations it names through.
pub const ALLOW: &str = "migrations_allow";

/// The host's policy, from its variables (both optional).
pub fn policy(vars: &Vars) -> Result<Policy, String> {
    let value = |name: &str| -> Result<Option<Value>, String> {
        if vars.get(name).is_none() {
            return Ok(None);
        }
        vars.value_json(name)
            .map(Some)
            .map_err(|e| format!("`{name}`: {e}"))
    };
    let allow_all = match value(ALLOW_ALL)? {
        None => false,
        Some(Value::Bool(on)) => on,
        Some(Value::String(text)) => match text.trim() {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" | "" => false,
            other => {
                return Err(format!(
                    "`{ALLOW_ALL}` must be true or false, not `{other}` (from {})",
                    vars.origin(ALLOW_ALL)
                ))
            }
        },
        Some(other) => {
            return Err(format!(
                "`{ALLOW_ALL}` must be true or false, not `{other}` (from {})",
                vars.origin(ALLOW_ALL)
            ))
        }
    };
    let allowed = match value(ALLOW)? {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(name) => Ok(name.clone()),
                other => Err(format!(
                    "`{ALLOW}` lists migration file names, not `{other}` (from {})",
                    vars.origin(ALLOW)
                )),
            })
            .collect::<Result<_, _>>()?,
        // From `-o` or the environment: comma-separated names.
        Some(Value::String(text)) => text
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(str::to_string)
            .collect(),
        Some(other) => {
            return Err(format!(
                "`{ALLOW}` must be a list of migration file names, not `{other}` (from {})",
                vars.origin(ALLOW)
            ))
        }
    };
    Ok(Policy { allow_all, allowed })
}

/// What `output` shows the user: the pending migrations and their SQL.
pub fn shown(check: OutputCheck, output: &str) -> Vec<migration::pretend::Migration> {
    match check {
        OutputCheck::Migrations => migration::pretend::parse(output),
    }
}

/// Check `output` as `check` says; the message of the task's failure otherwise.
pub fn check(check: OutputCheck, output: &str, policy: &Policy) -> Result<(), String> {
    if output.contains(crate::transport::OUTPUT_CUT) {
        return Err(format!(
            "it printed more than the {} MiB dep reads to check it, so it could not all be checked",
            crate::transport::KEPT_BYTES / (1024 * 1024)
        ));
    }
    match check {
        OutputCheck::Migrations => {
            let refusals = migration::refusals(output, policy);
            if refusals.is_empty() {
                Ok(())
            } else {
                Err(migration::refusal_message(&refusals))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_cut_short_is_never_taken_for_safe() {
        let policy = Policy {
            allow_all: true,
            allowed: Vec::new(),
        };
        let cut = format!(
            "CreateNotes: create table \"notes\" (\"id\" integer)\n{}",
            crate::transport::OUTPUT_CUT
        );
        let refused = check(OutputCheck::Migrations, &cut, &policy).unwrap_err();
        assert!(refused.contains("could not all be checked"), "{refused}");
        let whole = "CreateNotes: create table \"notes\" (\"id\" integer)\n";
        assert_eq!(check(OutputCheck::Migrations, whole, &policy), Ok(()));
    }
}
