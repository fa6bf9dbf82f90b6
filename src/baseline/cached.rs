//! Baseline objects kept across runs (kind `b` of `crate::cache`): a run
//! of code that ran before loads its baseline instead of instrumenting
//! and compiling it again.
//!
//! A baseline object holds no address of the run that built it: the host
//! memory its code uses is named by symbols each run defines
//! (`baseline::relocate`), and a build whose code still holds a host
//! address is not kept (`relocate::absolute_addresses`). Everything else
//! that decides its code is in the key:
//! - the module as tierjit prepared it (canonical bitcode), which names
//!   the CPU and features on every function;
//! - how it was instrumented: batch-mode threshold, OSR entries, the
//!   profile probes, how counters are split per CPU (copies, stride, where
//!   the CPU number is read), the hook argument naming the module, and the
//!   symbols the code refers to;
//! - the LLVM options tierjit applied, the LLVM version, and this build of
//!   tierjit (its instrumentation is its code).

use crate::cache::key::KeyHash;
use crate::config::Config;

use super::relocate::HostRegions;
#[cfg(test)]
use super::relocate::Placement;

/// Part of every key; bumped when what a baseline object holds changes.
const FORMAT: &str = "tierjit-baseline-1";

/// The key of the baseline object of the module whose canonical bitcode is
/// `bitcode`, instrumented as `instrumentation` describes, its host memory
/// named as in `regions`.
pub fn key(
    bitcode: &[u8],
    instrumentation: &str,
    regions: &HostRegions,
    config: &Config,
) -> String {
    let mut key = KeyHash::new(FORMAT);
    key.field(bitcode)
        .field(instrumentation.as_bytes())
        .field(regions.describe().as_bytes())
        .code_generation(config);
    key.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_covers_code_instrumentation_and_symbols() {
        let config = Config::default();
        let regions = HostRegions::new(&[("a", 4096, 8, Placement::Host)]);
        let k = key(b"module", "osr", &regions, &config);
        assert_eq!(k, key(b"module", "osr", &regions, &config));
        assert_ne!(k, key(b"module2", "osr", &regions, &config));
        assert_ne!(k, key(b"module", "no osr", &regions, &config));
        let other = HostRegions::new(&[("b", 4096, 8, Placement::Host)]);
        assert_ne!(k, key(b"module", "osr", &other, &config));
        // Where the memory is, is not: the symbols carry it.
        let moved = HostRegions::new(&[("a", 8192, 8, Placement::Host)]);
        assert_eq!(k, key(b"module", "osr", &moved, &config));
        let mut knob = Config::default();
        knob.target.features = "-avx2".into();
        assert_ne!(k, key(b"module", "osr", &regions, &knob));
    }
}
