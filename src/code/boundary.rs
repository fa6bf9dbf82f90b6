//! Where job code meets tierjit's own frames, for C++ exceptions.
//!
//! A native C++ program's outermost frames (`_start`, `__libc_start_main`)
//! end the unwinder's search: an exception nothing catches, thrown from
//! `main`, a static constructor or an exit handler, finds no handler, and
//! `__cxa_throw` calls `std::terminate` (the job's terminate handler, or
//! libstdc++'s "terminate called after throwing..." and `abort`). In
//! tierjit the frames below the job's are Rust functions, whose
//! `extern "C"` boundaries catch a foreign exception to abort with Rust's
//! own message, so the job's terminate handler never ran (and, where the
//! search passed them, destructors ran that natively do not).
//!
//! So every call from tierjit into job code that may throw (`main`, the
//! constructors, and the C library's `exit`, which runs the job's exit
//! handlers) goes through `__tierjit_call3`, a frame with no unwind
//! information (no CFI, hence no `.eh_frame` entry): the unwinder stops
//! there with "end of stack", exactly as at a native program's bottom
//! frame. It keeps a frame pointer, so debuggers and profilers still walk
//! past it.

use std::ffi::c_int;

#[cfg(target_arch = "x86_64")]
std::arch::global_asm!(
    ".text",
    ".globl __tierjit_call3",
    ".type __tierjit_call3,@function",
    ".p2align 4",
    "__tierjit_call3:",
    "    push rbp",
    "    mov rbp, rsp",
    "    mov rax, rdi",
    "    mov rdi, rsi",
    "    mov rsi, rdx",
    "    mov rdx, rcx",
    "    call rax",
    "    pop rbp",
    "    ret",
    ".size __tierjit_call3, .-__tierjit_call3",
);

#[cfg(target_arch = "aarch64")]
std::arch::global_asm!(
    ".text",
    ".globl __tierjit_call3",
    ".type __tierjit_call3,%function",
    ".p2align 2",
    "__tierjit_call3:",
    "    stp x29, x30, [sp, #-16]!",
    "    mov x29, sp",
    "    mov x9, x0",
    "    mov x0, x1",
    "    mov x1, x2",
    "    mov x2, x3",
    "    blr x9",
    "    ldp x29, x30, [sp], #16",
    "    ret",
    ".size __tierjit_call3, .-__tierjit_call3",
);

extern "C" {
    /// Calls `f(a, b, c)` (a C function of up to three integer or pointer
    /// arguments, returning an integer or nothing) and returns its result
    /// register. See the module doc.
    fn __tierjit_call3(f: usize, a: usize, b: usize, c: usize) -> usize;
}

/// Calls the C function at `f` with up to three word-sized arguments
/// (unused ones are ignored by the callee), returning its `int` result
/// (meaningless for a `void` function).
///
/// # Safety
/// `f` must be a function of the C ABI taking at most three integer or
/// pointer arguments, which `a`, `b`, `c` hold in order, and returning
/// `int` or nothing; whatever it requires of them must hold.
pub unsafe fn call_at_job_boundary(f: usize, a: usize, b: usize, c: usize) -> c_int {
    // SAFETY: the caller's promise; the shim passes the arguments in the
    // C ABI's first three argument registers and returns the callee's
    // result register, whose low 32 bits are an `int` result.
    unsafe { __tierjit_call3(f, a, b, c) as c_int }
}
