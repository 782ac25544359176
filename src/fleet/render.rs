//! Rendering one task for one host into the commands it runs: templates filled with the host's
//! variables, every value quoted once, the task's cwd/env/if/retries/timeout applied. Local
//! input a task needs (a template file, the `.env` layers, an upload's packed bytes) is fetched
//! first, off the runtime's threads (`fetch`), so rendering itself never blocks.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::config::dotenv::{self, Value};
use crate::config::vars::{VarError, Vars};
use crate::plan::task::{Action, Builtin, Task};
use crate::quote::quote;
use crate::release::lock::LockInfo;
use crate::release::{self, LogEntry, Status};
use crate::transport::command::Command;
use crate::transport::Payload;

use super::archive::ArchiveError;
use super::context::{Context, Mode};
use super::host_run::HostRun;

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Vars(#[from] VarError),
    #[error("reading files stopped: {0}")]
    Stopped(String),
    #[error("cannot read template `{}`: {source}", path.display())]
    ReadTemplate {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read `{}`: {source}", path.display())]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Pack(#[from] ArchiveError),
    #[error("`keep_releases` must be a whole number (how many releases to keep), not `{value}` (set by {origin})")]
    KeepReleases { value: String, origin: String },
    #[error("`{0:?}` runs only as a fleet barrier")]
    BarrierOnly(Builtin),
    #[error("{}:{}: {source}", path.display(), source.line)]
    Dotenv {
        path: PathBuf,
        source: dotenv::ParseError,
    },
    #[error(
        "`DEP_ENV_{0}`: `{0}` is not a name Laravel's dotenv accepts (letters, digits, `_`, `.`)"
    )]
    DotenvName(String),
    /// A `template` task's file that does not render: where in it.
    #[error("{}{}: {source}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    InTemplate {
        path: PathBuf,
        line: Option<usize>,
        source: VarError,
    },
    #[error("the upload source `{from}` does not exist (looked for `{}`)", path.display())]
    UploadSource { from: String, path: PathBuf },
}

impl RenderError {
    /// The variable an "undefined variable" error is about, to point at it in the file.
    pub fn undefined_variable(&self) -> Option<&str> {
        match self {
            RenderError::Vars(error) => error.undefined_variable(),
            _ => None,
        }
    }
}

/// Local input fetched for one task on one host before it is rendered.
#[derive(Default)]
pub struct Fetched {
    /// Files by path; None: the file does not exist (an optional `.env` layer).
    files: HashMap<PathBuf, Option<String>>,
    upload: Option<Payload>,
}

/// How much `fetch` does: the preflight reads files but packs nothing (a `local` task before an
/// upload may build what it sends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packing {
    Pack,
    Skip,
}

/// Fetch what `task` needs from this machine, on a blocking thread.
pub async fn fetch(
    ctx: &Context<'_>,
    task: &Task,
    host: &HostRun,
    packing: Packing,
) -> Result<Fetched, RenderError> {
    let vars = &host.vars;
    let root = &ctx.project.root;
    let mut fetched = Fetched::default();
    let mut paths: Vec<(PathBuf, bool)> = Vec::new();
    match &task.action {
        Action::Template { src, .. } => {
            let path = root.join("templates").join(vars.render(&task.name, src)?);
            paths.push((path, true));
        }
        Action::Builtin(Builtin::Dotenv) if truthy(&vars.value_json("dotenv_render")?) => {
            for variable in ["dotenv_example", "dotenv_stage_file"] {
                let name = vars.value_string(variable)?;
                if !name.is_empty() {
                    paths.push((root.join(&name), false));
                }
            }
        }
        Action::Upload { from, .. } if packing == Packing::Pack => {
            let path = root.join(vars.render(&task.name, from)?);
            // A dry run shows an upload of what a `local` task would have built.
            if !ctx.dry_run() || path.exists() {
                fetched.upload = Some(ctx.code.upload(&path).await?);
            }
        }
        _ => {}
    }
    if !paths.is_empty() {
        fetched.files = tokio::task::spawn_blocking(move || read_files(paths))
            .await
            .map_err(|e| RenderError::Stopped(e.to_string()))??;
    }
    Ok(fetched)
}

/// Read each file; a missing one is None unless it is `required` (a template).
fn read_files(
    paths: Vec<(PathBuf, bool)>,
) -> Result<HashMap<PathBuf, Option<String>>, RenderError> {
    let mut files = HashMap::new();
    for (path, required) in paths {
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                files.insert(path, Some(text));
            }
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                files.insert(path, None);
            }
            Err(source) if required => return Err(RenderError::ReadTemplate { path, source }),
            Err(source) => return Err(RenderError::ReadFile { path, source }),
        }
    }
    Ok(files)
}

/// The dynamic variables `task` uses, in the order they must be evaluated on the host.
pub fn dynamic_needed(task: &Task, vars: &Vars) -> Result<Vec<String>, RenderError> {
    let mut sources: Vec<&str> = Vec::new();
    match &task.action {
        Action::Run(commands) => sources.extend(commands.iter().map(String::as_str)),
        Action::Upload { from, to } => sources.extend([from.as_str(), to.as_str()]),
        Action::Template { dest, .. } => sources.push(dest),
        Action::Steps(_) => {}
        // Builtins use the layout variables, which may themselves be dynamic.
        Action::Builtin(_) => sources.extend(["{{ deploy_path }}", "{{ release_path }}"]),
    }
    sources.extend(task.cwd.as_deref());
    sources.extend(task.condition.as_deref());
    sources.extend(task.env.iter().map(|(_, v)| v.as_str()));
    let mut needed = Vec::new();
    for source in sources {
        for name in vars.dynamic_needed(source)? {
            if !needed.contains(&name) {
                needed.push(name);
            }
        }
    }
    Ok(needed)
}

/// A template file's render error, placed: minijinja's line, or for an undefined variable the
/// first line that uses it. The path is shown relative to the project.
fn in_template(ctx: &Context<'_>, path: &Path, text: &str, error: VarError) -> RenderError {
    // The line goes in front, `file:line:` as compilers write it.
    let (error, line) = match error {
        VarError::Template(mut template) => {
            let line = template.line.take();
            (VarError::Template(template), line)
        }
        other => (other, None),
    };
    let line = line.or_else(|| {
        let name = error.undefined_variable()?;
        text.lines()
            .position(|line| {
                line.match_indices(name).any(|(at, _)| {
                    let before = line[..at].chars().next_back();
                    let after = line[at + name.len()..].chars().next();
                    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
                    !word(before) && !word(after)
                })
            })
            .map(|i| i + 1)
    });
    RenderError::InTemplate {
        path: path
            .strip_prefix(&ctx.project.root)
            .unwrap_or(path)
            .to_path_buf(),
        line,
        source: error,
    }
}

/// The commands `task` runs on `host`, rendered.
pub fn commands_for(
    ctx: &Context<'_>,
    task: &Task,
    host: &HostRun,
    fetched: &Fetched,
) -> Result<Vec<Command>, RenderError> {
    let vars = &host.vars;
    let render = |text: &str| vars.render(&task.name, text);
    let script = match &task.action {
        Action::Run(commands) => {
            let rendered: Vec<String> = commands
                .iter()
                .map(|c| render(c))
                .filter(|c| c.as_ref().map_or(true, |c| !c.trim().is_empty()))
                .collect::<Result<_, _>>()?;
            // A command that renders to nothing (a disabled `{% if %}`) is no work at all.
            if rendered.is_empty() {
                return Ok(Vec::new());
            }
            joined(rendered)
        }
        Action::Upload { to, .. } => {
            let to = render(to)?;
            let mut command = Command::new(
                &task.name,
                format!("mkdir -p {to} && tar -xzf - -C {to}", to = quote(&to)),
            );
            command.stdin = Some(fetched.upload.clone().unwrap_or_default());
            return Ok(vec![finish(command, task, vars)?]);
        }
        Action::Template { src, dest, mode } => {
            let path = ctx.project.root.join("templates").join(render(src)?);
            let text = fetched
                .files
                .get(&path)
                .cloned()
                .flatten()
                .unwrap_or_default();
            let content = vars
                .render(&path.display().to_string(), &text)
                .map_err(|error| in_template(ctx, &path, &text, error))?;
            write_file_command(&render(dest)?, &content, mode.as_deref().unwrap_or("0644"))
        }
        Action::Steps(_) => return Ok(Vec::new()),
        Action::Builtin(builtin) => match builtin_script(ctx, *builtin, task, host, fetched)? {
            Some(BuiltinWork::Script(script)) => script,
            Some(BuiltinWork::Command(command)) => return Ok(vec![finish(command, task, vars)?]),
            None => return Ok(Vec::new()),
        },
    };
    Ok(vec![finish(Command::new(&task.name, script), task, vars)?])
}

/// Several commands of one task: each in braces, chained so the first failure stops the task.
fn joined(mut rendered: Vec<String>) -> String {
    if rendered.len() == 1 {
        return rendered.remove(0);
    }
    rendered
        .iter()
        .map(|c| format!("{{\n{}\n}}", c.trim_end()))
        .collect::<Vec<_>>()
        .join(" &&\n")
}

enum BuiltinWork {
    Script(String),
    /// A command of its own (it reads standard input).
    Command(Command),
}

/// The host-side builtins; the fleet barriers (lock, symlink, rollback) never get here.
fn builtin_script(
    ctx: &Context<'_>,
    builtin: Builtin,
    task: &Task,
    host: &HostRun,
    fetched: &Fetched,
) -> Result<Option<BuiltinWork>, RenderError> {
    let vars = &host.vars;
    let dp = &host.deploy_path;
    let release = vars.value_string("release_name")?;
    let release_path = vars.value_string("release_path")?;
    let script = match builtin {
        Builtin::Release => {
            let mut entry: LogEntry = ctx.log_entry(Status::Prepared, false);
            entry.release = release.clone();
            format!(
                "mkdir {} && {}",
                quote(&release_path),
                entry.append_command(dp)
            )
        }
        Builtin::UpdateCode => match vars.value_string("strategy")?.as_str() {
            "upload" | "artifact" => return Ok(Some(unpack(ctx, task, &release_path, None))),
            _ if vars.value_string("git_archive_on")? == "controller" => {
                let revision = ctx.revision.commit();
                return Ok(Some(unpack(ctx, task, &release_path, Some(revision))));
            }
            _ => {
                let repository = vars.value_string("repository")?;
                let revision = ctx.revision.commit();
                format!(
                    "set -e\ncd {dp}/.dep\n{mirror}\n\
                     git -C repo archive {rev} | tar -x -f - -C {rp}\n\
                     printf '%s\\n' {rev} > {rp}/REVISION",
                    dp = quote(dp),
                    mirror = super::code::mirror_command(&repository, Some(revision)),
                    rev = quote(revision),
                    rp = quote(&release_path),
                )
            }
        },
        Builtin::Cleanup => cleanup_script(host, &release)?,
        Builtin::Unlock if ctx.mode == Mode::Task => LockInfo::force_release_command(dp),
        Builtin::Unlock => ctx.lock.release_command(dp),
        Builtin::Dotenv => {
            if !truthy(&vars.value_json("dotenv_render")?) {
                return Ok(None);
            }
            let content = dotenv_content(ctx, vars, fetched)?;
            let dest = vars.value_string("dotenv_path")?;
            write_file_command(&dest, &content, "0640")
        }
        other @ (Builtin::Lock | Builtin::Symlink | Builtin::Rollback) => {
            return Err(RenderError::BarrierOnly(other))
        }
    };
    Ok(Some(BuiltinWork::Script(script)))
}

/// The code packed on this machine, streamed on stdin and unpacked into the release; a git
/// revision is written to `REVISION` too, as when the host archives it.
fn unpack(
    ctx: &Context<'_>,
    task: &Task,
    release_path: &str,
    revision: Option<&str>,
) -> BuiltinWork {
    let release_path = quote(release_path);
    let mut script = format!("tar -xzf - -C {release_path}");
    if let Some(revision) = revision {
        script.push_str(&format!(
            " && printf '%s\\n' {} > {release_path}/REVISION",
            quote(revision)
        ));
    }
    let mut command = Command::new(&task.name, script);
    command.stdin = ctx.code.release();
    BuiltinWork::Command(command)
}

/// How many releases `deploy:cleanup` keeps.
pub fn keep_releases(vars: &crate::config::vars::Vars) -> Result<usize, RenderError> {
    let value = vars.value_string("keep_releases")?;
    value.trim().parse().map_err(|_| RenderError::KeepReleases {
        origin: vars.origin("keep_releases").to_string(),
        value,
    })
}

/// Remove the releases beyond `keep_releases`, as the host will be once this run is done.
fn cleanup_script(host: &HostRun, release: &str) -> Result<String, RenderError> {
    let keep = keep_releases(&host.vars)?;
    let mut state = host.state.clone();
    if !release.is_empty() && !state.releases.iter().any(|r| r == release) {
        state.releases.push(release.to_string());
        state.releases.sort();
    }
    if let Some(before) = &host.switched_from {
        state.previous = before.current.clone();
        state.current = Some(release.to_string());
    }
    let remove = release::to_remove(&state, keep, &[release]);
    if remove.is_empty() {
        return Ok("true".to_string());
    }
    let names: Vec<String> = remove.iter().map(|r| quote(r)).collect();
    Ok(format!(
        "cd {}/releases && rm -rf -- {}",
        quote(&host.deploy_path),
        names.join(" ")
    ))
}

/// Apply a task's cwd, env, condition, retries and timeout to its command.
fn finish(mut command: Command, task: &Task, vars: &Vars) -> Result<Command, RenderError> {
    let render = |text: &str| vars.render(&task.name, text);
    command.cwd = task.cwd.as_deref().map(render).transpose()?;
    command.env = task
        .env
        .iter()
        .map(|(k, v)| Ok((k.clone(), render(v)?)))
        .collect::<Result<_, VarError>>()?;
    command.condition = task.condition.as_deref().map(render).transpose()?;
    command.retries = task.retries;
    command.timeout = task.timeout;
    command.continue_on_failure = task.continue_on_failure;
    command.keep_output = task.check_output.is_some();
    Ok(command)
}

/// Write `content` to `dest` with `mode`, atomically (a temporary file renamed over it).
fn write_file_command(dest: &str, content: &str, mode: &str) -> String {
    let tmp = format!("{dest}.dep-tmp");
    format!(
        "mkdir -p \"$(dirname {d})\" && (umask 077 && printf '%s' {c} > {t}) && chmod {m} {t} && mv -f {t} {d}",
        d = quote(dest),
        t = quote(&tmp),
        c = quote(content),
        m = quote(mode),
    )
}

/// The layered `.env`: `.env.example` < `.env.<stage>` (files beside the Deployfile, both
/// optional) < `DEP_ENV_NAME` variables < the environment variables named in `secrets`. The
/// files' references (`${NAME}`) stay references; the environment's values are literal.
fn dotenv_content(
    ctx: &Context<'_>,
    vars: &Vars,
    fetched: &Fetched,
) -> Result<String, RenderError> {
    let mut entries = Vec::new();
    for variable in ["dotenv_example", "dotenv_stage_file"] {
        let name = vars.value_string(variable)?;
        if name.is_empty() {
            continue;
        }
        let path = ctx.project.root.join(&name);
        if let Some(Some(text)) = fetched.files.get(&path) {
            let layer = dotenv::parse(text).map_err(|source| RenderError::Dotenv {
                path: path.clone(),
                source,
            })?;
            dotenv::layer(&mut entries, layer);
        }
    }
    let mut from_env: Vec<(String, Value)> = std::env::vars()
        .filter_map(|(key, value)| {
            let name = key.strip_prefix("DEP_ENV_")?;
            Some((name.to_string(), Value::literal(value)))
        })
        .filter(|(key, _)| !key.is_empty())
        .collect();
    from_env.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some((name, _)) = from_env.iter().find(|(name, _)| !dotenv::valid_name(name)) {
        return Err(RenderError::DotenvName(name.clone()));
    }
    dotenv::layer(&mut entries, from_env);
    // A secret listed only to be masked may have a name no .env can hold: it stays out.
    let secrets = ctx
        .project
        .secrets
        .iter()
        .filter(|name| dotenv::valid_name(name))
        .filter_map(|name| Some((name.clone(), Value::literal(std::env::var(name).ok()?))));
    dotenv::layer(&mut entries, secrets);
    Ok(dotenv::render(&entries))
}

fn truthy(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Bool(b) => *b,
        serde_json::Value::String(s) => matches!(s.as_str(), "1" | "true" | "yes" | "on"),
        serde_json::Value::Number(n) => n.as_f64() != Some(0.0),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_commands_of_a_task_stop_at_the_first_failure() {
        assert_eq!(joined(vec!["a".into()]), "a");
        assert_eq!(
            joined(vec!["a\n".into(), "b".into()]),
            "{\na\n} &&\n{\nb\n}"
        );
    }

    #[test]
    fn files_are_written_atomically_with_their_mode() {
        assert_eq!(
            write_file_command("/srv/app/.env", "A=1\n", "0640"),
            "mkdir -p \"$(dirname /srv/app/.env)\" && (umask 077 && printf '%s' 'A=1\n' > \
             /srv/app/.env.dep-tmp) && chmod 0640 /srv/app/.env.dep-tmp && mv -f \
             /srv/app/.env.dep-tmp /srv/app/.env"
        );
    }

    #[test]
    fn truthy_values() {
        use serde_json::json;
        for (value, expected) in [
            (json!(true), true),
            (json!("yes"), true),
            (json!("0"), false),
            (json!(1), true),
            (json!(0), false),
            (json!(null), false),
        ] {
            assert_eq!(truthy(&value), expected, "{value}");
        }
    }
}
