//! Any model.json and shard bytes: TF.js tensors or an error, never a panic. The input is split
//! at its first NUL byte into the JSON manifest and the content of every shard.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let split = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let (json, shard) = bytes.split_at(split);
    let _ = fruitlab::weights::tfjs::parse(json, "fuzz", |_| Ok(shard.to_vec()));
});
