//! Per-CPU copies of the counters, so job threads do not fight over them.
//!
//! Every counter write in generated code (function entries, back-edges,
//! branch edges, value tables, guard hits and misses) used to go to one
//! shared cache line; two threads running the same hot function bounced
//! it between cores on every call (a 2-thread baseline job took 13x as
//! long as the 1-thread one). Now a counter table holds one copy per CPU,
//! and generated code picks its copy from the CPU it runs on, read from
//! the thread's rseq area (restartable sequences): glibc 2.35+ registers
//! one for every thread it creates (and the main thread) and exports its
//! offset from the thread pointer
//! (`__rseq_offset`), and the kernel keeps its `cpu_id_start` field equal
//! to the CPU the thread runs on. Generated code reads it with two loads
//! (`llvm.thread.pointer`, then the field), as Linux's per-CPU counters do.
//!
//! Threads on one CPU share a copy, but they do not run at the same
//! moment, so the line stays in that CPU's cache. Counts can still be lost:
//! a thread preempted (or moved to another CPU) between loading a count
//! and storing it plus one writes back a stale value, erasing whatever the
//! copy's other writers counted meanwhile, so a counter's sum can even go
//! down between two reads. Every access is an atomic of its own (never
//! torn, never undefined), and readers (the profiler, the compiler) treat
//! the sums as the estimates they are: a loss delays a decision, and a sum
//! that reads lower than before is taken as no progress.
//!
//! Threads that glibc did not create (another runtime's, with a thread
//! pointer of its own) do not have the rseq area at that offset; tierjit
//! does not support running job code on such threads.
//!
//! Without rseq (an older C library, the `glibc.pthread.rseq=0` tunable, a
//! kernel or emulator without the system call, such as QEMU's user mode)
//! there is one copy and generated code writes it directly, as before.

use std::sync::OnceLock;

/// How generated code finds its CPU's copy of a counter table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sharding {
    /// Offset of the rseq area's `cpu_id_start` (a u32) from the thread
    /// pointer.
    pub cpu_field: i64,
    /// Copies per table: a power of two of at least 2; CPU `c` writes copy
    /// `c & (shards - 1)`.
    pub shards: usize,
    /// Read the field through x86-64's FS segment, whose base is the
    /// thread pointer: one `mov %fs:OFFSET` instead of reading the thread
    /// pointer first.
    pub fs_segment: bool,
}

/// Copies beyond this many would cost the profiler more to sum than they
/// save: CPUs with the same low bits share a copy.
const MAX_SHARDS: usize = 16;

/// `cpu_id_start` is the first field of `struct rseq` (linux/rseq.h): a
/// valid CPU number whenever the thread is registered, 0 before.
const CPU_ID_START_OFFSET: i64 = 0;

/// The sharding this process's counter tables use, or `None` (one copy)
/// when rseq is not registered or there is a single CPU.
pub fn process_sharding() -> Option<Sharding> {
    static SHARDING: OnceLock<Option<Sharding>> = OnceLock::new();
    *SHARDING.get_or_init(detect)
}

fn detect() -> Option<Sharding> {
    // SAFETY: dlsym with valid NUL-terminated names; RTLD_DEFAULT searches
    // the process's global scope, which holds the C library.
    let (size, offset) = unsafe {
        (
            libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_size".as_ptr()),
            libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_offset".as_ptr()),
        )
    };
    if size.is_null() || offset.is_null() {
        return None;
    }
    // SAFETY: glibc defines `const unsigned int __rseq_size` and `const
    // ptrdiff_t __rseq_offset` (sys/rseq.h), set once at startup before any
    // user code runs and never written again.
    let (size, offset) = unsafe { (*(size as *const u32), *(offset as *const isize)) };
    // A size of 0: registration failed or was turned off.
    if size == 0 {
        return None;
    }
    // SAFETY: sysconf has no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
    let shards = usize::try_from(cpus)
        .ok()?
        .next_power_of_two()
        .min(MAX_SHARDS);
    (shards >= 2).then_some(Sharding {
        cpu_field: offset as i64 + CPU_ID_START_OFFSET,
        shards,
        fs_segment: cfg!(target_arch = "x86_64"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This thread's rseq `cpu_id_start`, read as generated code does.
    fn cpu_field(sharding: Sharding) -> u32 {
        // SAFETY: the thread pointer is this thread's TCB; glibc published
        // the rseq area's offset from it, and the area lives as long as the
        // thread.
        unsafe {
            let tp: *const u8;
            #[cfg(target_arch = "x86_64")]
            std::arch::asm!("mov {}, fs:0", out(reg) tp);
            #[cfg(target_arch = "aarch64")]
            std::arch::asm!("mrs {}, tpidr_el0", out(reg) tp);
            std::ptr::read_volatile(tp.offset(sharding.cpu_field as isize) as *const u32)
        }
    }

    /// Pins this thread to `cpu` (or unpins it, with `None`).
    fn pin(cpu: Option<usize>) -> bool {
        // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and
        // sched_setaffinity (0: this thread) get a pointer to it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            match cpu {
                Some(cpu) => libc::CPU_SET(cpu, &mut set),
                None => (0..libc::CPU_SETSIZE as usize).for_each(|c| libc::CPU_SET(c, &mut set)),
            }
            libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) == 0
        }
    }

    #[test]
    fn the_cpu_field_names_the_cpu_the_thread_runs_on() {
        let Some(sharding) = process_sharding() else {
            eprintln!("no rseq registration here: counters are not sharded");
            return;
        };
        assert!(sharding.shards.is_power_of_two() && sharding.shards <= MAX_SHARDS);
        let mut checked = 0;
        for cpu in 0..sharding.shards {
            if !pin(Some(cpu)) {
                continue; // not a CPU this process may use
            }
            std::thread::yield_now();
            assert_eq!(cpu_field(sharding), cpu as u32, "pinned to CPU {cpu}");
            checked += 1;
        }
        pin(None);
        assert!(checked >= 1, "could not pin to any CPU");
    }

    /// Generated code counts into the copy of the CPU it runs on: a
    /// function that increments one counter is called pinned to each CPU in
    /// turn, and only that CPU's copy moves. Both ways of reading the CPU
    /// are tried where both exist.
    #[test]
    fn generated_code_counts_into_its_cpus_copy() {
        let Some(sharding) = process_sharding() else {
            eprintln!("no rseq registration here: counters are not sharded");
            return;
        };
        counts_per_cpu(Sharding {
            fs_segment: false,
            ..sharding
        });
        if sharding.fs_segment {
            counts_per_cpu(sharding);
        }
    }

    fn counts_per_cpu(sharding: Sharding) {
        use crate::code::{call_void, CounterTable, Jit};
        use crate::codegen::{self, TargetSpec};
        use crate::ids::CounterId;
        codegen::initialize_native_target().unwrap();
        let counters: CounterTable = CounterTable::with_sharding(3, Some(sharding));
        let counter = CounterId(2);
        let context = inkwell::context::Context::create();
        let module = context.create_module("count");
        let f = module.add_function("count", context.void_type().fn_type(&[], false), None);
        let builder = context.create_builder();
        builder.position_at_end(context.append_basic_block(f, "entry"));
        let context_ref = f.get_type().get_context();
        crate::ir::edit::emit_increment(&context_ref, &builder, counters.address_of(counter))
            .unwrap();
        builder.build_return(None).unwrap();
        let spec = TargetSpec::resolve(&crate::config::Target::default()).unwrap();
        let object = codegen::emit_object(&module, &spec.machine(0).unwrap()).unwrap();
        let jit = Jit::new(&[]).unwrap();
        let (_loaded, entry) = jit.load(&object, "count").unwrap();
        let mut pinned = 0;
        for cpu in 0..sharding.shards {
            if !pin(Some(cpu)) {
                continue;
            }
            std::thread::yield_now();
            let before: Vec<u64> = (0..sharding.shards)
                .map(|c| counters.read_copy(c, counter))
                .collect();
            for _ in 0..10 {
                call_void(entry);
            }
            for (c, before) in before.iter().enumerate() {
                let added = counters.read_copy(c, counter) - before;
                let expected = if c == cpu { 10 } else { 0 };
                assert_eq!(added, expected, "copy {c}, pinned to {cpu}, {sharding:?}");
            }
            pinned += 1;
        }
        pin(None);
        assert!(pinned >= 1, "could not pin to any CPU");
        assert_eq!(counters.read(counter), 10 * pinned);
        assert_eq!(
            counters.read(CounterId(1)),
            0,
            "a neighbour stays untouched"
        );
    }
}
