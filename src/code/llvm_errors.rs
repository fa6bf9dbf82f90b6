//! LLVM's ways of failing, turned into errors tierjit can report.
//!
//! LLVM has three that would otherwise end the process or vanish:
//! - `report_fatal_error` ("LLVM ERROR: Cannot select ...") calls a
//!   handler and then `exit(1)` if the handler returns. Ours never returns:
//!   the hook given to `install_fatal_error_handler` decides (a failed
//!   background compile parks its thread; anything else ends tierjit with
//!   status 125).
//! - An error diagnostic of an `LLVMContext` without a handler is printed
//!   and followed by `exit(1)` (the MC layer's "Undefined temporary
//!   symbol"). `watch_context` gives a context a handler that records error
//!   diagnostics on the thread that raised them; `take_errors` collects
//!   them after code generation.
//! - ORC reports what went wrong while linking to the session's error
//!   reporter, which prints it, and returns a vaguer error to the caller.
//!   The reporter installed by `Jit::new` keeps the messages, per thread,
//!   for `take_session_errors`.

use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;

use llvm_sys::prelude::LLVMDiagnosticInfoRef;

type FatalHook = Box<dyn Fn(&str) + Send + Sync>;

static FATAL_HOOK: OnceLock<FatalHook> = OnceLock::new();

extern "C" fn on_fatal_error(reason: *const c_char) {
    // A fatal error while stderr is captured: the message is for the user.
    let saved = CAPTURE_SAVED_STDERR.swap(-1, Ordering::Relaxed);
    if saved >= 0 {
        // SAFETY: `saved` is the duplicate of the real stderr that
        // `llvm_warnings_during` keeps open while capturing.
        unsafe { libc::dup2(saved, 2) };
    }
    let reason = if reason.is_null() {
        String::from("unknown error")
    } else {
        // SAFETY: LLVM passes a NUL-terminated message valid for the call.
        unsafe { CStr::from_ptr(reason) }
            .to_string_lossy()
            .into_owned()
    };
    if let Some(hook) = FATAL_HOOK.get() {
        hook(&reason);
    }
    // The hook must not return; if it does, end as a tool failure rather
    // than with LLVM's exit(1), which a caller could take for the job's.
    say!("tierjit: error: LLVM: {reason}");
    // SAFETY: ends the process immediately; no Rust state needs unwinding.
    unsafe { libc::_exit(125) }
}

/// Routes LLVM's fatal errors to `hook`, which must not return (it may
/// block its thread forever, or end the process). Later calls keep the
/// first hook.
pub fn install_fatal_error_handler(hook: FatalHook) {
    if FATAL_HOOK.set(hook).is_ok() {
        // SAFETY: installs a plain function; LLVM calls it without holding
        // its handler lock (see llvm/lib/Support/ErrorHandling.cpp).
        unsafe { llvm_sys::error_handling::LLVMInstallFatalErrorHandler(Some(on_fatal_error)) }
    }
}

/// Ends the process now with `status`, running nothing else (for fatal
/// errors before the job started).
pub fn exit_now(status: i32) -> ! {
    // SAFETY: _exit has no preconditions.
    unsafe { libc::_exit(status) }
}

thread_local! {
    /// Error diagnostics raised on this thread since the last `take_errors`.
    static DIAGNOSTICS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

extern "C" fn on_diagnostic(info: LLVMDiagnosticInfoRef, _: *mut c_void) {
    use llvm_sys::core::{LLVMDisposeMessage, LLVMGetDiagInfoDescription, LLVMGetDiagInfoSeverity};
    // SAFETY: `info` is valid for the duration of the call; the description
    // is a message we own and dispose of after copying.
    unsafe {
        if LLVMGetDiagInfoSeverity(info) != llvm_sys::LLVMDiagnosticSeverity::LLVMDSError {
            return;
        }
        let text = LLVMGetDiagInfoDescription(info);
        let message = CStr::from_ptr(text).to_string_lossy().into_owned();
        LLVMDisposeMessage(text);
        DIAGNOSTICS.with(|d| d.borrow_mut().push(message));
    }
}

/// Makes error diagnostics of `context` errors of the thread that raised
/// them (see `take_errors`) instead of LLVM's print-and-exit.
pub fn watch_context(context: &inkwell::context::Context) {
    // SAFETY: the handler is a plain function ignoring its context pointer;
    // it stays valid for the life of the process.
    unsafe {
        llvm_sys::core::LLVMContextSetDiagnosticHandler(
            context.raw(),
            Some(on_diagnostic),
            std::ptr::null_mut(),
        )
    }
}

/// Error diagnostics this thread's LLVM work raised since the last call.
pub fn take_errors() -> Vec<String> {
    DIAGNOSTICS.with(|d| std::mem::take(&mut *d.borrow_mut()))
}

thread_local! {
    /// ORC session errors raised on this thread (ORC links on the thread
    /// that looks a symbol up) since the last `take_session_errors`.
    static SESSION_ERRORS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Receives ORC's session errors (see `Jit::new`).
pub extern "C" fn on_session_error(_: *mut c_void, error: llvm_sys::error::LLVMErrorRef) {
    if let Some(message) = super::orc::take_error(error) {
        SESSION_ERRORS.with(|errors| {
            let mut errors = errors.borrow_mut();
            // Bounded: nobody may ever collect them.
            if errors.len() < 64 {
                errors.push(message);
            }
        });
    }
}

/// ORC session errors this thread raised since the last call, oldest first.
pub fn take_session_errors() -> Vec<String> {
    SESSION_ERRORS.with(|errors| std::mem::take(&mut *errors.borrow_mut()))
}

/// The real stderr while `llvm_warnings_during` captures fd 2 (else -1).
static CAPTURE_SAVED_STDERR: AtomicI32 = AtomicI32::new(-1);

/// Runs `f` and returns, with its result, what LLVM printed to stderr
/// meanwhile. LLVM reports unknown CPU and feature names only as a warning
/// on stderr ("'x' is not a recognized processor for this target
/// (ignoring processor)") and goes on with generic code, so this is how
/// tierjit finds out. File descriptor 2 is pointed at a memory file for the
/// duration: call it before other threads may write to stderr (an
/// embedding program's threads lose what they write meanwhile). Captures
/// are serialized: two overlapping ones would restore each other's file
/// and leave stderr pointing at a memory file for good.
pub fn llvm_warnings_during<T>(f: impl FnOnce() -> T) -> (T, String) {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _capturing = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: plain file-descriptor calls on descriptors this function owns
    // (the memfd and the saved stderr); fd 2 is restored before returning.
    // A failure at any step runs `f` without capturing.
    unsafe {
        let memfd = libc::memfd_create(c"tierjit-llvm-warnings".as_ptr(), libc::MFD_CLOEXEC);
        if memfd < 0 {
            return (f(), String::new());
        }
        let saved = libc::dup(2);
        if saved < 0 || libc::dup2(memfd, 2) < 0 {
            if saved >= 0 {
                libc::close(saved);
            }
            libc::close(memfd);
            return (f(), String::new());
        }
        // Relaxed: read by a fatal-error handler on this same thread.
        CAPTURE_SAVED_STDERR.store(saved, Ordering::Relaxed);
        let result = f();
        CAPTURE_SAVED_STDERR.store(-1, Ordering::Relaxed);
        libc::dup2(saved, 2);
        libc::close(saved);
        let mut text = Vec::new();
        let mut buffer = [0u8; 4096];
        libc::lseek(memfd, 0, libc::SEEK_SET);
        loop {
            let n = libc::read(memfd, buffer.as_mut_ptr().cast(), buffer.len());
            if n <= 0 {
                break;
            }
            text.extend_from_slice(&buffer[..n as usize]);
        }
        libc::close(memfd);
        (result, String::from_utf8_lossy(&text).into_owned())
    }
}
