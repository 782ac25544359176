//! Host selectors: `production`, `web1`, `role=web`, `stage=production&role=db`, comma for "or".

use crate::config::host::Host;
use crate::error::{Error, Result};

/// A parsed selector: a list of alternatives, each a list of terms that must all hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    text: String,
    alternatives: Vec<Vec<Term>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Term {
    /// A bare word: a stage name or a host name.
    Name(String),
    Stage(String),
    Role(String),
    Host(String),
}

impl Selector {
    pub fn parse(text: &str) -> Result<Selector> {
        let mut alternatives = Vec::new();
        for alternative in text.split(',') {
            let mut terms = Vec::new();
            for term in alternative.split('&') {
                let term = term.trim();
                if term.is_empty() {
                    return Err(Error::Usage(format!("selector `{text}` has an empty term")));
                }
                terms.push(match term.split_once('=') {
                    None => Term::Name(term.to_string()),
                    Some(("stage", v)) => Term::Stage(v.trim().to_string()),
                    Some(("role", v)) => Term::Role(v.trim().to_string()),
                    Some(("host", v)) => Term::Host(v.trim().to_string()),
                    Some((key, _)) => {
                        return Err(Error::Usage(format!(
                            "selector `{text}`: unknown term `{key}=` (use `stage=`, `role=` or `host=`)"
                        )))
                    }
                });
            }
            alternatives.push(terms);
        }
        Ok(Selector {
            text: text.to_string(),
            alternatives,
        })
    }

    pub fn matches(&self, host: &Host) -> bool {
        self.alternatives.iter().any(|terms| {
            terms.iter().all(|term| match term {
                Term::Name(name) => host.name == *name || host.stage.as_deref() == Some(name),
                Term::Stage(stage) => host.stage.as_deref() == Some(stage),
                Term::Role(role) => host.roles.iter().any(|r| r == role),
                Term::Host(name) => host.name == *name,
            })
        })
    }

    /// The hosts this selector picks, in Deployfile order; none is an error listing what exists.
    pub fn select<'a>(&self, hosts: &'a [Host]) -> Result<Vec<&'a Host>> {
        let selected: Vec<&Host> = hosts.iter().filter(|host| self.matches(host)).collect();
        if selected.is_empty() {
            let mut stages: Vec<String> = hosts.iter().filter_map(|h| h.stage.clone()).collect();
            stages.dedup();
            stages.sort();
            stages.dedup();
            return Err(Error::NoHostMatches {
                selector: self.text.clone(),
                hosts: hosts.iter().map(|h| h.name.clone()).collect(),
                stages,
            });
        }
        Ok(selected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, stage: &str, roles: &[&str]) -> Host {
        Host {
            stage: Some(stage.into()),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            ..Host::named(name)
        }
    }

    #[test]
    fn selector_table() {
        let hosts = vec![
            host("web1", "production", &["app", "web"]),
            host("web2", "production", &["web"]),
            host("db1", "production", &["db"]),
            host("stage1", "staging", &["web", "db"]),
        ];
        let cases: &[(&str, &[&str])] = &[
            ("production", &["web1", "web2", "db1"]),
            ("web2", &["web2"]),
            ("role=web", &["web1", "web2", "stage1"]),
            ("stage=production&role=web", &["web1", "web2"]),
            ("role=db , web1", &["web1", "db1", "stage1"]),
            ("host=stage1", &["stage1"]),
        ];
        for (text, expected) in cases {
            let names: Vec<&str> = Selector::parse(text)
                .unwrap()
                .select(&hosts)
                .unwrap()
                .iter()
                .map(|h| h.name.as_str())
                .collect();
            assert_eq!(names, *expected, "selector {text}");
        }
    }

    #[test]
    fn no_match_lists_what_exists() {
        let hosts = vec![host("web1", "production", &[]), host("s1", "staging", &[])];
        let error = Selector::parse("prod")
            .unwrap()
            .select(&hosts)
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "no host matches `prod`\n  hosts: web1, s1\n  stages: production, staging"
        );
        assert!(Selector::parse("colour=red").is_err());
        assert!(Selector::parse("a,,b").is_err());
    }
}
