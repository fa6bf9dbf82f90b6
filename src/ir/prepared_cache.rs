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
//! - the shared libraries the process has loaded, as mapped (device,
//!   inode, path) and by the size and modification time of that file:
//!   making a module shareable renames a local function whose name the
//!   host defines, so a library upgrade that adds a name must miss. A
//!   process whose mapped library is no longer the file at its path (a
//!   daemon started before an upgrade) has no key: it neither reads nor
//!   stores prepared modules, since its symbols are the old library's;
//! - the LLVM options tierjit applied (`TIERJIT_LLVM_ARGS`), which the
//!   canonicalizing passes read;
//! - this build of tierjit (in `KeyHash::new`), whose code the steps are.

use crate::cache::key::KeyHash;
use crate::codegen::TargetSpec;

/// Part of every key; bumped when what the steps do changes in a way the
/// build hash would not show (it shows every source change).
const FORMAT: &str = "tierjit-prepared-1";

/// The key of the module prepared from `job_ir` for `target`; `None` if
/// this process's libraries cannot be named (see the module doc).
pub fn key(job_ir: &[u8], target: &TargetSpec) -> Option<String> {
    let mut key = KeyHash::new(FORMAT);
    key.field(job_ir)
        .field(target.triple.as_bytes())
        .field(target.cpu.as_bytes())
        .field(target.features.as_bytes())
        .field(loaded_libraries()?.as_bytes())
        .field(crate::code::applied_llvm_options().as_bytes());
    Some(key.finish())
}

/// The shared libraries mapped into this process, one `path dev inode
/// size mtime` line each, sorted; `None` if one of them is not the file
/// now at its path. Empty if `/proc/self/maps` cannot be read (then every
/// key carries the same blank, as on a system without procfs).
fn loaded_libraries() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return Some(String::new());
    };
    // address perms offset dev inode path
    let mut mapped: Vec<(&str, &str, &str)> = maps
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [_, _, _, dev, inode, path] if path.starts_with('/') && path.contains(".so") => {
                    Some((*path, *dev, *inode))
                }
                // "... (deleted)": replaced since it was mapped.
                [_, _, _, _, _, path, ..] if path.contains(".so") => Some((*path, "", "")),
                _ => None,
            }
        })
        .collect();
    mapped.sort_unstable();
    mapped.dedup();
    let mut out = String::new();
    for (path, dev, inode) in mapped {
        let meta = std::fs::metadata(path).ok()?;
        if inode.parse::<u64>().ok()? != meta.ino() {
            return None;
        }
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        out += &format!("{path} {dev} {inode} {} {modified}\n", meta.len());
    }
    Some(out)
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
        let key = |ir: &[u8], target: &TargetSpec| super::key(ir, target).expect("named libraries");
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
        let libraries = loaded_libraries().expect("libraries as mapped");
        assert!(
            libraries.lines().any(|l| l.contains("libc.so")),
            "{libraries}"
        );
        assert!(libraries.lines().all(|l| l.split(' ').count() == 5));
    }
}
