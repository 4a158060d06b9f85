//! Where a command computes: the backend and device chosen at run time, and the CPU threads.

use anyhow::{Result, bail};
use burn::tensor::Device;
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

crate::spelled_setting!(Backend);

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
        if let Some(threads) = self.threads {
            rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().ok();
        }
        select(self.backend, self.device.as_ref())
    }
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
