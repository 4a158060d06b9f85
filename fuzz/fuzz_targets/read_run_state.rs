//! Any bytes as the files of a run folder: the resume state and history parse or fail, and a
//! saved model's checksum is checked or refused, never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let _ = serde_json::from_slice::<fruitlab::run::ResumeState>(bytes);
    let _ = serde_json::from_slice::<fruitlab::run::History>(bytes);
    let _ = fruitlab::support::checksum::check_safetensors(bytes, Path::new("model-best.safetensors"));
});
