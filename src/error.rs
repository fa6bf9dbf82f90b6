//! The crate's error type. Each variant is a way a job can fail to start;
//! failures after start (a tier-up that does not compile) are not errors but
//! events, because the job keeps running on the lower tier.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{path}: unsupported input type (expected .ll, .bc, .c, C++ .cpp/.cc/.cxx/.C/.c++, or Fortran .f90/.f95/.f03/.f08/.f/.for/.F/.F90; object files and archives are not inputs: link a shared library with -l)")]
    UnsupportedJobType { path: PathBuf },

    #[error("{path}: cannot parse: {message}")]
    Parse { path: PathBuf, message: String },

    #[error("{path}: {compiler} could not compile it:\n{diagnostics}")]
    Clang {
        path: PathBuf,
        compiler: String,
        diagnostics: String,
    },

    #[error("cannot run {compiler} to compile {path}: {message} (install {package})")]
    CompilerMissing {
        path: PathBuf,
        compiler: String,
        message: String,
        package: &'static str,
    },

    #[error("{path}: invalid IR (the LLVM verifier rejected it):\n{message}")]
    Verify { path: PathBuf, message: String },

    #[error("{path}: the job defines no `main` function")]
    NoMain { path: PathBuf },

    #[error("{path}: `main` must be `int main(void)` or `int main(int, char **[, char **])`, found `{signature}`")]
    BadMain { path: PathBuf, signature: String },

    #[error("{path}: unresolved external symbol{}: {}", if names.len() > 1 { "s" } else { "" }, names.join(", "))]
    Unresolved { path: PathBuf, names: Vec<String> },

    #[error("{path}: defines no function `{name}`")]
    NoSuchFunction { path: PathBuf, name: String },

    #[error("{path}: not supported: {what}")]
    Unsupported { path: PathBuf, what: String },

    #[error("{path}:{line}:{column}: {message}")]
    Config {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },

    #[error("--set {setting}: {message}")]
    ConfigOverride { setting: String, message: String },

    #[error("{0}")]
    ConfigValue(String),

    #[error("code generation failed: {0}")]
    Codegen(String),

    /// A tierjit environment variable (fault injection for tests) whose
    /// value cannot be used.
    #[error("environment: {0}")]
    Environment(String),

    #[error("JIT: {0}")]
    Jit(String),

    #[error("link failed: {0}")]
    Link(String),

    #[error("{0}")]
    Library(String),
}

/// The first `lines` lines of a long message (LLVM's verifier prints every
/// offending instruction with its metadata), with a note of what was left.
pub fn excerpt(text: &str, lines: usize) -> String {
    let text = text.trim();
    let total = text.lines().count();
    if total <= lines {
        return text.to_string();
    }
    let kept: Vec<&str> = text.lines().take(lines).collect();
    format!("{}\n({} more lines)", kept.join("\n"), total - lines)
}
