//! Where a command computes: the backend and device chosen at run time, the CPU threads, and
//! the arithmetic of the convolutions (fp32, or bf16 on AMX or AVX512-BF16), chosen once per
//! process by [`Compute::setup`].

use std::sync::OnceLock;

use anyhow::{Result, bail};
use burn::tensor::Device;
use fruitlab_kernels::Gemm;
use fruitlab_kernels::bf16::{self, Bf16Kernel};
use serde::{Deserialize, Serialize};

/// The burn backends fruitlab can be built with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Pure-Rust CPU backend (default build).
    Flex,
    /// LibTorch (build with `--features tch`): CPU, or CUDA with `--device cuda`.
    Tch,
    /// CubeCL CUDA backend (build with `--features cuda`).
    Cuda,
}

/// The arithmetic of every convolution's GEMM (`--precision`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 inputs and accumulation.
    Fp32,
    /// The inputs of every convolution's GEMM in bf16, accumulation in f32; weights, optimizer
    /// state, batch norm, the loss and the metrics stay f32.
    Bf16,
    /// bf16 where the CPU has a bf16 path measured to be fast (AMX), fp32 elsewhere.
    Auto,
}

crate::spelled_setting!(Backend, Precision);

/// Where to run: `cpu`, or `cuda` / `cuda:N` for a GPU.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
}

impl std::str::FromStr for DeviceSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" | "gpu" => Ok(DeviceSpec::Cuda(0)),
            _ => text
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceSpec::Cuda)
                .ok_or_else(|| format!("`{text}` is not a device: use cpu, cuda or cuda:N")),
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Cuda(index) => write!(f, "cuda:{index}"),
        }
    }
}

impl crate::support::settings::SettingText for DeviceSpec {
    fn setting_text(&self) -> String {
        self.to_string()
    }
}

/// The compute settings, shared by every command that computes (see
/// [`crate::support::settings`] for the table's form).
#[macro_export]
macro_rules! compute_settings {
    ($then:path) => {
        $then! {
            defaults(_nothing: ());
            /// Where a command computes: backend, device and CPU threads.
            compute: Compute / ComputeOverrides {
                /// Compute backend (only those compiled in are available).
                backend: $crate::compute::Backend = $crate::compute::Backend::Flex,
                /// `cpu`, `cuda` or `cuda:N`.
                device: $crate::compute::DeviceSpec [optional "cpu; cuda:0 for the cuda backend"] = None,
                /// CPU threads for the math and the data pipeline.
                threads: usize [optional "all cores"] = None,
                /// Arithmetic of the convolutions: fp32; bf16 (their inputs in bf16, sums in
                /// f32, on AMX or AVX512-BF16); or auto (bf16 where it is faster: AMX, or
                /// AVX512-BF16 on AMD).
                precision: $crate::compute::Precision = $crate::compute::Precision::Fp32,
            }
        }
    };
}

compute_settings!(crate::settings_sections);

impl Default for Compute {
    fn default() -> Self {
        Self::defaults(&())
    }
}

impl ComputeOverrides {
    /// The default compute settings with these replaced.
    pub fn into_compute(self) -> Compute {
        let mut compute = Compute::default();
        self.apply(&mut compute);
        compute
    }
}

impl Compute {
    /// Sizes the thread pool (shared by burn-flex, our kernels and the data pipeline; the
    /// first call in a process decides) and returns the device.
    pub fn setup(&self) -> Result<Device> {
        if let Some(threads) = self.threads
            && !(1..=MAX_THREADS).contains(&threads)
        {
            bail!("--threads must be between 1 and {MAX_THREADS}, got {threads}");
        }
        let arithmetic = self.arithmetic()?;
        if let Some(threads) = self.threads {
            rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().ok();
        }
        let device = select(self.backend, self.device.as_ref())?;
        // The first setup of a process decides (as for the thread pool).
        ARITHMETIC.get_or_init(|| arithmetic);
        Ok(device)
    }

    /// What `precision` means on this machine and backend.
    fn arithmetic(&self) -> Result<Arithmetic> {
        let support = bf16::support();
        let note = support.amx_unavailable.clone().filter(|_| support.amx_reported);
        let bf16 = |kernel: Bf16Kernel| Arithmetic { gemm: Gemm::Bf16(kernel), note: note.clone() };
        let fp32 = Arithmetic { gemm: Gemm::F32, note: None };
        if self.backend != Backend::Flex {
            if self.precision == Precision::Bf16 {
                bail!(
                    "--precision bf16 runs on the flex backend only (our kernels); use --precision fp32 with --backend {}",
                    crate::support::spelling(&self.backend)
                );
            }
            return Ok(fp32);
        }
        Ok(match self.precision {
            Precision::Fp32 => fp32,
            Precision::Bf16 => match support.best {
                Some(kernel) => bf16(kernel),
                None => bail!(
                    "--precision bf16: this CPU has no bf16 instructions (neither AMX nor AVX512-BF16); use --precision fp32"
                ),
            },
            // AMX, or AVX512-BF16 where it beats fp32 (AMD: measured in BENCHMARKS.md).
            Precision::Auto => support.fastest().map_or(fp32, bf16),
        })
    }
}

/// The arithmetic this process's convolutions use, and why not a faster one when the CPU
/// reports one the process cannot use.
#[derive(Clone, Debug)]
pub struct Arithmetic {
    pub gemm: Gemm,
    /// E.g. why AMX cannot run.
    pub note: Option<String>,
}

impl Arithmetic {
    /// `bf16` or `fp32`: what the results depend on.
    pub fn precision(&self) -> Precision {
        match self.gemm {
            Gemm::F32 => Precision::Fp32,
            Gemm::Bf16(_) => Precision::Bf16,
        }
    }

    /// In words: "bf16 on AMX", "fp32 AVX-512", with the note.
    pub fn describe(&self) -> String {
        let what = match self.gemm {
            Gemm::F32 => self.gemm.name().to_string(),
            Gemm::Bf16(kernel) => format!("bf16 on {}", kernel.name()),
        };
        match &self.note {
            Some(note) => format!("{what} ({note})"),
            None => what,
        }
    }
}

static ARITHMETIC: OnceLock<Arithmetic> = OnceLock::new();

/// The arithmetic set up for this process (fp32 before any setup).
pub fn arithmetic() -> Arithmetic {
    ARITHMETIC.get().cloned().unwrap_or(Arithmetic { gemm: Gemm::F32, note: None })
}

/// The most CPU threads a command may ask for.
pub const MAX_THREADS: usize = 4096;

/// The burn device for a backend and device choice (default: the CPU, or GPU 0 for `cuda`); a
/// clear error when the backend was not compiled in or cannot run on that device.
pub fn select(backend: Backend, spec: Option<&DeviceSpec>) -> Result<Device> {
    let spec = spec.cloned().unwrap_or(match backend {
        Backend::Cuda => DeviceSpec::Cuda(0),
        Backend::Flex | Backend::Tch => DeviceSpec::Cpu,
    });
    match (backend, &spec) {
        #[cfg(feature = "flex")]
        (Backend::Flex, DeviceSpec::Cpu) => Ok(Device::flex()),
        // burn-tch is deprecated upstream but remains the fastest CPU path today.
        #[cfg(feature = "tch")]
        #[allow(deprecated)]
        (Backend::Tch, DeviceSpec::Cpu) => Ok(Device::libtorch()),
        #[cfg(feature = "tch")]
        #[allow(deprecated)]
        (Backend::Tch, DeviceSpec::Cuda(index)) => Ok(Device::libtorch_cuda(*index)),
        #[cfg(feature = "cuda")]
        (Backend::Cuda, DeviceSpec::Cuda(index)) => Ok(Device::cuda(*index)),
        (Backend::Flex, DeviceSpec::Cuda(_)) => bail!("the flex backend runs on the CPU only"),
        (Backend::Cuda, DeviceSpec::Cpu) => bail!("the cuda backend needs `--device cuda[:N]`"),
        #[allow(unreachable_patterns)]
        (backend, _) => bail!(
            "this fruitlab was built without the `{0}` backend: rebuild with `cargo build --release --features {0}`",
            crate::support::spelling(&backend)
        ),
    }
}
