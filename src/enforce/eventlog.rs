//! The JSON lines event log of the live and enforcing modes: a file opened
//! for appending (reopened on SIGHUP, for logrotate) or standard output.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Where events go.
pub struct EventLog {
    path: Option<PathBuf>,
    out: Box<dyn Write + Send>,
}

impl EventLog {
    /// Opens `path` for appending, or standard output for `None`.
    pub fn open(path: Option<&Path>) -> io::Result<EventLog> {
        let out = Self::writer(path)?;
        Ok(EventLog {
            path: path.map(Path::to_owned),
            out,
        })
    }

    fn writer(path: Option<&Path>) -> io::Result<Box<dyn Write + Send>> {
        Ok(match path {
            Some(p) => {
                let f: File = OpenOptions::new().create(true).append(true).open(p)?;
                Box::new(BufWriter::new(f))
            }
            None => Box::new(io::stdout()),
        })
    }

    /// Closes and opens the file again (after logrotate moved it).
    pub fn reopen(&mut self) -> io::Result<()> {
        if self.path.is_some() {
            self.out.flush()?;
            self.out = Self::writer(self.path.as_deref())?;
        }
        Ok(())
    }

    /// Writes one event as a line, flushed so that readers see it at once.
    pub fn write(&mut self, event: &serde_json::Value) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, event)?;
        self.out.write_all(b"\n")?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_and_reopens_after_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut log = EventLog::open(Some(&path)).unwrap();
        log.write(&serde_json::json!({"event": "a"})).unwrap();
        std::fs::rename(&path, dir.path().join("events.jsonl.1")).unwrap();
        log.reopen().unwrap();
        log.write(&serde_json::json!({"event": "b"})).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"event\":\"b\"}\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("events.jsonl.1")).unwrap(),
            "{\"event\":\"a\"}\n"
        );
    }
}
