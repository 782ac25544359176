//! `dep promote FROM TO`, its first half: what is live on stage FROM, provided every host of it
//! agrees and it passes its health checks now. The second half is a deploy of TO pinned to that
//! (the revision, or the sha256 the bytes must have: `code::resolve` checks them).

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::release::PromotedFrom;

use super::Fleet;

/// What a promotion ships: FROM's live release as its releases log recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promotion {
    pub from: PromotedFrom,
    /// The commit (git strategy; also recorded by uploads made from a git checkout).
    pub revision: Option<String>,
    pub branch: Option<String>,
    /// The digest of the bytes sent (upload and artifact strategies).
    pub sha256: Option<String>,
}

/// One host's live release and what its log says of it: hosts agree when these are equal.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Live {
    release: String,
    revision: Option<String>,
    sha256: Option<String>,
}

impl Fleet<'_> {
    /// The release live on every host of this fleet (stage `stage`; on a blue-green stage, every
    /// host of its live color), refused when the hosts disagree on it or it fails its health
    /// checks now. Changes nothing anywhere.
    pub async fn promotable(&mut self, stage: &str) -> Result<Promotion> {
        self.read_states().await?;
        let refused = |why: String| {
            Error::Refused(format!(
                "promotion from `{stage}` refused, nothing was changed: {why}"
            ))
        };
        // On a blue-green stage, the live color's hosts.
        let serving = self.serving().map_err(|e| refused(e.to_string()))?;
        // Each host's live release and what its log says of it.
        let mut live: BTreeMap<Option<Live>, Vec<&str>> = BTreeMap::new();
        for host in serving.iter().map(|&i| &self.hosts[i]) {
            let entry = host.state.current.as_ref().map(|current| {
                let logged = host
                    .state
                    .statuses()
                    .get(current.as_str())
                    .copied()
                    .cloned();
                Live {
                    release: current.clone(),
                    revision: logged.as_ref().and_then(|e| e.revision.clone()),
                    sha256: logged.and_then(|e| e.sha256),
                }
            });
            live.entry(entry).or_default().push(host.name());
        }
        if live.len() != 1 || live.contains_key(&None) {
            let lines: Vec<String> = live
                .iter()
                .map(|(entry, hosts)| match entry {
                    Some(Live {
                        release,
                        revision,
                        sha256,
                    }) => format!(
                        "{}: {release}{}{}",
                        hosts.join(", "),
                        revision
                            .as_ref()
                            .map(|r| format!(" (revision {r})"))
                            .unwrap_or_default(),
                        sha256
                            .as_ref()
                            .map(|s| format!(" (sha256 {s})"))
                            .unwrap_or_default(),
                    ),
                    None => format!("{}: no live release", hosts.join(", ")),
                })
                .collect();
            return Err(refused(format!(
                "its hosts do not all serve the same release:\n  {}",
                lines.join("\n  ")
            )));
        }
        let release = live
            .into_keys()
            .next()
            .flatten()
            .map(|live| live.release)
            .ok_or_else(|| refused("no host selected".into()))?;
        let failures = self.health_now(&serving).await;
        if !failures.is_empty() {
            return Err(refused(format!(
                "release {release} fails its health checks now:\n  {}",
                failures.join("\n  ")
            )));
        }
        let entry = serving.first().map(|&i| &self.hosts[i]).and_then(|h| {
            h.state
                .statuses()
                .get(release.as_str())
                .map(|e| (*e).clone())
        });
        Ok(Promotion {
            from: PromotedFrom {
                stage: stage.to_string(),
                release,
            },
            revision: entry.as_ref().and_then(|e| e.revision.clone()),
            branch: entry.as_ref().and_then(|e| e.branch.clone()),
            sha256: entry.and_then(|e| e.sha256),
        })
    }
}
