//! `dep init`: scaffold a Deployfile (and a CI workflow) for the project in a directory, from the
//! templates under templates/init/, asking a few questions on a terminal or taking flags in CI.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const DEPLOYFILE_TEMPLATE: &str = include_str!("../../templates/init/Deployfile.toml.j2");
const GITHUB_TEMPLATE: &str = include_str!("../../templates/init/deploy.yml.j2");
const GITLAB_TEMPLATE: &str = include_str!("../../templates/init/gitlab-ci.yml.j2");

/// Which CI pipeline `dep init` writes beside the Deployfile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Ci {
    /// GitHub Actions: .github/workflows/deploy.yml
    Github,
    /// GitLab CI: .gitlab-ci.yml
    Gitlab,
    /// No pipeline, only the Deployfile
    None,
}

impl Ci {
    /// Where the pipeline goes and its template.
    fn pipeline(self) -> Option<(&'static str, &'static str)> {
        match self {
            Ci::Github => Some((".github/workflows/deploy.yml", GITHUB_TEMPLATE)),
            Ci::Gitlab => Some((".gitlab-ci.yml", GITLAB_TEMPLATE)),
            Ci::None => None,
        }
    }

    /// Where the project's `origin` remote is on a GitLab host, GitLab's pipeline; else GitHub's.
    fn for_remote(remote: Option<&str>) -> Ci {
        // The host of `git@host:path`, `ssh://user@host:port/path` or `https://host/path`.
        let host = |url: &str| {
            let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
            let rest = rest.split_once('@').map_or(rest, |(_, rest)| rest);
            rest.split([':', '/'])
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase()
        };
        if remote.is_some_and(|url| host(url).contains("gitlab")) {
            Ci::Gitlab
        } else {
            Ci::Github
        }
    }
}

/// Answers to the questions `dep init` asks; None means "ask, or use the default".
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Answers {
    /// Recipe to import (default: `laravel` when a Laravel app is detected)
    #[arg(long)]
    pub recipe: Option<String>,
    /// The application's name, `application` in the Deployfile (default: this directory's name)
    #[arg(long)]
    pub application: Option<String>,
    /// Its git repository (default: the `origin` remote)
    #[arg(long)]
    pub repository: Option<String>,
    /// The staging server's address (default: staging.example.com)
    #[arg(long, value_name = "HOST")]
    pub staging_host: Option<String>,
    /// The production server's address (default: production.example.com)
    #[arg(long, value_name = "HOST")]
    pub production_host: Option<String>,
    /// SSH user on the servers (default: deploy)
    #[arg(long)]
    pub user: Option<String>,
    /// Where releases go on the servers (default: /var/www/{{ application }})
    #[arg(long, value_name = "PATH")]
    pub deploy_path: Option<String>,
    /// The branch the pipeline deploys on every push (default: the current branch, else main)
    #[arg(long)]
    pub branch: Option<String>,
    /// The CI pipeline to write (default: gitlab when `origin` is on GitLab, else github)
    #[arg(long, value_enum)]
    pub ci: Option<Ci>,
    /// Write only the CI pipeline, leaving Deployfile.toml alone (e.g. with --force after adding pint)
    #[arg(long)]
    pub ci_only: bool,
    /// Do not ask: take the flags and the defaults
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Overwrite existing files
    #[arg(long)]
    pub force: bool,
}

/// Whether `dir` holds a Laravel application (an `artisan` file and laravel/framework in composer.json).
pub fn is_laravel(dir: &Path) -> bool {
    dir.join("artisan").is_file()
        && std::fs::read_to_string(dir.join("composer.json"))
            .is_ok_and(|c| c.contains("laravel/framework"))
}

/// `dep init` in the current directory: write the files, say which, and what to do next.
pub fn run(answers: &Answers) -> Result<()> {
    let dir = std::env::current_dir()
        .map_err(|e| Error::Local(format!("cannot read the current directory: {e}")))?;
    let ci = ci(&dir, answers);
    for path in init(&dir, answers)? {
        println!(
            "wrote {}",
            path.strip_prefix(&dir).unwrap_or(&path).display()
        );
    }
    if !answers.ci_only {
        println!("next: check the hosts in Deployfile.toml, then `dep deploy staging --dry-run`");
    }
    match ci {
        Ci::Github => println!(
            "CI: set the secrets SSH_PRIVATE_KEY and SSH_KNOWN_HOSTS and the variable DEP_URL (dep's docs/ci.md)"
        ),
        Ci::Gitlab => println!(
            "CI: set the CI/CD variables SSH_PRIVATE_KEY, SSH_KNOWN_HOSTS and DEP_URL (dep's docs/ci.md)"
        ),
        Ci::None => {}
    }
    Ok(())
}

/// The pipeline to write: as asked, else by where the `origin` remote is.
fn ci(dir: &Path, answers: &Answers) -> Ci {
    answers
        .ci
        .unwrap_or_else(|| Ci::for_remote(git(dir, &["remote", "get-url", "origin"]).as_deref()))
}

/// Write `Deployfile.toml` and the CI pipeline into `dir`; returns the paths written.
pub fn init(dir: &Path, answers: &Answers) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    if !answers.ci_only {
        files.push((dir.join("Deployfile.toml"), DEPLOYFILE_TEMPLATE));
    }
    match ci(dir, answers).pipeline() {
        Some((path, template)) => files.push((dir.join(path), template)),
        None if answers.ci_only => {
            return Err(Error::Usage(
                "`dep init --ci-only --ci none` would write nothing".into(),
            ))
        }
        None => {}
    }
    if !answers.force {
        for (path, _) in &files {
            if path.exists() {
                return Err(Error::Usage(format!(
                    "`{}` exists already; `dep init --force` overwrites it",
                    path.display()
                )));
            }
        }
    }
    let context = questions(dir, answers)?;
    let mut written = Vec::new();
    for (path, template) in files {
        write(&path, template, &context)?;
        written.push(path);
    }
    Ok(written)
}

/// The answers to every question: given as flags, asked on a terminal, or the defaults.
fn questions(dir: &Path, answers: &Answers) -> Result<minijinja::Value> {
    let interactive = !answers.yes && std::io::stdin().is_terminal();
    let ask = |question: &str, given: &Option<String>, default: String| {
        ask(interactive, question, given, default)
    };
    let laravel = is_laravel(dir);
    let recipe = ask(
        "Recipe (laravel, or empty for none)",
        &answers.recipe,
        if laravel {
            "laravel".into()
        } else {
            String::new()
        },
    )?;
    if !recipe.is_empty()
        && !crate::config::recipe::BUILTIN
            .iter()
            .any(|(name, _)| *name == recipe)
    {
        return Err(Error::Usage(format!(
            "unknown recipe `{recipe}` (built-in: common, laravel)"
        )));
    }
    let folder = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()));
    let application = ask(
        "Application name",
        &answers.application,
        folder.unwrap_or_else(|| "app".into()),
    )?;
    let repository = ask(
        "Git repository",
        &answers.repository,
        git(dir, &["remote", "get-url", "origin"]).unwrap_or_default(),
    )?;
    let branch = ask(
        "Branch to deploy",
        &answers.branch,
        git(dir, &["symbolic-ref", "--short", "HEAD"]).unwrap_or_else(|| "main".into()),
    )?;
    let staging_host = ask(
        "Staging server",
        &answers.staging_host,
        "staging.example.com".into(),
    )?;
    let production_host = ask(
        "Production server",
        &answers.production_host,
        "production.example.com".into(),
    )?;
    let user = ask("SSH user", &answers.user, "deploy".into())?;
    let deploy_path = ask(
        "Deploy path",
        &answers.deploy_path,
        "/var/www/{{ application }}".into(),
    )?;
    let project = Detected::in_dir(dir);
    Ok(minijinja::context! {
        recipe, application, repository, branch, staging_host, production_host, user, deploy_path,
        laravel => recipe == "laravel",
        composer => project.composer,
        pint => project.pint,
        node => project.node,
        npm_lock => project.npm_lock,
        npm_install => if project.npm_lock { "npm ci" } else { "npm install" },
        composer_lock => project.composer_lock,
        php_version => project.php_version.as_deref().unwrap_or(DEFAULT_PHP),
        node_version => "22",
    })
}

/// What the pipeline's jobs run depends on what the project has, looked at once, at init.
struct Detected {
    /// composer.json: composer install, composer audit.
    composer: bool,
    /// laravel/pint in composer.json: the lint job runs `pint --test` (else `php -l`).
    pint: bool,
    /// package.json: npm's build and audit.
    node: bool,
    /// package-lock.json: `npm ci` (else `npm install`, which makes one).
    npm_lock: bool,
    /// composer.lock: `composer audit --locked` reads it (else the packages are installed first).
    composer_lock: bool,
    /// The lowest PHP `require.php` in composer.json allows (`^7.3|^8.0`: 8.0, its newest line).
    php_version: Option<String>,
}

/// The PHP version written when composer.json does not say.
const DEFAULT_PHP: &str = "8.2";

impl Detected {
    fn in_dir(dir: &Path) -> Detected {
        let composer = std::fs::read_to_string(dir.join("composer.json")).ok();
        let php_version = composer
            .as_deref()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
            .and_then(|json| json["require"]["php"].as_str().and_then(php_version));
        Detected {
            php_version,
            composer_lock: dir.join("composer.lock").is_file(),
            pint: composer
                .as_deref()
                .is_some_and(|c| c.contains("\"laravel/pint\"")),
            composer: composer.is_some(),
            node: dir.join("package.json").is_file(),
            npm_lock: dir.join("package-lock.json").is_file(),
        }
    }
}

/// The PHP version to build and test with, from composer.json's `require.php`: each alternative
/// (`|`, `||`) starts at its first `major.minor`; the newest of those starts (CI images and
/// setup-php have every such line).
fn php_version(constraint: &str) -> Option<String> {
    constraint
        .split('|')
        .filter_map(|alternative| {
            let start = alternative.find(|c: char| c.is_ascii_digit())?;
            let mut parts = alternative[start..]
                .split(|c: char| !c.is_ascii_digit())
                .map(|n| n.parse::<u32>());
            let major = parts.next()?.ok()?;
            let minor = parts.next().and_then(|m| m.ok()).unwrap_or(0);
            Some((major, minor))
        })
        .max()
        .map(|(major, minor)| format!("{major}.{minor}"))
}

/// Render `template` with `context` into `path`, making its directory.
fn write(path: &Path, template: &str, context: &minijinja::Value) -> Result<()> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(true);
    let text = env
        .render_str(template, context)
        .map_err(|e| Error::Local(format!("cannot render `{}`: {e}", path.display())))?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| Error::Read {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    std::fs::write(path, text)
        .map_err(|e| Error::Local(format!("cannot write `{}`: {e}", path.display())))
}

/// One question: the flag's value when given, else the answer typed (empty: the default), else
/// the default when nobody is there to answer.
fn ask(
    interactive: bool,
    question: &str,
    given: &Option<String>,
    default: String,
) -> Result<String> {
    if let Some(value) = given {
        return Ok(value.clone());
    }
    if !interactive {
        return Ok(default);
    }
    print!("{question} [{default}]: ");
    std::io::stdout().flush().ok();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Error::Local(format!("cannot read the answer: {e}")))?;
    let line = line.trim();
    Ok(if line.is_empty() {
        default
    } else {
        line.to_string()
    })
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
    (output.status.success() && !text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_php_version_is_where_the_newest_alternative_of_require_php_starts() {
        for (constraint, version) in [
            ("^8.2", Some("8.2")),
            ("^7.3|^8.0", Some("8.0")),
            ("^8.1 || ^8.2", Some("8.2")),
            (">=8.1 <8.4", Some("8.1")),
            ("~8.3.0", Some("8.3")),
            ("8.*", Some("8.0")),
            ("*", None),
        ] {
            assert_eq!(php_version(constraint).as_deref(), version, "{constraint}");
        }
    }

    #[test]
    fn a_gitlab_remote_gets_the_gitlab_pipeline() {
        assert_eq!(
            Ci::for_remote(Some("git@gitlab.com:acme/shop.git")),
            Ci::Gitlab
        );
        assert_eq!(
            Ci::for_remote(Some("https://gitlab.acme.test/shop.git")),
            Ci::Gitlab
        );
        assert_eq!(
            Ci::for_remote(Some("git@github.com:acme/shop.git")),
            Ci::Github
        );
        assert_eq!(
            Ci::for_remote(Some("ssh://git@gitlab.acme.test:2222/shop.git")),
            Ci::Gitlab
        );
        assert_eq!(
            Ci::for_remote(Some("https://github.com/acme/gitlab-sync.git")),
            Ci::Github
        );
        assert_eq!(Ci::for_remote(None), Ci::Github);
    }
}
