/*
 * tierjit: a tiered JIT for compute code given as C or LLVM IR.
 *
 * An engine loads modules. A module starts on baseline code; its profiler
 * thread and the engine's compiler threads (compiler.threads of the config,
 * shared by all the engine's modules) optimize what gets hot and swap it
 * in. The address
 * tierjit_module_function returns never changes, and calls through it reach
 * the newest version, from any thread.
 *
 * Build: `cargo build --release` makes target/release/libtierjit.so.
 * Link:  cc app.c -Iinclude -Ltarget/release -ltierjit
 *        -Wl,-rpath,$PWD/target/release
 * LLVM is linked into the library (statically, see build.rs; a cross
 * build links libLLVM-19.so); it needs libstdc++, zlib and zstd at run
 * time; clang-19 to load C and C++ files; flang-19 and libflang-19-dev
 * for Fortran.
 *
 * Ownership and lifetimes:
 * - Every char * tierjit returns (error messages, stats) belongs to the
 *   caller, who frees it with tierjit_string_free. On success *error is
 *   left untouched; pass NULL for error to ignore messages.
 * - A module owns its code, counters and profiler thread. Calling any
 *   function of a module (through an address from tierjit_module_function)
 *   after tierjit_module_free, or while it runs, is undefined behaviour, as
 *   is calling an address through a function type other than the one the
 *   module defines.
 * - A module may outlive the engine that loaded it; freeing the engine
 *   forgets its configuration and defined symbols, and its compiler
 *   threads go on serving the modules still loaded (they end with the
 *   last of them).
 * - Errors are returned, never printed; tierjit never exits the process on
 *   its own (an LLVM fatal error while loading is the exception: it ends
 *   the process with status 125).
 *
 * A module's static constructors run before tierjit_module_load returns,
 * its destructors in tierjit_module_free, as dlopen and dlclose run a
 * shared library's.

 */
#ifndef TIERJIT_H
#define TIERJIT_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tierjit_engine tierjit_engine;
typedef struct tierjit_module tierjit_module;

/* config_ron: text in the config-file format (see config.example.ron; the
 * fields given are layered over the defaults), or NULL for the defaults.
 * On failure: NULL, *error set. A target.cpu or target.features other than
 * the host's is checked once per process by a probe compile whose LLVM
 * warnings are read from stderr: for those few milliseconds, what other
 * threads write to stderr is lost. The first engine registers an atexit
 * handler that stops every engine's compiler threads at exit (waiting for
 * compiles in flight), so that LLVM's exit-time destructors never run
 * under one. */
tierjit_engine *tierjit_engine_new(const char *config_ron, char **error);

/* A host function or object the modules may reference; checked before the
 * host process's own symbols. Applies to modules loaded afterwards; a
 * second definition of a name replaces the first. 0 on success; -1 and
 * *error set on failure (NULL engine or name, NULL address, or a name
 * tierjit defines for every module itself: atexit, at_quick_exit,
 * pthread_create, pthread_exit, pthread_atfork, __dso_handle, __cxa_atexit,
 * __tierjit_*). Loading a module that itself defines (non-static) a name
 * defined here fails with an error naming it. */
int tierjit_engine_define_symbol(tierjit_engine *engine, const char *name, void *address,
                                 char **error);

/* path: .c, .cpp/.cc/.cxx, .f90/.f, .ll or .bc, as `tierjit run` takes it;
 * the module starts on baseline code and tiers up in the background. It
 * need not define main. The runtime its source needs (libstdc++, libomp
 * for -fopenmp IR, flang's) is loaded into the process; other libraries
 * it calls must be in the process already (linked, or dlopen'ed with
 * RTLD_GLOBAL). On failure (unreadable file, code that does not compile,
 * IR for another target, unresolved symbols...): NULL, *error set. */
tierjit_module *tierjit_module_load(tierjit_engine *engine, const char *path, char **error);

/* Like tierjit_module_load, for count inputs linked into one module as
 * `tierjit run a.c b.ll` links them: one definition per name (a second is
 * an error naming it), weak and linkonce_odr definitions merged, statics
 * kept apart. NULL + *error when count is 0 or a path is NULL. */
tierjit_module *tierjit_module_load_many(tierjit_engine *engine, const char *const *paths,
                                         size_t count, char **error);

/* The stable address of a defined function (a static C function too): it
 * never changes, and calls through it reach the newest tier. Cast it to
 * the function's exact type. NULL + *error if absent. */
void *tierjit_module_function(tierjit_module *module, const char *name, char **error);

/* Runs the module's main with argc/argv and returns its result. The process
 * is not exited; a main that calls exit() ends the process as exit does.
 * Returns -1 without running anything if module is NULL, argc is negative,
 * argv is NULL with argc > 0, or the module has no main. */
int tierjit_module_run_main(tierjit_module *module, int argc, char **argv);

/* What --stats shows, as JSON: {"functions": [{"name", "tier" ("Baseline"
 * or "Optimized"), "calls", "backedges"}, ...], "osr_continuations",
 * "osr_transitions", "compiles_installed", "compiles_failed"}. Calls and
 * back-edges are those baseline code counted. Free with
 * tierjit_string_free. NULL if module is NULL. */
char *tierjit_module_stats_json(tierjit_module *module);

/* Runs the module's static destructors, stops its profiler, drops its
 * queued compiles and waits for a compile of it in flight (LLVM cannot
 * interrupt one; after 60 s it gives up with a warning on stderr), then
 * frees the module's code, counters and JIT. Nothing of the module may run
 * afterwards: no thread the module's code started, no atexit or signal
 * handler it registered. (A compiler thread that met an LLVM fatal error
 * while compiling for the module blocks for good and keeps the module's
 * memory.) Free every module before the process exits: a compile still
 * running at exit meets LLVM's static destructors. NULL is ignored. */
void tierjit_module_free(tierjit_module *module);

/* Forgets the engine's configuration and defined symbols. Its compiler
 * threads go on while modules it loaded are alive; freeing the last of the
 * engine and its modules joins them (waiting for a compile in flight, as
 * tierjit_module_free does). NULL is ignored. */
void tierjit_engine_free(tierjit_engine *engine);

/* For every char * tierjit returned. NULL is ignored. */
void tierjit_string_free(char *s);

#ifdef __cplusplus
}
#endif

#endif /* TIERJIT_H */
