//! Seeing what the JIT does: perf's map of JIT'd code (`--perf-map`), the
//! GDB JIT interface (`--debug-info`), and the run's trace (`--trace` for
//! Perfetto, `--timeline` as an SVG picture).
//!
//! The map and the debugger registrations are the process's (perf and gdb
//! look at a process), switched on once by `enable`; every place that
//! loads code tells `code_loaded`, which does nothing when both are off.

pub mod chrome_trace;
pub mod elf;
pub mod perf_map;
pub mod timeline;
pub mod trace;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use crate::code::{CodeAddress, Jit, LoadedObject};
use crate::error::Error;
use perf_map::{MapEntry, PerfMap};

static PERF_MAP: OnceLock<Mutex<PerfMap>> = OnceLock::new();
static DEBUGGER: AtomicBool = AtomicBool::new(false);

/// Switches on the perf map and the debugger registrations for the rest
/// of the process (each only ever on). The map's file is created now, so
/// that a path perf cannot use is an error before the job runs.
pub fn enable(perf_map: bool, debugger: bool) -> Result<(), Error> {
    if perf_map && PERF_MAP.get().is_none() {
        let map = PerfMap::create().map_err(|e| {
            Error::Environment(format!(
                "cannot write the perf map {}: {e}",
                perf_map::path_for(std::process::id()).display()
            ))
        })?;
        let _ = PERF_MAP.set(Mutex::new(map));
        crate::code::in_forked_children(PerfMap::copy_for_forked_child);
    }
    if debugger {
        // Relaxed: read by threads that load code, which start after this
        // (or load code the debugger may miss, which is harmless).
        DEBUGGER.store(true, Ordering::Relaxed);
    }
    Ok(())
}

/// Whether loaded code is reported to perf or debuggers at all.
pub fn active() -> bool {
    // Relaxed: see `enable`.
    PERF_MAP.get().is_some() || DEBUGGER.load(Ordering::Relaxed)
}

/// How many objects debuggers were told about and not yet told are gone
/// (a diagnostic; each loaded object is one while `--debug-info` is on).
pub fn debugger_images() -> usize {
    crate::code::registered_images()
}

/// What kind of code an object holds, for its names in perf's map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeKind {
    /// The baseline: each function's O0 code (`f.tj0`) and its identity
    /// stub (`f`).
    Baseline,
    /// The whole module at O3 (`--mode optimized`).
    OptimizedModule,
    /// An optimized version (`f.tjN`; entered through `f.tjN.guard`, the
    /// body specialized for an argument value, if it speculates on one)
    /// and/or an OSR continuation (`f.tj.osrK.vN`).
    Version,
}

/// The name perf shows for `symbol` of an object of `kind`: the function
/// (or `f@loopK`) and the tier, e.g. `kernel [O3]`, `main@loop2 [O3 osr]`.
pub fn display_name(symbol: &str, kind: CodeKind, baseline_has: impl Fn(&str) -> bool) -> String {
    match kind {
        CodeKind::Baseline => match symbol.strip_suffix(".tj0") {
            Some(function) => format!("{function} [O0]"),
            None if baseline_has(&format!("{symbol}.tj0")) => format!("{symbol} [stub]"),
            None => format!("{symbol} [O0]"),
        },
        CodeKind::OptimizedModule => format!("{symbol} [O3]"),
        CodeKind::Version => {
            if let Some((function, rest)) = symbol.rsplit_once(".tj.osr") {
                let loop_index = rest.split_once(".v").map_or(rest, |(k, _)| k);
                return format!("{function}@loop{loop_index} [O3 osr]");
            }
            let (symbol, tier) = match symbol.strip_suffix(".guard") {
                Some(version) => (version, "O3 specialized"),
                None => (symbol, "O3"),
            };
            let function = match symbol.rsplit_once(".tj") {
                Some((f, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => f,
                _ => symbol,
            };
            format!("{function} [{tier}]")
        }
    }
}

/// Code was loaded: `loaded`, from `object`, with `known` symbols looked
/// up. Adds its functions to perf's map and tells debuggers, as enabled;
/// what cannot be done is a warning, never a failure of the load.
pub fn code_loaded(
    jit: &Jit,
    loaded: &LoadedObject,
    object: &[u8],
    known: &[(&str, CodeAddress)],
    kind: CodeKind,
) {
    if !active() {
        return;
    }
    let Some(elf) = elf::read(object) else {
        warn_once("an object perf and debuggers cannot be told about (not 64-bit ELF)");
        return;
    };
    let bases = section_addresses(jit, &elf, known);
    let base = |section: usize| bases.iter().find(|b| b.0 == section).map(|b| b.1);
    if let Some(map) = PERF_MAP.get() {
        let names: HashSet<&str> = elf.symbols.iter().map(|s| s.name.as_str()).collect();
        let entries = elf
            .symbols
            .iter()
            .filter(|s| s.function && s.size > 0)
            .filter_map(|s| {
                Some(MapEntry {
                    start: base(s.section)? + s.offset,
                    size: s.size,
                    name: display_name(&s.name, kind, |n| names.contains(n)),
                })
            })
            .collect();
        let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = map.add(entries) {
            warn_once(&format!("cannot write the perf map: {e}"));
        }
    }
    // Relaxed: see `enable`.
    if DEBUGGER.load(Ordering::Relaxed) {
        jit.register_for_debugger(loaded, elf::with_addresses(object, &elf, &bases));
    }
}

/// Where each code section of `elf` was loaded (section index, address):
/// a known symbol's address less its offset places its section (JITLink
/// keeps a section's contents together). A section no known symbol is in
/// (PGO puts hot and cold functions in sections of their own) is placed
/// by a symbol in it the JIT can look up; one holding only local symbols
/// stays unplaced.
fn section_addresses(
    jit: &Jit,
    elf: &elf::Object,
    known: &[(&str, CodeAddress)],
) -> Vec<(usize, usize)> {
    let by_name: HashMap<&str, &elf::Symbol> =
        elf.symbols.iter().map(|s| (s.name.as_str(), s)).collect();
    let mut bases: Vec<(usize, usize)> = Vec::new();
    let place = |bases: &mut Vec<(usize, usize)>, symbol: &elf::Symbol, address: usize| {
        if elf.sections[symbol.section].executable && !bases.iter().any(|b| b.0 == symbol.section) {
            bases.push((symbol.section, address.wrapping_sub(symbol.offset)));
        }
    };
    for &(name, address) in known {
        if let Some(symbol) = by_name.get(name) {
            place(&mut bases, symbol, address.get());
        }
    }
    for (index, section) in elf.sections.iter().enumerate() {
        if !section.executable || section.size == 0 || bases.iter().any(|b| b.0 == index) {
            continue;
        }
        let exported = elf
            .symbols
            .iter()
            .find(|s| s.section == index && s.exported);
        if let Some(symbol) = exported {
            if let Ok(address) = jit.lookup(&symbol.name) {
                place(&mut bases, symbol, address.get());
            }
        }
    }
    bases
}

/// The run's trace and the files it goes to at the end (`--trace`,
/// `--timeline`), created before the job runs so that a path that cannot
/// be written is an error then, not a lost trace later.
pub struct TraceFiles {
    pub trace: Arc<trace::Trace>,
    json: Option<(PathBuf, File)>,
    svg: Option<(PathBuf, File)>,
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
        let open = |path: Option<&Path>, what: &str| {
            path.map(|path| {
                File::create(path)
                    .map(|file| (path.to_path_buf(), file))
                    .map_err(|e| {
                        Error::Environment(format!(
                            "cannot write the {what} {}: {e}",
                            path.display()
                        ))
                    })
            })
            .transpose()
        };
        let files = TraceFiles {
            trace: Arc::new(trace::Trace::new(start, &job.display().to_string())),
            json: open(json, "trace")?,
            svg: open(svg, "timeline")?,
        };
        trace::follow_job_threads(files.trace.clone());
        Ok(Some(files))
    }

    /// Writes what was recorded; a failure is a warning (the job's status
    /// stands).
    pub fn write(&self) {
        let data = self.trace.finish();
        // A job may have lowered RLIMIT_FSIZE: a write past it fails
        // instead of ending the process.
        use crate::code::without_file_size_signal as guarded;
        if let Some((path, file)) = &self.json {
            let mut out = std::io::BufWriter::new(file);
            if let Err(e) = guarded(|| chrome_trace::write(&data, &mut out)) {
                eprintln!(
                    "tierjit: warning: cannot write the trace {}: {e}",
                    path.display()
                );
            }
        }
        if let Some((path, mut file)) = self.svg.as_ref().map(|(p, f)| (p, f)) {
            if let Err(e) = guarded(|| file.write_all(timeline::render(&data).as_bytes())) {
                eprintln!(
                    "tierjit: warning: cannot write the timeline {}: {e}",
                    path.display()
                );
            }
        }
    }
}

/// A warning written once per process.
fn warn_once(message: &str) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    // Relaxed: only whether one warning went out.
    if !WARNED.swap(true, Ordering::Relaxed) {
        eprintln!("tierjit: warning: {message}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perf_names_say_function_and_tier() {
        let has = |n: &str| n == "kernel.tj0";
        assert_eq!(
            display_name("kernel.tj0", CodeKind::Baseline, has),
            "kernel [O0]"
        );
        assert_eq!(
            display_name("kernel", CodeKind::Baseline, has),
            "kernel [stub]"
        );
        assert_eq!(
            display_name("__tierjit.x", CodeKind::Baseline, has),
            "__tierjit.x [O0]"
        );
        let version = CodeKind::Version;
        assert_eq!(display_name("kernel.tj3", version, has), "kernel [O3]");
        assert_eq!(
            display_name("main.tj.osr2.v1", version, has),
            "main@loop2 [O3 osr]"
        );
        assert_eq!(display_name("my.tjx", version, has), "my.tjx [O3]");
        assert_eq!(
            display_name("f.tj2.guard", version, has),
            "f [O3 specialized]"
        );
        assert_eq!(display_name("f", CodeKind::OptimizedModule, has), "f [O3]");
    }
}
