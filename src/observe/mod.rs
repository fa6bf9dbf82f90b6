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
mod placement;
pub mod timeline;
pub mod trace;
mod trace_files;

pub use trace_files::TraceFiles;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

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
/// (or `f@loopK`), the tier and the version, e.g. `kernel [O3 v2]`,
/// `main@loop2 [O3 osr v1]`. `known`: the symbols the loader looked up
/// (in the baseline, each function's entry and stub).
pub fn display_name(symbol: &str, kind: CodeKind, known: &HashSet<&str>) -> String {
    match kind {
        CodeKind::Baseline => {
            if known.contains(symbol) && known.contains(format!("{symbol}.tj0").as_str()) {
                return format!("{symbol} [stub]");
            }
            match symbol.strip_suffix(".tj0") {
                Some(function) if known.contains(function) => format!("{function} [O0]"),
                _ => format!("{symbol} [O0]"),
            }
        }
        CodeKind::OptimizedModule => format!("{symbol} [O3]"),
        CodeKind::Version => {
            if let Some((function, rest)) = symbol.rsplit_once(".tj.osr") {
                if let Some((k, v)) = rest.split_once(".v") {
                    return format!("{function}@loop{k} [O3 osr v{v}]");
                }
            }
            let (symbol, tier) = match symbol.strip_suffix(".guard") {
                Some(version) => (version, "O3 specialized"),
                None => (symbol, "O3"),
            };
            match symbol.rsplit_once(".tj") {
                Some((f, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                    format!("{f} [{tier} v{n}]")
                }
                _ => format!("{symbol} [{tier}]"),
            }
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
    let bases = placement::section_addresses(jit, &elf, known);
    let base = |section: usize| bases.iter().find(|b| b.0 == section).map(|b| b.1);
    if let Some(map) = PERF_MAP.get() {
        let known: HashSet<&str> = known.iter().map(|(name, _)| *name).collect();
        let entries = elf
            .symbols
            .iter()
            .filter(|s| s.function && s.size > 0 && elf.sections[s.section].executable)
            .filter_map(|s| {
                Some(MapEntry {
                    start: base(s.section)?.checked_add(s.offset)?,
                    size: s.size,
                    name: display_name(&s.name, kind, &known),
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
        let mut bases = bases.clone();
        let frames = elf.section(".eh_frame");
        let frames_at = frames.and_then(|i| {
            let at = placement::eh_frame_address(object, &elf, i, &bases)?;
            bases.push((i, at));
            Some(at)
        });
        let mut image = elf::with_addresses(object, &elf, &bases);
        if let (Some(index), None) = (frames, frames_at) {
            image = elf::with_name_hidden(image, &elf, index);
        }
        jit.register_for_debugger(loaded, image);
    }
}

/// A warning written once per process.
fn warn_once(message: &str) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    // Relaxed: only whether one warning went out.
    if !WARNED.swap(true, Ordering::Relaxed) {
        say!("tierjit: warning: {message}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perf_names_say_function_tier_and_version() {
        let known: HashSet<&str> = ["kernel", "kernel.tj0", "x.tj0", "x.tj0.tj0"].into();
        let baseline = |s| display_name(s, CodeKind::Baseline, &known);
        assert_eq!(baseline("kernel.tj0"), "kernel [O0]");
        assert_eq!(baseline("kernel"), "kernel [stub]");
        assert_eq!(baseline("__tierjit.x"), "__tierjit.x [O0]");
        // A job function whose own name ends in `.tj0`.
        assert_eq!(baseline("x.tj0"), "x.tj0 [stub]");
        assert_eq!(baseline("x.tj0.tj0"), "x.tj0 [O0]");
        let version = |s| display_name(s, CodeKind::Version, &known);
        assert_eq!(version("kernel.tj3"), "kernel [O3 v3]");
        assert_eq!(version("main.tj.osr2.v1"), "main@loop2 [O3 osr v1]");
        assert_eq!(version("my.tjx"), "my.tjx [O3]");
        assert_eq!(version("f.tj2.guard"), "f [O3 specialized v2]");
        assert_eq!(
            display_name("f", CodeKind::OptimizedModule, &known),
            "f [O3]"
        );
    }
}
