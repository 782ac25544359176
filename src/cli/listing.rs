//! `dep list`, `dep hosts` and `dep config`: what the project defines, as tables. Nothing
//! connects to a host.

use crate::cli::{select, Session};
use crate::config::project::Project;
use crate::config::vars::Var;
use crate::error::{Error, Result};
use crate::fleet::host_vars;
use crate::plan::TaskSet;
use crate::report::table;

pub fn list(tasks: &TaskSet) {
    let mut rows = vec![];
    for task in tasks.all() {
        rows.push([task.name.clone(), task.desc.clone()]);
    }
    rows.sort();
    print!("{}", table::render(&rows, ""));
}

pub fn hosts(project: &Project, selector: Option<String>) -> Result<()> {
    let hosts = select(project, selector.as_deref(), false)?;
    let mut rows = vec![["HOST", "ADDRESS", "USER", "STAGE", "ROLES"].map(String::from)];
    for host in hosts {
        let address = if host.local {
            "local".to_string()
        } else {
            match host.port {
                Some(port) => format!("{}:{port}", host.hostname),
                None => host.hostname.clone(),
            }
        };
        rows.push([
            host.name.clone(),
            address,
            host.login_user(),
            host.stage.clone().unwrap_or_default(),
            host.roles.join(","),
        ]);
    }
    print!("{}", table::render(&rows, ""));
    Ok(())
}

pub fn config(session: &Session<'_>, selector: Option<String>, only: Option<String>) -> Result<()> {
    let project = session.project;
    let mut hosts = session.select(selector.as_deref(), false)?;
    if let Some(only) = &only {
        hosts.retain(|h| &h.name == only);
        if hosts.is_empty() {
            return Err(Error::NoHostMatches {
                selector: only.clone(),
                hint: None,
                hosts: project.hosts.iter().map(|h| h.name.clone()).collect(),
                stages: project.stages.keys().cloned().collect(),
            });
        }
    }
    let mut out = String::new();
    let mut cut = false;
    for host in hosts {
        let mut vars = host_vars(project, host, &session.options)?;
        vars.set_placeholders(true);
        out.push_str(&format!("{}\n", host.name));
        let mut rows = vec![["NAME", "VALUE", "FROM"].map(String::from)];
        let names: Vec<String> = vars.names().cloned().collect();
        for name in names {
            let value = match vars.get(&name) {
                Some(Var::Dynamic(command)) => format!("{{ run = {command:?} }}"),
                _ => match vars.value_json(&name) {
                    Ok(serde_json::Value::String(s)) => s,
                    Ok(other) => other.to_string(),
                    Err(error) => format!("<error: {error}>"),
                },
            };
            let value = match in_a_cell(&value) {
                Some(cell) if !session.reporter.verbose() => {
                    cut = true;
                    cell
                }
                _ => value,
            };
            rows.push([name.clone(), value, vars.origin(&name).to_string()]);
        }
        out.push_str(&table::render(&rows, "  "));
    }
    if cut {
        out.push_str("(long values are cut to fit: `dep config -v` shows them whole)\n");
    }
    print!("{}", session.reporter.mask(&out));
    Ok(())
}

/// The widest value `dep config` shows whole in its table (`-v`: every value whole).
const CELL: usize = 56;

/// A value as one table cell: its first line, cut to fit, with how many lines it has (the
/// recipes' shell helpers run to dozens of lines, and would push every row off the screen).
/// None when the value fits as it is.
fn in_a_cell(value: &str) -> Option<String> {
    let lines = value.lines().count();
    let first = value.lines().next().unwrap_or_default();
    if lines <= 1 && first.chars().count() <= CELL {
        return None;
    }
    let mut cell: String = first.chars().take(CELL - 1).collect();
    cell.push('…');
    if lines > 1 {
        cell.push_str(&format!(" ({lines} lines)"));
    }
    Some(cell)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_value_shows_its_first_line_cut_to_fit() {
        assert_eq!(in_a_cell("main"), None);
        assert_eq!(in_a_cell(&"x".repeat(CELL)), None);
        assert_eq!(
            in_a_cell("f() {\n  true\n}").as_deref(),
            Some("f() {… (3 lines)")
        );
        let cell = in_a_cell(&"x".repeat(100)).unwrap();
        assert_eq!(cell, format!("{}…", "x".repeat(CELL - 1)));
    }
}
