//! Exports `__cxa_atexit` from the tierjit binary, so that libLLVM's calls
//! reach tierjit's definition (src/code/process.rs) rather than the C
//! library's: registrations libLLVM makes after the job started are
//! dropped, since the process leaves through `_exit` while compiler threads
//! may still be inside LLVM.
fn main() {
    println!("cargo:rustc-link-arg-bins=-Wl,--export-dynamic-symbol=__cxa_atexit");
}
