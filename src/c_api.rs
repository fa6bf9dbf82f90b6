//! The C API (`include/tierjit.h`, which documents every function): thin
//! wrappers over `crate::engine` that turn C strings into Rust ones,
//! errors into strings the caller frees, and panics into errors, so that
//! nothing unwinds into C. With `code`, the only module allowed `unsafe`:
//! every function here takes raw pointers from C.

use std::ffi::{c_char, c_int, c_void, CStr, CString, OsString};
use std::os::unix::ffi::OsStringExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use crate::config::Config;
use crate::engine::{Engine, JitModule};

/// `tierjit_engine` in C.
pub struct CEngine(Engine);
/// `tierjit_module` in C.
pub struct CModule(JitModule);

/// A string C owns until `tierjit_string_free`. Interior NULs (none in
/// tierjit's messages) are replaced so the text is never lost.
fn c_string(text: String) -> *mut c_char {
    CString::new(text.replace('\0', "\\0"))
        .expect("NULs were replaced")
        .into_raw()
}

/// Stores `message` in `*error` when the caller gave somewhere to store it.
///
/// SAFETY: `error` is null or points to writable storage for a pointer.
unsafe fn set_error(error: *mut *mut c_char, message: String) {
    if !error.is_null() {
        // SAFETY: non-null, and writable by the contract above.
        unsafe { *error = c_string(message) };
    }
}

/// Runs `body`, turning an `Err` or a panic into `failed` plus a message
/// in `*error`.
///
/// SAFETY: `error` as for `set_error`.
unsafe fn guarded<T>(
    error: *mut *mut c_char,
    failed: T,
    body: impl FnOnce() -> Result<T, String>,
) -> T {
    let outcome = catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|_| {
        Err("internal error: tierjit panicked (a bug; please report it)".into())
    });
    match outcome {
        Ok(value) => value,
        Err(message) => {
            // SAFETY: forwarded from the caller's contract.
            unsafe { set_error(error, message) };
            failed
        }
    }
}

/// A `&str` from a C string argument, or an error naming the argument.
///
/// SAFETY: `text` is null or a NUL-terminated string valid for `'a`.
unsafe fn text<'a>(text: *const c_char, what: &str) -> Result<&'a str, String> {
    if text.is_null() {
        return Err(format!("{what} is NULL"));
    }
    // SAFETY: non-null and NUL-terminated by the contract above.
    unsafe { CStr::from_ptr(text) }
        .to_str()
        .map_err(|_| format!("{what} is not UTF-8"))
}

/// SAFETY: see include/tierjit.h: `config_ron` is NULL or a C string;
/// `error` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tierjit_engine_new(
    config_ron: *const c_char,
    error: *mut *mut c_char,
) -> *mut CEngine {
    // SAFETY: the caller's contract covers `error` and `config_ron`.
    unsafe {
        guarded(error, std::ptr::null_mut(), || {
            let mut config = Config::default();
            if !config_ron.is_null() {
                let ron = text(config_ron, "config_ron")?;
                config
                    .layer_ron(ron, Path::new("<config_ron>"))
                    .map_err(|e| e.to_string())?;
            }
            let engine = Engine::new(config).map_err(|e| e.to_string())?;
            Ok(Box::into_raw(Box::new(CEngine(engine))))
        })
    }
}

/// SAFETY: `engine` came from `tierjit_engine_new` and is not freed;
/// `name` is a C string; `error` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tierjit_engine_define_symbol(
    engine: *mut CEngine,
    name: *const c_char,
    address: *mut c_void,
    error: *mut *mut c_char,
) -> c_int {
    // SAFETY: the caller's contract covers every pointer.
    unsafe {
        guarded(error, -1, || {
            let engine = engine.as_mut().ok_or("engine is NULL")?;
            let name = text(name, "name")?;
            engine
                .0
                .define_symbol(name, address as *const ())
                .map_err(|e| e.to_string())?;
            Ok(0)
        })
    }
}

/// SAFETY: `engine` came from `tierjit_engine_new` and is not freed;
/// `path` is a C string; `error` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tierjit_module_load(
    engine: *mut CEngine,
    path: *const c_char,
    error: *mut *mut c_char,
) -> *mut CModule {
    // SAFETY: the caller's contract covers every pointer.
    unsafe {
        guarded(error, std::ptr::null_mut(), || {
            let engine = engine.as_ref().ok_or("engine is NULL")?;
            if path.is_null() {
                return Err("path is NULL".into());
            }
            // Paths are bytes: no UTF-8 needed.
            let path = OsString::from_vec(CStr::from_ptr(path).to_bytes().to_vec());
            let module = engine.0.load(path).map_err(|e| e.to_string())?;
            Ok(Box::into_raw(Box::new(CModule(module))))
        })
    }
}

/// SAFETY: `engine` came from `tierjit_engine_new` and is not freed;
/// `paths` holds `count` C strings (NULL only when `count` is 0); `error`
/// is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tierjit_module_load_many(
    engine: *mut CEngine,
    paths: *const *const c_char,
    count: usize,
    error: *mut *mut c_char,
) -> *mut CModule {
    // SAFETY: the caller's contract covers every pointer.
    unsafe {
        guarded(error, std::ptr::null_mut(), || {
            let engine = engine.as_ref().ok_or("engine is NULL")?;
            if count == 0 {
                return Err("no paths (count is 0)".into());
            }
            if paths.is_null() {
                return Err("paths is NULL".into());
            }
            let mut inputs = Vec::with_capacity(count);
            for i in 0..count {
                let path = *paths.add(i);
                if path.is_null() {
                    return Err(format!("paths[{i}] is NULL"));
                }
                // Paths are bytes: no UTF-8 needed.
                inputs.push(OsString::from_vec(CStr::from_ptr(path).to_bytes().to_vec()));
            }
            let module = engine.0.load_all(&inputs).map_err(|e| e.to_string())?;
            Ok(Box::into_raw(Box::new(CModule(module))))
        })
    }
}

/// SAFETY: `module` came from `tierjit_module_load` and is not freed;
/// `name` is a C string; `error` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tierjit_module_function(
    module: *mut CModule,
    name: *const c_char,
    error: *mut *mut c_char,
) -> *mut c_void {
    // SAFETY: the caller's contract covers every pointer.
    unsafe {
        guarded(error, std::ptr::null_mut(), || {
            let module = module.as_ref().ok_or("module is NULL")?;
            let name = text(name, "name")?;
            let address = module.0.function(name).map_err(|e| e.to_string())?;
            Ok(address as *mut c_void)
        })
    }
}

/// SAFETY: `module` came from `tierjit_module_load` and is not freed;
/// `argv` holds `argc` C strings (NULL only when `argc` is 0).
#[no_mangle]
pub unsafe extern "C" fn tierjit_module_run_main(
    module: *mut CModule,
    argc: c_int,
    argv: *mut *mut c_char,
) -> c_int {
    // run_main has no error out-parameter (the names are fixed): the
    // header documents -1 for a NULL module, bad arguments or no `main`.
    let failed = -1;
    // SAFETY: the caller's contract covers every pointer.
    unsafe {
        guarded(std::ptr::null_mut(), failed, || {
            let module = module.as_ref().ok_or("module is NULL")?;
            let count = usize::try_from(argc).map_err(|_| "argc is negative")?;
            if count > 0 && argv.is_null() {
                return Err("argv is NULL".into());
            }
            let args: Vec<OsString> = (0..count)
                .map(|i| {
                    let arg = *argv.add(i);
                    if arg.is_null() {
                        OsString::new()
                    } else {
                        OsString::from_vec(CStr::from_ptr(arg).to_bytes().to_vec())
                    }
                })
                .collect();
            module.0.run_main(&args).map_err(|e| e.to_string())
        })
    }
}

/// SAFETY: `module` came from `tierjit_module_load` and is not freed.
#[no_mangle]
pub unsafe extern "C" fn tierjit_module_stats_json(module: *mut CModule) -> *mut c_char {
    // SAFETY: the caller's contract covers `module`.
    unsafe {
        guarded(std::ptr::null_mut(), std::ptr::null_mut(), || {
            let module = module.as_ref().ok_or("module is NULL")?;
            let json = serde_json::to_string(&module.0.stats()).map_err(|e| e.to_string())?;
            Ok(c_string(json))
        })
    }
}

/// SAFETY: `module` is NULL or came from `tierjit_module_load` and is not
/// freed yet; no thread is running its code.
#[no_mangle]
pub unsafe extern "C" fn tierjit_module_free(module: *mut CModule) {
    if !module.is_null() {
        // SAFETY: the caller gives back the box `tierjit_module_load` made.
        let module = unsafe { Box::from_raw(module) };
        // A panic must not unwind into C (dropping prints warnings, which
        // can panic); a module that panicked while freed is leaked.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(module)));
    }
}

/// SAFETY: `engine` is NULL or came from `tierjit_engine_new` and is not
/// freed yet.
#[no_mangle]
pub unsafe extern "C" fn tierjit_engine_free(engine: *mut CEngine) {
    if !engine.is_null() {
        // SAFETY: the caller gives back the box `tierjit_engine_new` made.
        let engine = unsafe { Box::from_raw(engine) };
        // As in `tierjit_module_free` (the last owner of the compiler
        // threads joins them, and may warn).
        let _ = catch_unwind(AssertUnwindSafe(|| drop(engine)));
    }
}

/// SAFETY: `s` is NULL or a string tierjit returned, not freed yet.
#[no_mangle]
pub unsafe extern "C" fn tierjit_string_free(s: *mut c_char) {
    if !s.is_null() {
        // SAFETY: every string tierjit returns comes from `c_string`.
        drop(unsafe { CString::from_raw(s) });
    }
}
