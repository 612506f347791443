//! Where audit events go: upstream's log backend. One line an event, JSON or
//! the legacy text form, to stdout (`--audit-log-path=-`) or to a file rotated
//! as upstream's lumberjack does (`--audit-log-maxsize` megabytes, backups
//! renamed `NAME-2006-01-02T15-04-05.000.EXT` in UTC, at most
//! `--audit-log-maxbackup` kept, none older than `--audit-log-maxage` days);
//! written as the request goes (`blocking`, `blocking-strict`) or by a
//! background thread from a bounded buffer (`batch`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use super::Event;

/// `--audit-log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Legacy,
}

/// `--audit-log-mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Batch,
    Blocking,
    /// As blocking, and a request whose first event cannot be written fails.
    BlockingStrict,
}

/// The `--audit-log-*` flags.
#[derive(Clone, Debug)]
pub struct LogOptions {
    /// `-` is stdout; empty turns the log backend off.
    pub path: String,
    pub max_age_days: i64,
    pub max_backups: i64,
    pub max_size_mb: i64,
    pub format: String,
    pub mode: String,
    pub batch_buffer_size: usize,
}

impl Default for LogOptions {
    /// Upstream's defaults.
    fn default() -> Self {
        LogOptions {
            path: String::new(),
            max_age_days: 0,
            max_backups: 0,
            max_size_mb: 0,
            format: "json".into(),
            mode: "blocking".into(),
            batch_buffer_size: 10000,
        }
    }
}

impl LogOptions {
    /// Upstream's checks of the flags, run only when the backend is on.
    pub fn validate(&self) -> Result<(Format, Mode), String> {
        let mut errs = Vec::new();
        let mode = match self.mode.as_str() {
            "batch" => Some(Mode::Batch),
            "blocking" => Some(Mode::Blocking),
            "blocking-strict" => Some(Mode::BlockingStrict),
            m => {
                errs.push(format!("invalid audit log mode {m}, allowed modes are \"batch,blocking,blocking-strict\""));
                None
            }
        };
        if self.batch_buffer_size == 0 && mode == Some(Mode::Batch) {
            errs.push("invalid audit batch log buffer size 0, must be a positive number".into());
        }
        let format = match self.format.as_str() {
            "json" => Some(Format::Json),
            "legacy" => Some(Format::Legacy),
            f => {
                errs.push(format!("invalid audit log format {f}, allowed formats are \"legacy,json\""));
                None
            }
        };
        for (flag, v) in [("maxage", self.max_age_days), ("maxbackup", self.max_backups), ("maxsize", self.max_size_mb)]
        {
            if v < 0 {
                errs.push(format!("--audit-log-{flag} {v} can't be a negative number"));
            }
        }
        match (format, mode, errs.as_slice()) {
            (Some(f), Some(m), []) => Ok((f, m)),
            (_, _, [one]) => Err(one.clone()),
            (_, _, many) => Err(format!("[{}]", many.join(", "))),
        }
    }
}

/// The log backend.
pub struct LogSink {
    format: Format,
    delivery: Delivery,
}

enum Delivery {
    Direct(Mutex<Output>),
    Batch(SyncSender<Vec<u8>>),
}

enum Output {
    Stdout,
    File(Rotating),
}

impl Output {
    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        match self {
            Output::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(line)?;
                out.flush()
            }
            Output::File(f) => f.write(line),
        }
    }
}

impl LogSink {
    /// Opens the log (creating its directory and file, as upstream does at
    /// start, so a path that cannot be written stops the server).
    pub fn open(opts: &LogOptions) -> Result<(LogSink, Mode), String> {
        let (format, mode) = opts.validate()?;
        let mut output = if opts.path == "-" {
            Output::Stdout
        } else {
            let max_size = if opts.max_size_mb > 0 { opts.max_size_mb as u64 } else { DEFAULT_MAX_SIZE_MB } * MEGABYTE;
            Output::File(Rotating::open(
                PathBuf::from(&opts.path),
                max_size,
                opts.max_backups as usize,
                opts.max_age_days as u64,
            )?)
        };
        let delivery = match mode {
            Mode::Batch => {
                let (tx, rx) = sync_channel::<Vec<u8>>(opts.batch_buffer_size);
                std::thread::Builder::new()
                    .name("audit-log".into())
                    .spawn(move || {
                        for line in rx {
                            if let Err(e) = output.write_line(&line) {
                                tracing::error!("writing the audit log: {e}");
                            }
                        }
                    })
                    .map_err(|e| format!("starting the audit log writer: {e}"))?;
                Delivery::Batch(tx)
            }
            Mode::Blocking | Mode::BlockingStrict => Delivery::Direct(Mutex::new(output)),
        };
        Ok((LogSink { format, delivery }, mode))
    }

    /// Writes one event; false if it was lost.
    pub fn process(&self, ev: &Event) -> bool {
        let mut line = match self.format {
            Format::Json => match serde_json::to_vec(ev) {
                Ok(v) => v,
                Err(e) => {
                    tracing::error!("encoding an audit event: {e}");
                    return false;
                }
            },
            Format::Legacy => ev.legacy_line().into_bytes(),
        };
        line.push(b'\n');
        match &self.delivery {
            Delivery::Direct(out) => match out.lock().unwrap_or_else(|p| p.into_inner()).write_line(&line) {
                Ok(()) => true,
                Err(e) => {
                    tracing::error!("writing the audit log: {e}");
                    false
                }
            },
            Delivery::Batch(tx) => match tx.try_send(line) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    tracing::error!("audit buffer queue blocked, dropping an audit event");
                    false
                }
                Err(TrySendError::Disconnected(_)) => false,
            },
        }
    }
}

const MEGABYTE: u64 = 1024 * 1024;
/// lumberjack's size when none is set.
const DEFAULT_MAX_SIZE_MB: u64 = 100;
/// The timestamp in a backup's name (Go's `2006-01-02T15-04-05.000`).
const BACKUP_TIME_FORMAT: &str = "%Y-%m-%dT%H-%M-%S%.3f";

/// A file that is renamed aside and started afresh when a write would take it
/// past its size.
struct Rotating {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: u64,
    max_backups: usize,
    max_age_days: u64,
}

impl Rotating {
    fn open(path: PathBuf, max_size: u64, max_backups: usize, max_age_days: u64) -> Result<Rotating, String> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir)
                .map_err(|e| format!("failed to create audit log directory {}: {e}", dir.display()))?;
        }
        let file = open_append(&path).map_err(|e| format!("failed to open audit log file {}: {e}", path.display()))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Rotating { path, file, size, max_size, max_backups, max_age_days })
    }

    fn write(&mut self, line: &[u8]) -> std::io::Result<()> {
        let len = line.len() as u64;
        if len > self.max_size {
            return Err(std::io::Error::other(format!(
                "write length {len} exceeds maximum file size {}",
                self.max_size
            )));
        }
        if self.size + len > self.max_size {
            self.rotate()?;
        }
        self.file.write_all(line)?;
        self.size += len;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let stamp = chrono::Utc::now().format(BACKUP_TIME_FORMAT).to_string();
        let (prefix, ext) = self.name_parts();
        let backup = self.path.with_file_name(format!("{prefix}-{stamp}{ext}"));
        std::fs::rename(&self.path, &backup)?;
        self.file = open_append(&self.path)?;
        self.size = 0;
        self.remove_old_backups();
        Ok(())
    }

    /// The file name without and with its extension's dot: `audit` and `.log`.
    fn name_parts(&self) -> (String, String) {
        let name = self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let ext = Path::new(&name).extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
        (name[..name.len() - ext.len()].to_string(), ext)
    }

    /// Backups beyond the newest max_backups, or older than max_age days, go
    /// (zero is no limit for either).
    fn remove_old_backups(&self) {
        if self.max_backups == 0 && self.max_age_days == 0 {
            return;
        }
        let (prefix, ext) = self.name_parts();
        let dir = match self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(d) => d.to_path_buf(),
            None => PathBuf::from("."),
        };
        let Ok(entries) = std::fs::read_dir(&dir) else { return };
        let mut backups: Vec<(chrono::NaiveDateTime, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let stamp = name.strip_prefix(&format!("{prefix}-"))?.strip_suffix(ext.as_str())?;
                let t = chrono::NaiveDateTime::parse_from_str(stamp, BACKUP_TIME_FORMAT).ok()?;
                Some((t, e.path()))
            })
            .collect();
        backups.sort_by_key(|b| std::cmp::Reverse(b.0));
        let cutoff = (self.max_age_days > 0)
            .then(|| SystemTime::now() - Duration::from_secs(self.max_age_days * 24 * 3600))
            .map(|t| chrono::DateTime::<chrono::Utc>::from(t).naive_utc());
        for (i, (t, path)) in backups.iter().enumerate() {
            let too_many = self.max_backups > 0 && i >= self.max_backups;
            let too_old = cutoff.is_some_and(|c| *t < c);
            if too_many || too_old {
                if let Err(e) = std::fs::remove_file(path) {
                    tracing::warn!("removing old audit log {}: {e}", path.display());
                }
            }
        }
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_max_backups() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("logs/audit.log");
        let mut r = Rotating::open(path.clone(), 100, 2, 0).expect("open");
        let line = [b'x'; 40];
        for _ in 0..2 {
            r.write(&line).expect("write");
        }
        assert_eq!(std::fs::read_dir(dir.path().join("logs")).expect("dir").count(), 1);
        for _ in 0..8 {
            r.write(&line).expect("write");
            // Backups are named by the millisecond.
            std::thread::sleep(Duration::from_millis(3));
        }
        let mut names: Vec<String> = std::fs::read_dir(dir.path().join("logs"))
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names.len(), 3, "{names:?}");
        assert_eq!(names[2], "audit.log");
        for b in &names[..2] {
            let stamp = b.strip_prefix("audit-").and_then(|s| s.strip_suffix(".log")).expect("backup name");
            assert!(chrono::NaiveDateTime::parse_from_str(stamp, BACKUP_TIME_FORMAT).is_ok(), "{b}");
        }
        assert_eq!(std::fs::metadata(&path).expect("log").len(), 80);
        assert!(r.write(&[b'y'; 101]).is_err());
    }

    #[test]
    fn backups_older_than_max_age_go() {
        let dir = tempfile::tempdir().expect("temp dir");
        let old = dir.path().join("audit-2020-01-01T00-00-00.000.log");
        let unrelated = dir.path().join("audit-notes.log");
        std::fs::write(&old, "old\n").expect("write");
        std::fs::write(&unrelated, "kept\n").expect("write");
        let mut r = Rotating::open(dir.path().join("audit.log"), 10, 0, 1).expect("open");
        r.write(b"first\n").expect("write");
        r.write(b"second\n").expect("write");
        assert!(!old.exists(), "a backup from 2020 is past --audit-log-maxage=1");
        assert!(unrelated.exists(), "only names a backup would have are touched");
        let backups = std::fs::read_dir(dir.path()).expect("dir").count();
        assert_eq!(backups, 3, "the log, the fresh backup and the unrelated file");
    }

    #[test]
    fn flags_are_checked_as_upstream() {
        let bad = LogOptions { format: "xml".into(), max_size_mb: -1, ..Default::default() };
        assert_eq!(
            bad.validate().expect_err("accepted"),
            "[invalid audit log format xml, allowed formats are \"legacy,json\", --audit-log-maxsize -1 can't be a negative number]"
        );
        let bad = LogOptions { mode: "async".into(), ..Default::default() };
        assert_eq!(
            bad.validate().expect_err("accepted"),
            "invalid audit log mode async, allowed modes are \"batch,blocking,blocking-strict\""
        );
    }
}
