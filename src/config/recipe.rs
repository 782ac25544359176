//! Recipes: the built-in ones embedded in the binary, and loading a Deployfile with its imports.

use std::path::{Path, PathBuf};

use crate::config::deployfile::{self, RawFile};
use crate::error::{Error, Result};
use crate::suggestion::suggest;

/// Built-in recipes, by name, embedded at build time.
pub const BUILTIN: &[(&str, &str)] = &[
    ("common", include_str!("../../recipes/common.toml")),
    ("laravel", include_str!("../../recipes/laravel.toml")),
];

/// One loaded file: a built-in recipe, an imported file, or the Deployfile itself.
#[derive(Debug)]
pub struct Source {
    /// How the user knows it: `recipe common`, `deploy/acme.toml`, `Deployfile.toml`.
    pub label: String,
    /// Where errors point (built-in recipes: `<built-in>/recipes/NAME.toml`).
    pub path: PathBuf,
    pub file: RawFile,
}

/// Load the Deployfile and everything it imports, in precedence order: `common` first, then each
/// import depth-first in the order written, the Deployfile last. Each file is loaded once.
pub fn load(deployfile: &Path) -> Result<Vec<Source>> {
    let text = read(deployfile)?;
    let file = deployfile::parse(deployfile, &text)?;
    let mut loader = Loader {
        sources: Vec::new(),
        loaded: Vec::new(),
        stack: Vec::new(),
    };
    loader.load_builtin("common", deployfile)?;
    loader.stack.push(display(deployfile));
    for name in file.import.clone() {
        loader.import(&name, deployfile)?;
    }
    loader.stack.pop();
    loader.sources.push(Source {
        label: display(deployfile),
        path: deployfile.to_path_buf(),
        file,
    });
    Ok(loader.sources)
}

struct Loader {
    sources: Vec<Source>,
    loaded: Vec<String>,
    stack: Vec<String>,
}

impl Loader {
    fn import(&mut self, name: &str, importer: &Path) -> Result<()> {
        if BUILTIN.iter().any(|(builtin, _)| *builtin == name) {
            return self.load_builtin(name, importer);
        }
        if !name.ends_with(".toml") && !name.contains('/') {
            return Err(Error::UnknownImport {
                file: importer.to_path_buf(),
                name: name.to_string(),
                suggestion: suggest(name, BUILTIN.iter().map(|(n, _)| *n)).map(str::to_string),
            });
        }
        let base = importer.parent().unwrap_or(Path::new("."));
        let path = base.join(name);
        let key = path
            .canonicalize()
            .unwrap_or_else(|_| path.clone())
            .display()
            .to_string();
        self.enter(&key, &display(&path))?;
        if self.loaded.contains(&key) {
            self.stack.pop();
            return Ok(());
        }
        let text = read(&path).map_err(|error| match error {
            Error::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Error::Config {
                    path: importer.to_path_buf(),
                    message: format!(
                        "imported file `{name}` does not exist (looked for `{}`)",
                        path.display()
                    ),
                }
            }
            other => other,
        })?;
        let file = deployfile::parse(&path, &text)?;
        for nested in file.import.clone() {
            self.import(&nested, &path)?;
        }
        self.stack.pop();
        self.loaded.push(key);
        self.sources.push(Source {
            label: display(&path),
            path,
            file,
        });
        Ok(())
    }

    fn load_builtin(&mut self, name: &str, _importer: &Path) -> Result<()> {
        let key = format!("builtin:{name}");
        self.enter(&key, &format!("recipe {name}"))?;
        if self.loaded.contains(&key) {
            self.stack.pop();
            return Ok(());
        }
        let text = BUILTIN
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, text)| *text)
            .unwrap_or_default();
        let path = PathBuf::from(format!("<built-in>/recipes/{name}.toml"));
        let file = deployfile::parse(&path, text)?;
        for nested in file.import.clone() {
            self.import(&nested, &path)?;
        }
        self.stack.pop();
        self.loaded.push(key);
        self.sources.push(Source {
            label: format!("recipe {name}"),
            path,
            file,
        });
        Ok(())
    }

    /// Push onto the import stack, reporting the whole circle if `key` is already on it.
    fn enter(&mut self, key: &str, label: &str) -> Result<()> {
        if let Some(position) = self
            .stack
            .iter()
            .position(|entry| entry == key || entry == label)
        {
            let mut circle: Vec<String> = self.stack[position..].to_vec();
            circle.push(label.to_string());
            return Err(Error::ImportCycle(circle));
        }
        self.stack.push(label.to_string());
        Ok(())
    }
}

/// The text of a loaded file: a built-in recipe, or a file on disk.
pub fn source_text(path: &Path) -> Option<String> {
    let builtin = path
        .to_str()
        .and_then(|p| p.strip_prefix("<built-in>/recipes/"))
        .and_then(|p| p.strip_suffix(".toml"));
    match builtin {
        Some(name) => BUILTIN
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t.to_string()),
        None => std::fs::read_to_string(path).ok(),
    }
}

/// Where `needle` first appears inside task `task`'s table in `text` (or the table header),
/// as line, column and a pointed snippet.
pub fn locate_in_task(
    text: &str,
    task: &str,
    needle: Option<&str>,
) -> Option<(usize, usize, String)> {
    let headers = [
        format!("[tasks.\"{task}\"]"),
        format!("[tasks.{task}]"),
        format!("[tasks.'{task}']"),
    ];
    let start = headers.iter().filter_map(|h| text.find(h.as_str())).min()?;
    let end = text[start + 1..]
        .find("\n[")
        .map_or(text.len(), |i| start + 1 + i);
    let span = needle
        .and_then(|n| {
            text[start..end]
                .find(n)
                .map(|i| start + i..start + i + n.len())
        })
        .unwrap_or(start..start + text[start..].find('\n').unwrap_or(0));
    Some(deployfile::pointed_snippet(text, span))
}

fn read(path: &Path) -> Result<String> {
    tracing::debug!(file = %path.display(), "reading");
    std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_recipes_parse() {
        for (name, text) in BUILTIN {
            deployfile::parse(Path::new(name), text)
                .unwrap_or_else(|e| panic!("recipe {name}: {e}"));
        }
    }

    #[test]
    fn imports_load_in_precedence_order_and_cycles_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("deploy")).unwrap();
        std::fs::write(
            dir.path().join("Deployfile.toml"),
            "import = [\"laravel\", \"deploy/a.toml\"]\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("deploy/a.toml"), "import = [\"b.toml\"]\n").unwrap();
        std::fs::write(dir.path().join("deploy/b.toml"), "").unwrap();
        let labels: Vec<String> = load(&dir.path().join("Deployfile.toml"))
            .unwrap()
            .into_iter()
            .map(|s| s.label)
            .collect();
        assert_eq!(labels[0], "recipe common");
        assert_eq!(labels[1], "recipe laravel");
        assert!(labels[2].ends_with("deploy/b.toml"));
        assert!(labels[3].ends_with("deploy/a.toml"));
        assert!(labels[4].ends_with("Deployfile.toml"));

        std::fs::write(dir.path().join("deploy/b.toml"), "import = [\"a.toml\"]\n").unwrap();
        let error = load(&dir.path().join("Deployfile.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("recipes import each other in a circle:"),
            "{error}"
        );
        assert!(
            error.contains("a.toml -> ") && error.ends_with("a.toml"),
            "{error}"
        );
    }

    #[test]
    fn unknown_builtin_suggests() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("Deployfile.toml"),
            "import = [\"laravle\"]\n",
        )
        .unwrap();
        let error = load(&dir.path().join("Deployfile.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("unknown recipe `laravle`") && error.contains("did you mean `laravel`?"),
            "{error}"
        );
    }
}
