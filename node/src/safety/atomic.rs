//! Replace a small file so that a crash at any moment leaves either the old or the new content, and the
//! new content survives a power loss once [`write`] returns.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use super::SafetyError;

/// Write `contents` to `path`: a temp file beside it, fsync, rename over `path`, fsync the directory.
pub fn write(path: &Path, contents: &[u8]) -> Result<(), SafetyError> {
    let io = |action, source| SafetyError::Io { action, path: path.to_path_buf(), source };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut f =
            OpenOptions::new().write(true).create(true).truncate(true).open(&tmp).map_err(|e| io("create", e))?;
        f.write_all(contents).map_err(|e| io("write", e))?;
        f.sync_all().map_err(|e| io("fsync", e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| io("rename into", e))?;
    // The rename is durable only once the directory entry is.
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io("fsync the directory of", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn replaces_whole_files_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        super::write(&path, b"first").unwrap();
        super::write(&path, b"second, longer").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second, longer");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("x.json")]);
    }
}
