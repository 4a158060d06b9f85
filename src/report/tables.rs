//! CSV tables of an evaluation.

use std::path::Path;

use anyhow::Result;

use crate::eval::ClassAccuracy;
use crate::support::atomic_file;

/// `confusion.csv`: header row of predicted classes, one row per true class.
pub fn write_confusion_csv(
    path: &Path,
    confusion: &[Vec<usize>],
    classes: &[String],
) -> Result<()> {
    let mut csv = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["true \\ predicted".to_string()];
    header.extend(classes.iter().cloned());
    csv.write_record(&header)?;
    for (class, row) in classes.iter().zip(confusion) {
        let mut record = vec![class.clone()];
        record.extend(row.iter().map(usize::to_string));
        csv.write_record(&record)?;
    }
    atomic_file::write(path, &csv.into_inner()?)
}

pub fn write_per_class_csv(path: &Path, per_class: &[ClassAccuracy]) -> Result<()> {
    let mut csv = csv::Writer::from_writer(Vec::new());
    for class in per_class {
        csv.serialize(class)?;
    }
    atomic_file::write(path, &csv.into_inner()?)
}
