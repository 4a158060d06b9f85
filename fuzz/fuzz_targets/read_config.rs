//! Any `config.json` bytes: a run record that validates or is refused, or a parse error, never
//! a panic; the same for the text forms of the validation split and the augmentation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(record) = serde_json::from_slice::<fruitlab::run::RunRecord>(bytes) {
        let _ = record.config.validate();
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = text.parse::<fruitlab::data::ValSplit>();
        if let Ok(augment) = text.parse::<fruitlab::data::Augment>() {
            let _ = augment.problems();
        }
    }
});
