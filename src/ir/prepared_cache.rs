//! Prepared modules kept across runs (kind `m` of `crate::cache`): the
//! module `tierjit run` tiers, after the steps that depend only on the
//! job's IR, the target and the host process (constructor lists gathered,
//! code attributes set, libc overrides bound, made shareable, CFG
//! canonicalized). A warm run parses it instead of redoing them, which
//! took about 2 ms of a trivial job's start (a text round trip to clear
//! `dso_local`, loop-simplify).
//!
//! The key covers what decides the result:
//! - the job's IR as read (for C, the front end's bitcode, itself keyed
//!   on the source, flags and headers by `ir::frontend_cache`);
//! - the target: triple, CPU and features as resolved (`native` names the
//!   host's), which every function's attributes carry;
//! - the shared libraries the process has loaded, by path, size and
//!   modification time: making a module shareable renames a local
//!   function whose name the host defines, so a library upgrade that adds
//!   a name must miss;
//! - this build of tierjit (in `KeyHash::new`), whose code the steps are.

use crate::cache::key::KeyHash;
use crate::codegen::TargetSpec;

/// Part of every key; bumped when what the steps do changes in a way the
/// build hash would not show (it shows every source change).
const FORMAT: &str = "tierjit-prepared-1";

/// The key of the module prepared from `job_ir` for `target`.
pub fn key(job_ir: &[u8], target: &TargetSpec) -> String {
    let mut key = KeyHash::new(FORMAT);
    key.field(job_ir)
        .field(target.triple.as_bytes())
        .field(target.cpu.as_bytes())
        .field(target.features.as_bytes())
        .field(loaded_libraries().as_bytes());
    key.finish()
}

/// The shared libraries mapped into this process, one `path size mtime`
/// line each, sorted; empty if `/proc/self/maps` cannot be read (then
/// every key carries the same blank, as on a system without procfs).
fn loaded_libraries() -> String {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return String::new();
    };
    let mut paths: Vec<&str> = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .filter(|path| path.starts_with('/') && path.contains(".so"))
        .collect();
    paths.sort_unstable();
    paths.dedup();
    paths
        .iter()
        .map(|path| {
            let (size, modified) = std::fs::metadata(path)
                .map(|m| {
                    let modified = m
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_nanos());
                    (m.len(), modified)
                })
                .unwrap_or_default();
            format!("{path} {size} {modified}\n")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(cpu: &str) -> TargetSpec {
        TargetSpec {
            triple: "x86_64-pc-linux-gnu".into(),
            cpu: cpu.into(),
            features: "+avx2".into(),
        }
    }

    #[test]
    fn the_key_covers_the_ir_and_the_resolved_target() {
        let k = key(b"module", &target("skylake"));
        assert_eq!(k, key(b"module", &target("skylake")));
        assert_ne!(k, key(b"module2", &target("skylake")));
        assert_ne!(k, key(b"module", &target("znver3")));
        let mut other = target("skylake");
        other.features = "-avx2".into();
        assert_ne!(k, key(b"module", &other));
    }

    #[test]
    fn the_loaded_libraries_include_the_c_library() {
        let libraries = loaded_libraries();
        assert!(
            libraries.lines().any(|l| l.contains("libc.so")),
            "{libraries}"
        );
        assert!(libraries.lines().all(|l| l.split(' ').count() == 3));
    }
}
