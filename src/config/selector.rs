//! Host selectors: `production`, `web1`, `role=web`, `stage=production&role=db`, comma for "or".

use crate::config::host::Host;
use crate::error::{Error, Result};

/// A parsed selector: a list of alternatives, each a list of terms that must all hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    text: String,
    alternatives: Vec<Alternative>,
}

/// One alternative (between commas), as written and as terms.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Alternative {
    text: String,
    terms: Vec<Term>,
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
            alternatives.push(Alternative {
                text: alternative.trim().to_string(),
                terms,
            });
        }
        Ok(Selector {
            text: text.to_string(),
            alternatives,
        })
    }

    pub fn matches(&self, host: &Host) -> bool {
        self.alternatives.iter().any(|a| a.matches(host))
    }

    /// The hosts this selector picks, in Deployfile order. An alternative that picks none is an
    /// error (a mistyped name in `web1,web3` would deploy to part of the fleet), listing what
    /// exists: the hosts, and the stages they have or the Deployfile declares (`declared`).
    pub fn select<'a>(&self, hosts: &'a [Host], declared: &[&str]) -> Result<Vec<&'a Host>> {
        let Some(empty) = self
            .alternatives
            .iter()
            .find(|a| !hosts.iter().any(|h| a.matches(h)))
        else {
            return Ok(hosts.iter().filter(|host| self.matches(host)).collect());
        };
        let mut stages: Vec<String> = hosts
            .iter()
            .filter_map(|h| h.stage.clone())
            .chain(declared.iter().map(|s| s.to_string()))
            .collect();
        stages.sort();
        stages.dedup();
        let names: Vec<&str> = hosts
            .iter()
            .map(|h| h.name.as_str())
            .chain(stages.iter().map(String::as_str))
            .collect();
        let hint = empty
            .terms
            .iter()
            .find_map(|term| match term {
                Term::Name(name) | Term::Stage(name)
                    if declared.contains(&name.as_str())
                        && !hosts.iter().any(|h| h.stage.as_deref() == Some(name)) =>
                {
                    Some(format!("stage `{name}` has no hosts"))
                }
                // A stage that has hosts, narrowed to none by another term: that term says why.
                Term::Name(name) | Term::Stage(name)
                    if hosts.iter().any(|h| h.stage.as_deref() == Some(name)) =>
                {
                    None
                }
                Term::Name(name) | Term::Stage(name) | Term::Host(name) => {
                    crate::suggestion::suggest(name, names.iter().copied())
                        .map(|close| format!("did you mean `{close}`?"))
                }
                Term::Role(_) => None,
            })
            .or_else(|| {
                (self.alternatives.len() > 1).then(|| format!("(in the selector `{}`)", self.text))
            });
        Err(Error::NoHostMatches {
            selector: empty.text.clone(),
            hint,
            hosts: hosts.iter().map(|h| h.name.clone()).collect(),
            stages,
        })
    }
}

impl Alternative {
    fn matches(&self, host: &Host) -> bool {
        self.terms.iter().all(|term| match term {
            Term::Name(name) => host.name == *name || host.stage.as_deref() == Some(name),
            Term::Stage(stage) => host.stage.as_deref() == Some(stage),
            Term::Role(role) => host.roles.iter().any(|r| r == role),
            Term::Host(name) => host.name == *name,
        })
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
                .select(&hosts, &[])
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
        let error = |text: &str, declared: &[&str]| {
            Selector::parse(text)
                .unwrap()
                .select(&hosts, declared)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            error("prod", &[]),
            "no host matches `prod`\n  hosts: web1, s1\n  stages: production, staging"
        );
        // One part of several matching nothing is refused too: a typo never narrows a deploy.
        assert_eq!(
            error("web1,web2", &[]),
            "no host matches `web2`\n  did you mean `web1`?\n  hosts: web1, s1\n  stages: production, staging"
        );
        assert_eq!(
            error("web1, role=db", &[]),
            "no host matches `role=db`\n  (in the selector `web1, role=db`)\n  hosts: web1, s1\n  stages: production, staging"
        );
        // Its hosts narrowed to none by the role: no word about the stage.
        assert_eq!(
            error("production&role=db", &["production"]),
            "no host matches `production&role=db`\n  hosts: web1, s1\n  stages: production, staging"
        );
        assert_eq!(
            error("qa", &["qa"]),
            "no host matches `qa`\n  stage `qa` has no hosts\n  hosts: web1, s1\n  stages: production, qa, staging"
        );
        assert!(Selector::parse("colour=red").is_err());
        assert!(Selector::parse("a,,b").is_err());
    }
}
