//! Which code every host deploys, decided once for the fleet: the git strategy resolves ONE
//! revision (on this machine with `ls-remote`, or `--revision` on the first host under the lock)
//! and, with `git_archive_on = "controller"`, archives it here; the upload and artifact
//! strategies pack their bytes once, here.

use std::sync::Arc;

use crate::config::vars::{VarError, Vars};
use crate::error::{Error, Result};
use crate::quote::quote;
use crate::report::Event;
use crate::transport::local::Local;

use crate::release::PromotedFrom;

use super::context::{Context, Revision};
use super::git_mirror::{GitMirror, Wanted};
use super::host_run::HostRun;
use super::promote::Promotion;

/// Resolve the code for `hosts` (their first host's variables decide) and give every host the
/// revision and branch.
pub async fn resolve(ctx: &mut Context<'_>, hosts: &mut [HostRun]) -> Result<()> {
    let Some(first) = hosts.first() else {
        return Ok(());
    };
    let vars = &first.vars;
    let config_error = |message: String| Error::Config {
        path: ctx.project.deployfile.clone(),
        message,
    };
    let var_error = |error: VarError| config_error(error.to_string());
    let strategy = vars.value_string("strategy").map_err(var_error)?;
    // Only git picks a commit: elsewhere the flag would be ignored, and the deploy ship other
    // code than asked for.
    let options = ctx.options;
    let pinned = [
        ("--branch", options.branch.is_some()),
        ("--tag", options.tag.is_some()),
        ("--revision", options.revision.is_some()),
    ];
    if let Some((flag, _)) = pinned.iter().find(|(_, given)| *given) {
        if strategy != "git" {
            return Err(Error::Usage(format!(
                "`{flag}` picks a commit for the `git` strategy; this deploy uses `{strategy}`, \
                 which ships {} as it is",
                if strategy == "artifact" {
                    "`artifact_path`"
                } else {
                    "`upload_from`"
                }
            )));
        }
    }
    ctx.branch = vars.value_string("branch").unwrap_or_default();
    let mut archive_on = None;
    match strategy.as_str() {
        "git" => archive_on = Some(git(ctx, vars).await?),
        "artifact" => {
            // A build made elsewhere (CI): a directory packed once, or a .tar.gz sent as is.
            let artifact = vars.value_string("artifact_path").map_err(var_error)?;
            let path = ctx.project.root.join(&artifact);
            let bytes = blocking(move || {
                if path.is_file() {
                    std::fs::read(&path).map_err(|e| {
                        Worded(format!(
                            "`artifact_path`: cannot read `{}`: {e}",
                            path.display()
                        ))
                    })
                } else {
                    super::archive::pack(&path, &[])
                        .map_err(|e| Worded(format!("`artifact_path`: {e}")))
                }
            })
            .await
            .map_err(|Worded(m)| config_error(m))?;
            ctx.sha256 = Some(sha256(&bytes));
            ctx.code.set_release(Arc::new(bytes));
            let revision = vars.value_string("artifact_revision").unwrap_or_default();
            ctx.revision = resolved(revision);
        }
        "upload" => {
            let from = vars.value_string("upload_from").map_err(var_error)?;
            let exclude: Vec<String> = match vars.value_json("upload_exclude").map_err(var_error)? {
                serde_json::Value::Array(items) => items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_string))
                    .collect(),
                _ => Vec::new(),
            };
            let dir = ctx.project.root.join(&from);
            let packing = dir.clone();
            let packed = blocking(move || {
                super::archive::pack(&packing, &exclude)
                    .map_err(|e| Worded(format!("`upload_from`: {e}")))
            })
            .await
            .map_err(|Worded(m)| config_error(m))?;
            ctx.sha256 = Some(sha256(&packed));
            ctx.code.set_release(Arc::new(packed));
            let head = Local
                .capture(&format!(
                    "git -C {} rev-parse HEAD 2>/dev/null",
                    quote(&dir.display().to_string())
                ))
                .await;
            ctx.revision = if head.success() {
                resolved(head.stdout.trim().to_string())
            } else {
                Revision::None
            };
        }
        other => {
            return Err(config_error(format!(
                "unknown `strategy = \"{other}\"` (use \"git\", \"upload\" or \"artifact\")"
            )));
        }
    }
    if let (Some(promotion), "upload" | "artifact") = (&ctx.options.promotion, strategy.as_str()) {
        same_bytes(
            promotion,
            ctx.sha256.as_deref().unwrap_or_default(),
            &strategy,
        )?;
    }
    for host in hosts.iter_mut() {
        host.vars.set("revision", ctx.revision.commit().to_string());
        host.vars.set("branch", ctx.branch.clone());
        // Every host archives where the first host's setting says.
        if let Some(archive_on) = &archive_on {
            host.vars.set("git_archive_on", archive_on.clone());
        }
    }
    Ok(())
}

/// The git strategy: ONE revision resolved here; with `git_archive_on = "controller"` also
/// archived here. Returns where the hosts' code is archived.
async fn git(ctx: &mut Context<'_>, vars: &Vars) -> Result<String> {
    let deployfile = ctx.project.deployfile.clone();
    let config_error = |message: String| Error::Config {
        path: deployfile.clone(),
        message,
    };
    let var_error = |error: VarError| config_error(error.to_string());
    let repository = vars.value_string("repository").map_err(var_error)?;
    if repository.is_empty() {
        return Err(config_error(
            "`repository` is empty: set it, or use `strategy = \"upload\"`".into(),
        ));
    }
    let archive_on = vars.value_string("git_archive_on").map_err(var_error)?;
    if !matches!(archive_on.as_str(), "host" | "controller") {
        return Err(config_error(format!(
            "unknown `git_archive_on = \"{archive_on}\"` (use \"host\" or \"controller\")"
        )));
    }
    let (revision, label) = git_revision(ctx, &repository).await?;
    ctx.revision = revision;
    if archive_on == "controller" {
        let mirror = vars
            .value_string("git_controller_mirror")
            .map_err(var_error)?;
        let mirror = GitMirror::new(ctx.project.root.join(mirror), repository.clone())
            .map_err(|e| config_error(format!("`git_controller_mirror`: {e}")))?;
        archive_on_controller(ctx, mirror, &repository, label).await?;
    }
    Ok(archive_on)
}

/// The git strategy's revision: `--revision` (resolved later, under the lock), `--tag`, the
/// branch, or HEAD, resolved here with `git ls-remote`; and what it is, for messages.
async fn git_revision(ctx: &mut Context<'_>, repository: &str) -> Result<(Revision, String)> {
    let options = ctx.options;
    if let Some(promotion) = &options.promotion {
        // Promotion: exactly the commit live on FROM, however its branch moved on since.
        let PromotedFrom { stage, release } = &promotion.from;
        let Some(commit) = &promotion.revision else {
            return Err(Error::Refused(format!(
                "promotion from `{stage}` refused, nothing was changed: its releases log names \
                 no revision for release {release}"
            )));
        };
        ctx.branch = promotion.branch.clone().unwrap_or_default();
        return Ok((
            Revision::Pending(commit.clone()),
            format!("revision `{commit}` (live on `{stage}`)"),
        ));
    }
    if let Some(revision) = &options.revision {
        if revision.is_empty()
            || revision.starts_with('-')
            || !revision
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
        {
            return Err(Error::Usage(format!(
                "`--revision {revision}` is not a revision name"
            )));
        }
        return Ok((
            Revision::Pending(revision.clone()),
            format!("revision `{revision}`"),
        ));
    }
    let (reference, label) = if let Some(tag) = &options.tag {
        ctx.branch = String::new();
        (format!("refs/tags/{tag}"), format!("tag `{tag}`"))
    } else if ctx.branch.is_empty() {
        ("HEAD".to_string(), "HEAD".to_string())
    } else {
        let branch = &ctx.branch;
        (format!("refs/heads/{branch}"), format!("branch `{branch}`"))
    };
    let commit = ls_remote(repository, &reference, &label).await?;
    Ok((Revision::Resolved(commit), label))
}

/// `git_archive_on = "controller"`: this machine's mirror archives the revision once (a
/// `--revision` name is resolved there, before any host is touched) and every host is sent
/// the same bytes, as with the upload strategy.
async fn archive_on_controller(
    ctx: &mut Context<'_>,
    mirror: GitMirror,
    repository: &str,
    label: String,
) -> Result<()> {
    let wanted = match &ctx.revision {
        Revision::Pending(name) => Wanted::Name(name.clone()),
        revision => Wanted::Commit {
            commit: revision.commit().to_string(),
            label: label.clone(),
        },
    };
    let packed = tokio::task::spawn_blocking(move || mirror.pack(&wanted))
        .await
        .map_err(|e| Error::Local(format!("packing the git archive stopped: {e}")))?
        .map_err(|e| Error::Local(e.to_string()))?;
    tracing::debug!(commit = %packed.commit, bytes = packed.bytes.len(), "git archive packed on this machine");
    if ctx.dry_run() {
        let shown = format!(
            "{} | gzip  # {label} of {repository}: {} bytes, streamed to every host",
            packed.command,
            packed.bytes.len()
        );
        ctx.reporter.emit(Event::DryRun {
            host: "local",
            task: "deploy:update_code",
            command: &shown,
        });
    }
    ctx.revision = Revision::Resolved(packed.commit);
    ctx.code.set_release(Arc::new(packed.bytes));
    Ok(())
}

/// `--revision R`: under the lock, update the first host's mirror and resolve R to the one
/// commit every host will archive; an unknown revision stops the deploy before any release.
pub async fn resolve_pending(ctx: &mut Context<'_>, hosts: &mut [HostRun]) -> Result<()> {
    let Revision::Pending(revision) = ctx.revision.clone() else {
        return Ok(());
    };
    let Some(host) = hosts.first() else {
        return Ok(());
    };
    // A dry run shows the lookup and keeps the revision as given.
    let commit = look_up_on_host(ctx, host, &revision)
        .await?
        .unwrap_or(revision);
    for host in hosts.iter_mut() {
        host.vars.set("revision", commit.clone());
    }
    ctx.revision = Revision::Resolved(commit);
    Ok(())
}

async fn look_up_on_host(
    ctx: &Context<'_>,
    host: &HostRun,
    revision: &str,
) -> Result<Option<String>> {
    let repository = host
        .vars
        .value_string("repository")
        .map_err(|error| Error::Config {
            path: ctx.project.deployfile.clone(),
            message: error.to_string(),
        })?;
    let command = format!(
        "set -e\ncd {}/.dep\n{}\ngit -C repo rev-parse --verify --quiet {}",
        quote(&host.deploy_path),
        mirror_command(&repository, None),
        quote(&format!("{revision}^{{commit}}"))
    );
    let Some(output) = host
        .backend
        .change(host.name(), "revision", &command, ctx.reporter)
        .await
    else {
        return Ok(None);
    };
    let commit = output.stdout.trim().to_string();
    if output.success() && !commit.is_empty() {
        return Ok(Some(commit));
    }
    let detail = output.stderr.trim();
    Err(Error::Local(format!(
        "revision `{revision}` not found in `{repository}` (looked up on host `{}`){}",
        host.name(),
        if detail.is_empty() {
            String::new()
        } else {
            format!(":\n{detail}")
        }
    )))
}

/// Clone the repository as a mirror in `.dep/repo`, or bring the mirror up to date; with
/// `commit`, a mirror that has it already is left as it is (a redeploy, a branch fetched with
/// another). A name to resolve (`--revision`) always fetches.
pub fn mirror_command(repository: &str, commit: Option<&str>) -> String {
    let update = format!(
        "if [ -d repo ]; then git -C repo remote set-url origin {repo} && git -C repo remote update --prune >/dev/null; \
         else git clone --mirror --quiet {repo} repo; fi",
        repo = quote(repository)
    );
    match commit {
        Some(commit) => format!(
            "if ! {{ [ -d repo ] && git -C repo cat-file -e {}; }} 2>/dev/null; then\n{update}\nfi",
            quote(&format!("{commit}^{{commit}}"))
        ),
        None => update,
    }
}

/// Resolve a reference of `repository` to a commit on this machine, once for all hosts.
/// Annotated tags resolve to the commit they point at.
async fn ls_remote(repository: &str, reference: &str, label: &str) -> Result<String> {
    let peeled = format!("{reference}^{{}}");
    let command = format!(
        "git ls-remote -- {} {} {}",
        quote(repository),
        quote(reference),
        quote(&peeled)
    );
    let output = Local.capture(&command).await;
    if !output.success() {
        return Err(Error::Local(format!(
            "cannot read `{repository}` with `{command}`:\n{}",
            output.stderr.trim()
        )));
    }
    let refs: Vec<(&str, &str)> = output
        .stdout
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .collect();
    refs.iter()
        .find(|(_, name)| *name == peeled)
        .or_else(|| refs.iter().find(|(_, name)| *name == reference))
        .map(|(commit, _)| commit.to_string())
        .ok_or_else(|| Error::Local(format!("{label} not found in `{repository}`")))
}

/// Promotion of an upload or artifact stage: the bytes about to be sent must be those FROM's
/// releases log recorded for its live release.
fn same_bytes(promotion: &Promotion, sending: &str, strategy: &str) -> Result<()> {
    let PromotedFrom { stage, release } = &promotion.from;
    let refused = |why: String| {
        Err(Error::Refused(format!(
            "promotion from `{stage}` refused, nothing was changed: {why}"
        )))
    };
    match &promotion.sha256 {
        None => refused(format!(
            "its releases log records no sha256 for release {release} (deployed by the git \
             strategy, or by a dep older than promotion), so the {strategy} strategy's bytes \
             cannot be checked against it"
        )),
        Some(live) if live != sending => refused(format!(
            "the {strategy} strategy would send other bytes than release {release} was sent \
             (sha256 {sending}, {stage} has {live}): rebuild exactly what {stage} runs, or \
             deploy with `dep deploy`"
        )),
        Some(_) => Ok(()),
    }
}

/// The hex sha256 of the bytes a release is sent, as the releases log records it.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn resolved(revision: String) -> Revision {
    if revision.is_empty() {
        Revision::None
    } else {
        Revision::Resolved(revision)
    }
}

/// Local work that reads or packs files, off the runtime's threads; its error is worded for
/// the Deployfile's variable it concerns.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::result::Result<T, Worded> + Send + 'static,
) -> std::result::Result<T, Worded> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Worded(format!("stopped: {e}")))?
}

/// A message already worded for the user, to become an `Error::Config` naming the Deployfile.
struct Worded(String);
