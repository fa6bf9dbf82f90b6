//! Whether a job can start threads, judged from the functions it declares.

use inkwell::module::Module;

/// Whether `module` declares a function that can start threads running
/// its code: POSIX and C11 threads, C++ `std::thread`, OpenMP's runtime
/// entries (LLVM's `__kmpc_` and GCC's `GOMP_`), and, generously, anything
/// with "thread" in its name; and does not declare `clone` or `clone3`.
///
/// Only the cost of counting depends on the answer (see `code::shards`):
/// a job that starts threads some other way, say through a library that
/// calls back into it from threads of its own, runs correctly with counters
/// its threads share, only slower. A job that calls `clone` itself may give
/// a thread a thread pointer of its own (`CLONE_SETTLS`), where the rseq
/// area glibc keeps is not: per-CPU counters would read outside its TLS.
pub fn may_start_threads(module: &Module<'_>) -> bool {
    let declares = |names: &[&str]| {
        names.iter().any(|n| {
            module
                .get_function(n)
                .is_some_and(|f| f.count_basic_blocks() == 0)
        })
    };
    if declares(&["clone", "clone3"]) {
        return false;
    }
    module.get_functions().any(|f| {
        if f.count_basic_blocks() > 0 {
            return false;
        }
        let name = f.get_name().to_string_lossy();
        name.to_ascii_lowercase().contains("thread")
            || name.starts_with("__kmpc_")
            || name.starts_with("GOMP_")
            || name.starts_with("omp_")
            || name == "thrd_create"
    })
}

/// A function `module` declares that runs its code where reclamation does
/// not look (see `code::quiesce`), if any: `swapcontext` and its family
/// switch a thread to another stack, leaving frames suspended on a stack
/// no thread runs on; `clone` without `CLONE_THREAD` and `vfork` make
/// processes that share the memory but are not threads of this one. A job
/// that declares one is never reclaimed. (Stack switching inside a
/// library, or reached through `dlsym`, is not seen.)
pub fn switches_stacks(module: &Module<'_>) -> Option<&'static str> {
    [
        "swapcontext",
        "setcontext",
        "makecontext",
        "getcontext",
        "clone",
        "clone3",
        "vfork",
    ]
    .into_iter()
    .find(|n| {
        module
            .get_function(n)
            .is_some_and(|f| f.count_basic_blocks() == 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declares(decls: &str) -> bool {
        let context = inkwell::context::Context::create();
        let source = format!("{decls}\ndefine i32 @main() {{\n  ret i32 0\n}}\n");
        let buffer = inkwell::memory_buffer::MemoryBuffer::create_from_memory_range_copy(
            source.as_bytes(),
            "t.ll",
        );
        let module = context.create_module_from_ir(buffer).unwrap();
        may_start_threads(&module)
    }

    #[test]
    fn stack_switchers_are_recognised() {
        let context = inkwell::context::Context::create();
        let parse = |decls: &str| {
            let source = format!("{decls}\ndefine i32 @main() {{\n  ret i32 0\n}}\n");
            let buffer = inkwell::memory_buffer::MemoryBuffer::create_from_memory_range_copy(
                source.as_bytes(),
                "t.ll",
            );
            context.create_module_from_ir(buffer).unwrap()
        };
        let coroutines = parse("declare i32 @swapcontext(ptr, ptr)");
        assert_eq!(switches_stacks(&coroutines), Some("swapcontext"));
        let plain = parse("declare i32 @pthread_create(ptr, ptr, ptr, ptr)");
        assert_eq!(switches_stacks(&plain), None);
    }

    #[test]
    fn thread_starters_are_recognised_and_plain_jobs_are_not() {
        assert!(declares("declare i32 @pthread_create(ptr, ptr, ptr, ptr)"));
        assert!(declares("declare i32 @thrd_create(ptr, ptr, ptr)"));
        assert!(declares(
            "declare void @__kmpc_fork_call(ptr, i32, ptr, ...)"
        ));
        assert!(declares(
            "declare void @_ZNSt6thread15_M_start_threadESt10unique_ptrINS_6_StateESt14default_deleteIS1_EEPFvvE(ptr, ptr, ptr)"
        ));
        assert!(!declares(
            "declare i32 @printf(ptr, ...)\ndeclare ptr @malloc(i64)"
        ));
        // A job that calls clone may set its own thread pointer.
        assert!(!declares(
            "declare i32 @pthread_create(ptr, ptr, ptr, ptr)\ndeclare i32 @clone(ptr, ptr, i32, ptr, ...)"
        ));
        // A job's own function named like a thread starter is not one.
        assert!(!declares("define void @thread_pool() {\n  ret void\n}"));
    }
}
