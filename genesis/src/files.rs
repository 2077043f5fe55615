//! Small file helpers: bounded reads and writes that report the path, and secret files created 0600.

use std::fs;
use std::io::{Read, Write};
use std::path::Path;

use crate::Error;

/// Read a UTF-8 text file of at most `max` bytes, without allocating more than that for a larger one.
pub(crate) fn read_text(path: &Path, max: usize) -> Result<String, Error> {
    let read_err = |source| Error::Read { path: path.to_path_buf(), source };
    let file = fs::File::open(path).map_err(read_err)?;
    let mut text = String::new();
    file.take(max as u64 + 1).read_to_string(&mut text).map_err(read_err)?;
    if text.len() > max {
        return Err(Error::FileTooLarge { path: path.to_path_buf(), max });
    }
    Ok(text)
}

/// Write a public file (genesis, config, manifest) with the default permissions.
pub(crate) fn write_public(path: &Path, text: &str) -> Result<(), Error> {
    fs::write(path, text).map_err(|source| Error::Write { path: path.to_path_buf(), source })
}

/// Write a secret file: created with mode 0600 on unix, and narrowed to 0600 if it already existed.
pub(crate) fn write_secret(path: &Path, text: &str) -> Result<(), Error> {
    let write_err = |source| Error::Write { path: path.to_path_buf(), source };
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let mut file = options.open(path).map_err(write_err)?;
        // `mode` only applies when the file is created; an existing file keeps its mode unless narrowed.
        file.set_permissions(fs::Permissions::from_mode(0o600)).map_err(write_err)?;
        file.write_all(text.as_bytes()).map_err(write_err)?;
        file.sync_all().map_err(write_err)
    }
    #[cfg(not(unix))]
    {
        let mut file = options.open(path).map_err(write_err)?;
        file.write_all(text.as_bytes()).map_err(write_err)?;
        file.sync_all().map_err(write_err)
    }
}

/// Create a directory and its parents.
pub(crate) fn create_dir(path: &Path) -> Result<(), Error> {
    fs::create_dir_all(path).map_err(|source| Error::Write { path: path.to_path_buf(), source })
}
