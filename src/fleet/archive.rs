//! Packing a local directory once (tar + gzip) so the same bytes stream to every host.

use std::path::Path;

use flate2::write::GzEncoder;
use flate2::Compression;

/// Pack the contents of `dir` (paths relative to it), leaving out any entry whose name is in
/// `exclude` at any depth. Entries are sorted so the same tree packs to the same bytes.
pub fn pack(dir: &Path, exclude: &[String]) -> Result<Vec<u8>, String> {
    if !dir.is_dir() {
        return Err(format!("`{}` is not a directory", dir.display()));
    }
    let encoder = GzEncoder::new(Vec::new(), Compression::fast());
    let mut builder = tar::Builder::new(encoder);
    builder.follow_symlinks(false);
    add_dir(&mut builder, dir, Path::new(""), exclude)?;
    let encoder = builder
        .into_inner()
        .map_err(|e| format!("cannot pack `{}`: {e}", dir.display()))?;
    encoder
        .finish()
        .map_err(|e| format!("cannot pack `{}`: {e}", dir.display()))
}

fn add_dir<W: std::io::Write>(
    builder: &mut tar::Builder<W>,
    root: &Path,
    relative: &Path,
    exclude: &[String],
) -> Result<(), String> {
    let dir = root.join(relative);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| format!("cannot read `{}`: {e}", dir.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot read `{}`: {e}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        if exclude.iter().any(|x| name.to_str() == Some(x.as_str())) {
            continue;
        }
        let path = relative.join(&name);
        let file_type = entry
            .file_type()
            .map_err(|e| format!("cannot read `{}`: {e}", entry.path().display()))?;
        builder
            .append_path_with_name(entry.path(), &path)
            .map_err(|e| format!("cannot pack `{}`: {e}", entry.path().display()))?;
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
