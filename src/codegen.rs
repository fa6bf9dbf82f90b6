//! From an LLVM module to a relocatable object for the configured target.
//! Shared by every tier; only the optimization level differs between them.

use inkwell::module::Module;
use inkwell::passes::PassBuilderOptions;
use inkwell::targets::{
    CodeModel, FileType, InitializationConfig, RelocMode, Target, TargetData, TargetMachine,
    TargetTriple,
};
use inkwell::OptimizationLevel;

use crate::config;
use crate::error::Error;

/// The triple, CPU and features every tier of a run generates code for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetSpec {
    pub triple: String,
    pub cpu: String,
    pub features: String,
}

/// Features the C calling convention of the host architecture passes
/// arguments in (x86-64: SSE registers and x87 for `long double`; AArch64:
/// the FP/SIMD registers): without one, code generation fails or calls
/// across tiers and into libc disagree.
#[cfg(target_arch = "x86_64")]
const ABI_FEATURES: &[&str] = &["64bit", "64bit-mode", "sse", "sse2", "x87", "fxsr"];
#[cfg(not(target_arch = "x86_64"))]
const ABI_FEATURES: &[&str] = &["neon", "fp-armv8"];

/// Initialises the LLVM target of the architecture this binary runs on.
/// (`Target::initialize_native` would pick the build machine's target in a
/// cross-built binary, because llvm-sys compiles its shim for the host.)
pub fn initialize_native_target() -> Result<(), Error> {
    let config = InitializationConfig::default();
    #[cfg(target_arch = "x86_64")]
    Target::initialize_x86(&config);
    #[cfg(target_arch = "aarch64")]
    Target::initialize_aarch64(&config);
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    return Err(Error::Codegen(
        "tierjit supports x86-64 and AArch64 hosts only".into(),
    ));
    #[allow(unreachable_code)]
    Ok(())
}

/// This machine's CPU as LLVM names it. Asked once per process: LLVM
/// reads `/proc/cpuinfo` (AArch64) or runs `cpuid` again on every call.
fn host_cpu_name() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| TargetMachine::get_host_cpu_name().to_string())
}

/// This machine's CPU features as LLVM lists them (`+avx2,-avx512f,...`);
/// asked once per process, as `host_cpu_name`.
fn host_cpu_features() -> &'static str {
    static FEATURES: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    FEATURES.get_or_init(|| TargetMachine::get_host_cpu_features().to_string())
}

impl TargetSpec {
    /// Resolves the configured target for this machine.
    ///
    /// Code always runs here, so the features are always the host's, with
    /// `target.features` applied on top: a CPU named in `target.cpu` then
    /// chooses the tuning (scheduling model, costs) and cannot switch on an
    /// instruction this machine lacks. (On x86-64 the host list names every
    /// feature, on or off; on AArch64 the kernel reports only those present,
    /// so a named CPU may still add its own: name a CPU the machine has.)
    /// A `+feature` the host does not report is refused, unless the host
    /// reports none at all (no detection: under an emulator, say).
    pub fn resolve(target: &config::Target) -> Result<TargetSpec, Error> {
        let triple = TargetMachine::get_default_triple()
            .as_str()
            .to_string_lossy()
            .into_owned();
        let cpu = if target.cpu == "host" {
            host_cpu_name().to_string()
        } else {
            target.cpu.trim().to_string()
        };
        if cpu == "help" {
            return Err(Error::ConfigValue(
                "target.cpu: `help` is not a CPU (see `llc -mcpu=help` for LLVM's list)".into(),
            ));
        }
        let host = host_cpu_features().to_string();
        let features = match target.features.trim() {
            "host" => host,
            explicit => {
                let enabled: Vec<&str> = host.split(',').filter(|f| f.starts_with('+')).collect();
                for feature in explicit.split(',').map(str::trim).filter(|f| !f.is_empty()) {
                    let Some(name) = feature.strip_prefix('+') else {
                        let Some(name) = feature.strip_prefix('-') else {
                            return Err(Error::ConfigValue(format!(
                                "target.features: `{feature}` must start with + or -"
                            )));
                        };
                        if ABI_FEATURES.contains(&name) {
                            return Err(Error::ConfigValue(format!(
                                "target.features: `{name}` cannot be turned off: the calling convention of this architecture needs it"
                            )));
                        }
                        continue;
                    };
                    // Every `+` the host list lacks is refused: a CPU feature
                    // it does not have, or a code-generation mode (such as
                    // soft-float) that changes what a call passes where.
                    if !enabled.is_empty() && !enabled.contains(&feature) {
                        return Err(Error::ConfigValue(format!(
                            "target.features: `{name}` is not a feature this machine's CPU reports, so code using it may not run here"
                        )));
                    }
                }
                if host.is_empty() {
                    explicit.to_string()
                } else {
                    format!("{host},{explicit}")
                }
            }
        };
        Ok(TargetSpec {
            triple,
            cpu,
            features,
        })
    }

    /// Checks that LLVM knows the CPU and every feature named: it only
    /// warns about unknown ones and generates generic code. Call before
    /// other threads write to stderr (see `code::llvm_warnings_during`).
    pub fn validate(&self) -> Result<(), Error> {
        // The host's own CPU and features need no check (and a probe
        // compile costs a noticeable part of a short run under emulation).
        if self.cpu == host_cpu_name() && self.features == host_cpu_features() {
            return Ok(());
        }
        // Checked once per process: the check captures the process's
        // stderr, which an embedding program may be writing to.
        static VALID: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());
        let key = (self.cpu.clone(), self.features.clone());
        if VALID
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&key)
        {
            return Ok(());
        }
        let (built, warnings) = crate::code::llvm_warnings_during(|| {
            let machine = self.machine(0)?;
            let context = inkwell::context::Context::create();
            let module = context.create_module("probe");
            let f = module.add_function("probe", context.void_type().fn_type(&[], false), None);
            let builder = context.create_builder();
            builder.position_at_end(context.append_basic_block(f, "entry"));
            let _ = builder.build_return(None);
            emit_object(&module, &machine).map(|_| ())
        });
        built?;
        let arch = self.triple.split('-').next().unwrap_or("");
        if warnings.contains("is not a recognized processor") {
            return Err(Error::ConfigValue(format!(
                "target.cpu: LLVM knows no {arch} CPU named `{}`",
                self.cpu
            )));
        }
        if let Some(line) = warnings
            .lines()
            .find(|l| l.contains("is not a recognized feature"))
        {
            let name = line.split('\'').nth(1).unwrap_or(line);
            return Err(Error::ConfigValue(format!(
                "target.features: LLVM knows no {arch} feature `{name}`"
            )));
        }
        VALID.lock().unwrap_or_else(|p| p.into_inner()).push(key);
        Ok(())
    }

    /// Checks that a job's IR was made for this target: the same
    /// architecture and operating system, and a data layout that agrees on
    /// every type's size and alignment (IR for another layout would read
    /// and write its structures wrongly).
    pub fn check_module(&self, module: &Module<'_>, path: &std::path::Path) -> Result<(), Error> {
        let unsupported = |what: String| Error::Unsupported {
            path: path.to_path_buf(),
            what,
        };
        let job_triple = module.get_triple().as_str().to_string_lossy().into_owned();
        if !job_triple.is_empty() {
            let norm = |t: &str| {
                TargetMachine::normalize_triple(&TargetTriple::create(t))
                    .as_str()
                    .to_string_lossy()
                    .into_owned()
            };
            let (job, here) = (norm(&job_triple), norm(&self.triple));
            let job_parts: Vec<&str> = job.split('-').collect();
            let here_parts: Vec<&str> = here.split('-').collect();
            let same_arch = job_parts.first() == here_parts.first();
            let job_os = job_parts.get(2).copied().unwrap_or("unknown");
            let same_os = job_os == "unknown" || Some(&job_os) == here_parts.get(2);
            if !same_arch || !same_os {
                return Err(unsupported(format!(
                    "the IR is for {job_triple}, and tierjit here runs {} code (compile the job for this machine)",
                    self.triple
                )));
            }
        }
        let layout = module
            .get_data_layout()
            .as_str()
            .to_string_lossy()
            .into_owned();
        if layout.is_empty() {
            return Ok(());
        }
        let here = self.data_layout()?;
        if layout == here {
            return Ok(());
        }
        let job = TargetData::create(&layout);
        let here = TargetData::create(&here);
        if let Some(difference) = layout_difference(&module.get_context(), &job, &here) {
            return Err(unsupported(format!(
                "the IR's data layout \"{layout}\" does not match this target's: {difference}"
            )));
        }
        Ok(())
    }

    /// The data layout code for this target uses, as text. Remembered per
    /// target: a target machine takes a noticeable part of a short run to
    /// create (LLVM expands every implied CPU feature), and a run checks
    /// each module it loads.
    fn data_layout(&self) -> Result<String, Error> {
        static KNOWN: std::sync::Mutex<Vec<(TargetSpec, String)>> =
            std::sync::Mutex::new(Vec::new());
        let known = |spec: &TargetSpec| {
            KNOWN
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .find(|(s, _)| s == spec)
                .map(|(_, layout)| layout.clone())
        };
        if let Some(layout) = known(self) {
            return Ok(layout);
        }
        let layout = self
            .machine(0)?
            .get_target_data()
            .get_data_layout()
            .as_str()
            .to_string_lossy()
            .into_owned();
        KNOWN
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((self.clone(), layout.clone()));
        Ok(layout)
    }

    /// A target machine at the given optimization level. Code is
    /// position-independent so later objects reach earlier ones through the
    /// GOT and PLT stubs that ORC's linker builds, wherever memory lands.
    pub fn machine(&self, level: u8) -> Result<TargetMachine, Error> {
        let triple = TargetTriple::create(&self.triple);
        let target = Target::from_triple(&triple)
            .map_err(|e| Error::Codegen(format!("target {}: {e}", self.triple)))?;
        let opt = match level {
            0 => OptimizationLevel::None,
            1 => OptimizationLevel::Less,
            2 => OptimizationLevel::Default,
            _ => OptimizationLevel::Aggressive,
        };
        target
            .create_target_machine(
                &triple,
                &self.cpu,
                &self.features,
                opt,
                RelocMode::PIC,
                CodeModel::Default,
            )
            .ok_or_else(|| {
                Error::Codegen(format!(
                    "no target machine for {} cpu {}",
                    self.triple, self.cpu
                ))
            })
    }
}

/// Runs LLVM's standard pipeline at `level` (1–3) over the module.
pub fn optimize(module: &Module<'_>, machine: &TargetMachine, level: u8) -> Result<(), Error> {
    prepare(module, machine);
    let pipeline = format!("default<O{}>", level.clamp(1, 3));
    let options = PassBuilderOptions::create();
    // With profile data the pipeline would add a call-graph profile section
    // for the linker to order functions by; x86-64 ELF writes its
    // relocations as SHT_REL, which ORC's JITLink rejects ("No SHT_REL in
    // valid x64 ELF object files"), and a JIT has no use for the ordering.
    options.set_call_graph_profile(false);
    // The C API's options leave the SLP vectorizer off (LLVM's
    // PipelineTuningOptions default); clang turns it on at -O2 and up, and
    // tierjit's O3 is meant to make native -O3's code. (Neutral on the core
    // jobs: nbody, spectral_norm, matmul and stencil within 1%.)
    options.set_loop_slp_vectorization(level >= 2);
    module
        .run_passes(&pipeline, machine, options)
        .map_err(|e| Error::Codegen(format!("{pipeline}: {e}")))?;
    llvm_errors(&pipeline)
}

/// Error diagnostics LLVM raised on this thread (see `code::watch_context`).
fn llvm_errors(what: &str) -> Result<(), Error> {
    let errors = crate::code::take_errors();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::Codegen(format!("{what}: {}", errors.join("; "))))
    }
}

/// Runs an explicit pass pipeline (e.g. "elim-avail-extern").
pub fn run_pipeline(
    module: &Module<'_>,
    machine: &TargetMachine,
    pipeline: &str,
) -> Result<(), Error> {
    module
        .run_passes(pipeline, machine, PassBuilderOptions::create())
        .map_err(|e| Error::Codegen(format!("{pipeline}: {e}")))
}

fn prepare(module: &Module<'_>, machine: &TargetMachine) {
    module.set_triple(&machine.get_triple());
    module.set_data_layout(&machine.get_target_data().get_data_layout());
}

/// Emits a relocatable object.
pub fn emit_object(module: &Module<'_>, machine: &TargetMachine) -> Result<Vec<u8>, Error> {
    prepare(module, machine);
    expand_atomics_before_aarch64_codegen(module, machine)?;
    let object = machine
        .write_to_memory_buffer(module, FileType::Object)
        .map(|buffer| buffer.as_slice().to_vec())
        .map_err(|e| Error::Codegen(e.to_string()))?;
    llvm_errors("code generation")?;
    Ok(object)
}

/// Works around an LLVM 19 AArch64 miscompile (llvm/llvm-project#150988)
/// that loses updates: an `atomicrmw` that code generation turns into a
/// compare-and-swap loop (`fadd`, `fsub`, `fmax`, `fmin` without LSE: an
/// OpenMP reduction or `#pragma omp atomic` on a double, C++20's
/// `atomic<double>::fetch_add`) got a store-exclusive whose status register
/// is `wzr` at -O1 and up, so a failed store counted as done. Clang's
/// default outline atomics hide it in native builds; tierjit has no
/// outline helpers to call. Running the same expansion as IR first makes
/// those compare-and-swaps ordinary `cmpxchg` instructions, which code
/// generation then expands with the status checked (or as LSE's `cas`).
/// Harmless at -O0, where the pseudo keeps its status register, and with
/// LSE. LLVM 20's AtomicExpand expands the compare-and-swaps it makes
/// itself: drop this with LLVM 19.
fn expand_atomics_before_aarch64_codegen(
    module: &Module<'_>,
    machine: &TargetMachine,
) -> Result<(), Error> {
    let triple = machine.get_triple();
    if !triple.as_str().to_bytes().starts_with(b"aarch64") {
        return Ok(());
    }
    run_pipeline(module, machine, "atomic-expand")?;
    llvm_errors("atomic-expand")
}

/// The first way two data layouts disagree on what IR means, if any:
/// byte order, pointer size, or the size or alignment of a basic type.
fn layout_difference(
    context: &inkwell::context::ContextRef<'_>,
    job: &TargetData,
    here: &TargetData,
) -> Option<String> {
    if job.get_byte_ordering() != here.get_byte_ordering() {
        return Some("byte order".into());
    }
    if job.get_pointer_byte_size(None) != here.get_pointer_byte_size(None) {
        return Some(format!(
            "pointers of {} bytes, here {}",
            job.get_pointer_byte_size(None),
            here.get_pointer_byte_size(None)
        ));
    }
    let types: Vec<(&str, inkwell::types::BasicTypeEnum)> = vec![
        ("i8", context.i8_type().into()),
        ("i16", context.i16_type().into()),
        ("i32", context.i32_type().into()),
        ("i64", context.i64_type().into()),
        ("i128", context.i128_type().into()),
        ("float", context.f32_type().into()),
        ("double", context.f64_type().into()),
        ("ptr", context.ptr_type(0.into()).into()),
    ];
    for (name, ty) in types {
        let (a, b) = (job.get_abi_size(&ty), here.get_abi_size(&ty));
        if a != b {
            return Some(format!("{name} takes {a} bytes, here {b}"));
        }
        let (a, b) = (job.get_abi_alignment(&ty), here.get_abi_alignment(&ty));
        if a != b {
            return Some(format!("{name} is aligned to {a} bytes, here {b}"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use inkwell::context::Context;
    use inkwell::memory_buffer::MemoryBuffer;

    fn module<'ctx>(context: &'ctx Context, name: &str, ir: &str) -> Module<'ctx> {
        let buffer = MemoryBuffer::create_from_memory_range_copy(ir.as_bytes(), name);
        context.create_module_from_ir(buffer).unwrap()
    }

    /// A joint compile links a continuation's module into the version's:
    /// LLVM errors must still be reported afterwards (inkwell's own link
    /// left the context's diagnostic handler pointing at a dead stack
    /// slot, and the next error crashed the process), and a failed link
    /// says why.
    #[test]
    fn llvm_errors_are_reported_after_a_link_and_a_failed_link_says_why() {
        initialize_native_target().unwrap();
        let machine = TargetSpec::resolve(&crate::config::Target::default())
            .unwrap()
            .machine(0)
            .unwrap();
        let context = Context::create();
        crate::code::watch_context(&context);
        let g = "define void @g() {\n  ret void\n}\n";
        let joint = module(&context, "joint", g);
        crate::code::ir::link_into(&joint, module(&context, "other", "declare void @g()\n"))
            .unwrap();
        let clash = crate::code::ir::link_into(&joint, module(&context, "clash", g));
        assert!(
            clash.is_err_and(|e| e.contains("g")),
            "a symbol defined twice"
        );
        let bad_asm = "define void @f() {\n  call void asm sideeffect \"no_such_insn %eax\", \"\"()\n  ret void\n}\n";
        let error = emit_object(&module(&context, "asm", bad_asm), &machine)
            .expect_err("an instruction no assembler knows");
        assert!(error.to_string().contains("no_such_insn"), "{error}");
    }

    /// The store-exclusives in AArch64 code: (status register, word).
    /// STXR/STLXR of any size and STXP/STLXP: bits 29-23 are 0010000 and
    /// L (22) is 0; a pair (o1, bit 21) has bit 31 set, which tells it from
    /// LSE's CASP. Rs, the status, is bits 20-16.
    #[cfg(target_arch = "aarch64")]
    fn store_exclusives(code: &[u8]) -> Vec<(u32, u32)> {
        code.chunks_exact(4)
            .map(|w| u32::from_le_bytes(w.try_into().unwrap()))
            .filter(|w| w & 0x3fc0_0000 == 0x0800_0000)
            .filter(|w| w & (1 << 21) == 0 || w & (1 << 31) != 0)
            .map(|w| ((w >> 16) & 31, w))
            .collect()
    }

    /// llvm/llvm-project#150988: without LSE (Cortex-A53/A72, a Pi), LLVM
    /// 19 gave the compare-and-swap loop of a floating-point `atomicrmw` a
    /// store-exclusive whose status is `wzr`, so a store that failed
    /// (another thread's update in between) counted as done and the update
    /// was lost: an OpenMP `reduction(+:sum)` on a double lost a thread's
    /// share. Every store-exclusive must report to a real register.
    #[cfg(target_arch = "aarch64")]
    #[test]
    fn every_store_exclusive_reports_whether_it_stored() {
        initialize_native_target().unwrap();
        let host = TargetSpec::resolve(&crate::config::Target::default()).unwrap();
        let without_lse = TargetSpec {
            features: format!("{},-lse,-outline-atomics", host.features)
                .trim_start_matches(',')
                .to_string(),
            ..host
        };
        let ir = "
define double @add(ptr %p, double %v) {
  %old = atomicrmw fadd ptr %p, double %v monotonic, align 8
  ret double %old
}
define void @sub(ptr %p, double %v) {
  %old = atomicrmw fsub ptr %p, double %v seq_cst, align 8
  ret void
}
define void @max(ptr %p, float %v) {
  %old = atomicrmw fmax ptr %p, float %v acq_rel, align 4
  ret void
}
define i128 @swap(ptr %p, i128 %a, i128 %b) {
  %pair = cmpxchg ptr %p, i128 %a, i128 %b seq_cst seq_cst, align 16
  %old = extractvalue { i128, i1 } %pair, 0
  ret i128 %old
}
";
        for level in [0, 3] {
            let context = Context::create();
            let m = module(&context, "atomics", ir);
            let machine = without_lse.machine(level).unwrap();
            if level > 0 {
                optimize(&m, &machine, level).unwrap();
            }
            let object = emit_object(&m, &machine).unwrap();
            let read = crate::observe::elf::read(&object).unwrap();
            let text = read.section(".text").unwrap();
            let stores = store_exclusives(read.contents(&object, text).unwrap());
            assert!(stores.len() >= 4, "O{level}: {stores:x?}");
            for (status, word) in stores {
                assert_ne!(status, 31, "O{level}: {word:08x} discards its status");
            }
        }
    }
}
