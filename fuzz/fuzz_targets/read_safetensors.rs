//! Any bytes given as a weights or checkpoint file: tensors or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(mut tensors) = fruitlab::weights::NamedTensors::from_safetensors_bytes(bytes, "fuzz")
    {
        let _ = tensors.take("conv1/kernel", &[64, 3, 7, 7]);
    }
});
