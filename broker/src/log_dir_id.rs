//! The identity of the broker's log directory (Kafka's `directory.id` in its
//! `meta.properties`): created once with the directory and sent with every registration.
//! A broker that comes back with another id lost its logs, and the controller must not
//! count it as holding what it held (docs/architecture.md §4, eligible leader replicas).

use std::io;

use spate_log::storage::LogDir;

/// The file holding the id, in the log directory itself: it is lost with the logs.
pub const LOG_DIR_ID_FILE: &str = "meta.properties";

const KEY: &str = "directory.id";

/// Reads the log directory's id, creating it (durably) when the directory has none.
pub fn load_or_create(logs: &LogDir) -> io::Result<String> {
    if let Some(bytes) = logs.read_if_present(LOG_DIR_ID_FILE)? {
        let text = String::from_utf8_lossy(&bytes);
        let stored = text
            .lines()
            .find_map(|l| l.strip_prefix(KEY).and_then(|r| r.strip_prefix('=')))
            .map(str::trim)
            .filter(|id| !id.is_empty());
        if let Some(id) = stored {
            return Ok(id.to_string());
        }
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} has no {KEY}; restore it or remove the file to start the log directory afresh",
                logs.join(LOG_DIR_ID_FILE).display()
            ),
        ));
    }
    let id = spate_metadata::ids::url_safe_id(rand::random());
    logs.write_atomic(
        LOG_DIR_ID_FILE,
        format!("version=1\n{KEY}={id}\n").as_bytes(),
    )?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_survives_reopening_and_a_new_directory_gets_another() {
        let tmp = tempfile::tempdir().unwrap();
        let logs = LogDir::local(tmp.path().join("logs"));
        logs.create().unwrap();
        let id = load_or_create(&logs).unwrap();
        assert_eq!(id.len(), 22);
        assert_eq!(load_or_create(&logs).unwrap(), id);
        logs.remove_all().unwrap();
        logs.create().unwrap();
        assert_ne!(load_or_create(&logs).unwrap(), id);
    }

    #[test]
    fn a_file_without_the_id_is_an_error_not_a_new_identity() {
        let tmp = tempfile::tempdir().unwrap();
        let logs = LogDir::local(tmp.path());
        logs.write_atomic(LOG_DIR_ID_FILE, b"version=1\n").unwrap();
        let e = load_or_create(&logs).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}
