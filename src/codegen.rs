//! From an LLVM module to a relocatable object for the configured target.
//! Shared by every tier; only the optimization level differs between them.

use inkwell::module::Module;
use inkwell::passes::PassBuilderOptions;
use inkwell::targets::{
    CodeModel, FileType, InitializationConfig, RelocMode, Target, TargetMachine, TargetTriple,
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

impl TargetSpec {
    /// Resolves "host" in the config to what this machine is.
    pub fn resolve(target: &config::Target) -> TargetSpec {
        let triple = TargetMachine::get_default_triple()
            .as_str()
            .to_string_lossy()
            .into_owned();
        let host_cpu = TargetMachine::get_host_cpu_name().to_string();
        let cpu = if target.cpu == "host" {
            host_cpu
        } else {
            target.cpu.clone()
        };
        let features = match target.features.as_str() {
            "host" if target.cpu == "host" => TargetMachine::get_host_cpu_features().to_string(),
            "host" => String::new(),
            other => other.to_string(),
        };
        TargetSpec {
            triple,
            cpu,
            features,
        }
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
    module
        .run_passes(&pipeline, machine, options)
        .map_err(|e| Error::Codegen(format!("{pipeline}: {e}")))
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
    machine
        .write_to_memory_buffer(module, FileType::Object)
        .map(|buffer| buffer.as_slice().to_vec())
        .map_err(|e| Error::Codegen(e.to_string()))
}
