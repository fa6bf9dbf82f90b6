//! Where `--trace` and `--timeline` go: checked before the job runs, so a
//! path that cannot be written is an error then rather than a lost trace
//! later, and written at the end through a new file renamed over the
//! path. No descriptor is held meanwhile (a job may close descriptors it
//! did not open and reuse their numbers), an existing file is replaced
//! only by a complete one, and a run that fails before its job starts
//! leaves it as it was.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::{chrome_trace, timeline, trace};
use crate::error::Error;

/// The run's trace and the files it goes to at the end.
pub struct TraceFiles {
    pub trace: Arc<trace::Trace>,
    json: Option<Target>,
    svg: Option<Target>,
}

/// Where one output goes.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// A regular file (or none yet) at this absolute path, symbolic links
    /// resolved: replaced whole by a file renamed over it.
    File(PathBuf),
    /// Something else that exists (a terminal, a pipe), or a name under
    /// `/dev` or `/proc` (`/dev/stdout`, which may lead to the file the
    /// job's output goes to): opened for appending and written as it is.
    Special(PathBuf),
}

impl TraceFiles {
    /// `None` when neither file is asked for.
    pub fn create(
        start: Instant,
        job: &Path,
        json: Option<&Path>,
        svg: Option<&Path>,
    ) -> Result<Option<TraceFiles>, Error> {
        if json.is_none() && svg.is_none() {
            return Ok(None);
        }
        let files = TraceFiles {
            trace: Arc::new(trace::Trace::new(start, &job.display().to_string())),
            json: json.map(|p| checked(p, "trace")).transpose()?,
            svg: svg.map(|p| checked(p, "timeline")).transpose()?,
        };
        if let (Some(json), Some(svg)) = (&files.json, &files.svg) {
            if json.same_as(svg) {
                return Err(Error::Environment(
                    "--trace and --timeline name the same file".into(),
                ));
            }
        }
        trace::follow_job_threads(files.trace.clone());
        Ok(Some(files))
    }

    /// Writes what was recorded; a failure is a warning (the job's status
    /// stands).
    pub fn write(&self) {
        let data = self.trace.finish();
        if let Some(target) = &self.json {
            if let Err(e) = target.write(|out| chrome_trace::write(&data, out)) {
                say!(
                    "tierjit: warning: cannot write the trace {}: {e}",
                    target.path().display()
                );
            }
        }
        if let Some(target) = &self.svg {
            if let Err(e) = target.write(|out| out.write_all(timeline::render(&data).as_bytes())) {
                say!(
                    "tierjit: warning: cannot write the timeline {}: {e}",
                    target.path().display()
                );
            }
        }
    }
}

/// Where `path` leads, once it is known that it can be written: a new
/// file can be made next to a regular one, and it is not a directory.
/// Made absolute, since the job may change directory.
fn checked(path: &Path, what: &str) -> Result<Target, Error> {
    let fail = |why: String| {
        Error::Environment(format!("cannot write the {what} {}: {why}", path.display()))
    };
    let system = path.starts_with("/dev") || path.starts_with("/proc");
    // A symbolic link to a file not made yet (as a shell's `>` does).
    let mut path = path.to_path_buf();
    for _ in 0..8 {
        let dangling = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_symlink())
            && std::fs::metadata(&path).is_err();
        if !dangling {
            break;
        }
        let target = std::fs::read_link(&path).map_err(|e| fail(e.to_string()))?;
        path = match path.parent() {
            Some(dir) if target.is_relative() => dir.join(target),
            _ => target,
        };
    }
    let path = path.as_path();
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(fail("it is a directory".into())),
        Ok(meta) if !meta.is_file() || system => {
            let absolute = std::path::absolute(path).map_err(|e| fail(e.to_string()))?;
            Ok(Target::Special(absolute))
        }
        Ok(_) => {
            let resolved = std::fs::canonicalize(path).map_err(|e| fail(e.to_string()))?;
            probe(&resolved).map_err(|e| fail(e.to_string()))?;
            Ok(Target::File(resolved))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let name = path
                .file_name()
                .ok_or_else(|| fail("not a file name".into()))?;
            let dir = match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir,
                _ => Path::new("."),
            };
            let dir = std::fs::canonicalize(dir).map_err(|e| fail(e.to_string()))?;
            let absolute = dir.join(name);
            probe(&absolute).map_err(|e| fail(e.to_string()))?;
            Ok(Target::File(absolute))
        }
        Err(e) => Err(fail(e.to_string())),
    }
}

/// Whether the file `path` is written through can be made.
fn probe(path: &Path) -> std::io::Result<()> {
    let temporary = temporary(path);
    new_file(&temporary)?;
    std::fs::remove_file(&temporary)
}

/// The file `path` is written through.
fn temporary(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Creates `path`, which must not exist (not even as a symbolic link).
fn new_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

type Out = std::io::BufWriter<std::fs::File>;

impl Target {
    fn path(&self) -> &Path {
        match self {
            Target::File(path) | Target::Special(path) => path,
        }
    }

    /// Whether the two lead to one file (by name, or as hard links).
    fn same_as(&self, other: &Target) -> bool {
        use std::os::unix::fs::MetadataExt;
        let identity = |t: &Target| std::fs::metadata(t.path()).ok().map(|m| (m.dev(), m.ino()));
        self.path() == other.path() || identity(self).is_some_and(|id| Some(id) == identity(other))
    }

    /// Writes the output with `write`. A job may have lowered
    /// RLIMIT_FSIZE: a write past it fails instead of ending the process.
    fn write(&self, write: impl FnOnce(&mut Out) -> std::io::Result<()>) -> std::io::Result<()> {
        let finish = |out: Out| out.into_inner().map_err(|e| e.into_error()).map(drop);
        match self {
            Target::Special(path) => crate::code::without_file_size_signal(|| {
                let mut out = Out::new(std::fs::OpenOptions::new().append(true).open(path)?);
                write(&mut out)?;
                finish(out)
            }),
            Target::File(path) => {
                let temporary = temporary(path);
                let _ = std::fs::remove_file(&temporary);
                let written = crate::code::without_file_size_signal(|| {
                    let mut out = Out::new(new_file(&temporary)?);
                    write(&mut out)?;
                    finish(out)
                })
                .and_then(|()| std::fs::rename(&temporary, path));
                if written.is_err() {
                    let _ = std::fs::remove_file(&temporary);
                }
                written
            }
        }
    }
}
