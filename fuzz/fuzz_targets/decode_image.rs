//! Any bytes given as an image file: an image or an error, never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(image) = fruitlab::preprocess::decode_bytes(bytes) {
        let _ = fruitlab::preprocess::resize_square(image, 32);
    }
});
