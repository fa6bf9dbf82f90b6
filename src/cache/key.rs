//! Cache keys: a SHA-256 over length-prefixed fields (so ("ab", "c") and
//! ("a", "bc") differ), starting with the kind's format and this build of
//! tierjit (a hash of its sources, see build.rs), so a rebuilt tierjit
//! never reads an older build's entries.

use sha2::{Digest, Sha256};

use super::entry::hex;
use crate::config::Config;

pub struct KeyHash(Sha256);

impl KeyHash {
    /// A key of entries in `format`, for this build of tierjit.
    pub fn new(format: &str) -> KeyHash {
        let mut key = KeyHash(Sha256::new());
        key.field(format.as_bytes())
            .field(env!("TIERJIT_BUILD_ID").as_bytes());
        key
    }

    pub fn field(&mut self, bytes: &[u8]) -> &mut KeyHash {
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
        self
    }

    /// What decides machine code besides the IR: `target.*` as given,
    /// the LLVM options tierjit applied (its defaults and
    /// `TIERJIT_LLVM_ARGS`) and the LLVM version.
    pub fn code_generation(&mut self, config: &Config) -> &mut KeyHash {
        let (major, minor, patch) = inkwell::support::get_llvm_version();
        self.field(config.target.cpu.as_bytes())
            .field(config.target.features.as_bytes())
            .field(crate::code::applied_llvm_options().as_bytes())
            .field(format!("{major}.{minor}.{patch}").as_bytes())
    }

    pub fn finish(self) -> String {
        hex(&self.0.finalize())
    }
}
