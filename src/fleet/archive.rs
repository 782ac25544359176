//! Packing a local directory once (tar + gzip) so the same bytes stream to every host.

use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;

/// Why a directory could not be packed; the wording names the path.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("`{}` is not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("cannot read `{}`: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot pack `{}`: {source}", path.display())]
    Pack {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("packing stopped: {0}")]
    Stopped(String),
}

/// Pack the contents of `dir` (paths relative to it), leaving out any entry whose name is in
/// `exclude` at any depth. Entries are sorted so the same tree packs to the same bytes.
pub fn pack(dir: &Path, exclude: &[String]) -> Result<Vec<u8>, ArchiveError> {
    if !dir.is_dir() {
        return Err(ArchiveError::NotADirectory(dir.to_path_buf()));
    }
    let encoder = GzEncoder::new(Vec::new(), Compression::fast());
    let mut builder = tar::Builder::new(encoder);
    builder.follow_symlinks(false);
    add_dir(&mut builder, dir, Path::new(""), exclude)?;
    let pack_error = |source| ArchiveError::Pack {
        path: dir.to_path_buf(),
        source,
    };
    builder
        .into_inner()
        .map_err(pack_error)?
        .finish()
        .map_err(pack_error)
}

fn add_dir<W: std::io::Write>(
    builder: &mut tar::Builder<W>,
    root: &Path,
    relative: &Path,
    exclude: &[String],
) -> Result<(), ArchiveError> {
    let dir = root.join(relative);
    let read_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ArchiveError::Read { path, source }
    };
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .map_err(read_error(&dir))?
        .collect::<Result<_, _>>()
        .map_err(read_error(&dir))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        if exclude.iter().any(|x| name.to_str() == Some(x.as_str())) {
            continue;
        }
        let path = relative.join(&name);
        let file_type = entry.file_type().map_err(read_error(&entry.path()))?;
        builder
            .append_path_with_name(entry.path(), &path)
            .map_err(|source| ArchiveError::Pack {
                path: entry.path(),
                source,
            })?;
        if file_type.is_dir() {
            add_dir(builder, root, &path, exclude)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_relative_paths_without_excluded_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("app/node_modules/x")).unwrap();
        std::fs::write(dir.path().join("app/index.php"), "<?php echo 1;").unwrap();
        std::fs::write(dir.path().join("app/node_modules/x/a.js"), "x").unwrap();
        std::os::unix::fs::symlink("index.php", dir.path().join("app/link.php")).unwrap();
        let bytes = pack(&dir.path().join("app"), &["node_modules".into()]).unwrap();
        assert_eq!(
            bytes,
            pack(&dir.path().join("app"), &["node_modules".into()]).unwrap(),
            "deterministic"
        );
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, vec!["index.php", "link.php"]);
        assert!(pack(&dir.path().join("missing"), &[]).is_err());
    }
}
