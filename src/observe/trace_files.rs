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
    json: Option<PathBuf>,
    svg: Option<PathBuf>,
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
        if files.json.is_some() && files.json == files.svg {
            return Err(Error::Environment(
                "--trace and --timeline name the same file".into(),
            ));
        }
        trace::follow_job_threads(files.trace.clone());
        Ok(Some(files))
    }

    /// Writes what was recorded; a failure is a warning (the job's status
    /// stands).
    pub fn write(&self) {
        let data = self.trace.finish();
        if let Some(path) = &self.json {
            let written = replace(path, |out| chrome_trace::write(&data, out));
            if let Err(e) = written {
                eprintln!(
                    "tierjit: warning: cannot write the trace {}: {e}",
                    path.display()
                );
            }
        }
        if let Some(path) = &self.svg {
            let written = replace(path, |out| {
                out.write_all(timeline::render(&data).as_bytes())
            });
            if let Err(e) = written {
                eprintln!(
                    "tierjit: warning: cannot write the timeline {}: {e}",
                    path.display()
                );
            }
        }
    }
}

/// `path` made absolute (the job may change directory), once a file can
/// be created next to it and it is not a directory.
fn checked(path: &Path, what: &str) -> Result<PathBuf, Error> {
    let fail = |why: String| {
        Error::Environment(format!("cannot write the {what} {}: {why}", path.display()))
    };
    let name = path
        .file_name()
        .ok_or_else(|| fail("not a file name".into()))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let dir = std::fs::canonicalize(dir).map_err(|e| fail(e.to_string()))?;
    let absolute = dir.join(name);
    if absolute.is_dir() {
        return Err(fail("it is a directory".into()));
    }
    let probe = temporary(&absolute);
    std::fs::File::create(&probe).map_err(|e| fail(e.to_string()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(absolute)
}

/// The file `path` is written through.
fn temporary(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Writes `path` anew with `write`, through a temporary file renamed over
/// it. A job may have lowered RLIMIT_FSIZE: a write past it fails instead
/// of ending the process.
fn replace(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let temporary = temporary(path);
    let written = crate::code::without_file_size_signal(|| {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&temporary)?);
        write(&mut out)?;
        out.into_inner().map_err(|e| e.into_error()).map(drop)
    })
    .and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}
