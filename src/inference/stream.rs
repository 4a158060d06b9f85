//! Prediction at scale: walk a folder tree of any size in a fixed order, classify the images
//! in chunks, and stream one JSON line per image (its classes, or the error for a bad file).
//! Memory stays bounded by one chunk; an interrupted run resumes from its own output
//! (`--skip-done`); `--shard I/N` gives each of N machines a fixed share of the files.

use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::{Guess, Predictor};
use crate::data::dataset::IMAGE_EXTENSIONS;
use crate::support::progress::Progress;

/// Files classified per chunk: enough to keep every core decoding, few enough to bound memory.
const CHUNK: usize = 256;

/// One process's share of the files: those whose position in the walk is `index - 1` modulo
/// `count` (`I/N`, 1-based, as a Kubernetes indexed Job or a Slurm array numbers its tasks
/// from 0 or 1: both `0/N`..`N-1/N` and `1/N`..`N/N` are accepted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// 0-based.
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let parse = |n: &str| n.trim().parse::<usize>().map_err(|_| format!("`{text}` is not I/N"));
        let (index, count) =
            text.split_once('/').ok_or_else(|| format!("`{text}`: use I/N, e.g. 3/8"))?;
        let (index, count) = (parse(index)?, parse(count)?);
        if count == 0 || index > count {
            return Err(format!("`{text}`: need N >= 1 and I in 0..N (or 1..=N)"));
        }
        // N/N is the last of 1-based numbering; 0 the first of 0-based.
        Ok(Shard { index: if index == count { 0 } else { index }, count })
    }
}

impl Shard {
    /// Everything, in one share.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    fn takes(&self, position: usize) -> bool {
        position % self.count == self.index
    }
}

/// One line of the output.
#[derive(Serialize)]
struct Line<'a> {
    image: &'a Path,
    #[serde(skip_serializing_if = "Option::is_none")]
    top: Option<&'a [Guess]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// What a streaming run did.
#[derive(Debug, Default)]
pub struct StreamSummary {
    pub classified: usize,
    pub failed: usize,
    /// Already in the `--skip-done` file.
    pub skipped: usize,
    /// Stopped by Ctrl-C before the end (the output so far is complete lines).
    pub interrupted: bool,
}

/// The images under `roots` in a fixed order: a file as given; a folder walked depth-first,
/// entries sorted by name, image files by extension only.
pub fn walk_images(roots: &[PathBuf]) -> impl Iterator<Item = Result<PathBuf>> + '_ {
    roots.iter().flat_map(|root| {
        let walker = walkdir::WalkDir::new(root).follow_links(true).sort_by_file_name();
        walker.into_iter().filter_map(|entry| match entry {
            Ok(entry) if entry.file_type().is_dir() => None,
            Ok(entry) => {
                let path = entry.into_path();
                let is_image = path.extension().is_some_and(|e| {
                    IMAGE_EXTENSIONS.contains(&e.to_string_lossy().to_lowercase().as_str())
                });
                // A file named on the command line is classified whatever its name.
                (is_image || path == *root).then_some(Ok(path))
            }
            Err(error) => Some(Err(anyhow::anyhow!("cannot walk {}: {error}", root.display()))),
        })
    })
}

/// The images already answered in a previous run's output, to skip. A line cut short by a
/// kill is removed from the file, so that the output appended next starts on a fresh line.
pub fn done_images(path: &Path) -> Result<HashSet<PathBuf>> {
    if !path.exists() {
        return Ok(HashSet::new());
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if complete < bytes.len() {
        let file = std::fs::OpenOptions::new().write(true).open(path)?;
        file.set_len(complete as u64)?;
    }
    let mut done = HashSet::new();
    for line in bytes[..complete].lines() {
        let line = line?;
        // Lines of other output, or of an older format, are not ours to interpret.
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line)
            && let Some(image) = value["image"].as_str()
        {
            done.insert(PathBuf::from(image));
        }
    }
    Ok(done)
}

/// Classifies every image under `roots` that this shard takes and `skip` does not hold,
/// writing one JSON line per image to `out`.
pub fn predict_stream(
    predictor: &Predictor,
    roots: &[PathBuf],
    top_k: usize,
    shard: Shard,
    skip: &HashSet<PathBuf>,
    out: &mut impl Write,
) -> Result<StreamSummary> {
    let mut summary = StreamSummary::default();
    let progress = Progress::open_ended("predict");
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut files = walk_images(roots).enumerate().filter(|(i, _)| shard.takes(*i)).map(|(_, f)| f);
    loop {
        chunk.clear();
        for file in files.by_ref() {
            let file = file?;
            if skip.contains(&file) {
                summary.skipped += 1;
            } else {
                chunk.push(file);
            }
            if chunk.len() == CHUNK {
                break;
            }
        }
        if chunk.is_empty() {
            break;
        }
        for (path, result) in chunk.iter().zip(predictor.classify_files(&chunk, top_k)?) {
            let line = match &result {
                Ok(prediction) => Line { image: path, top: Some(&prediction.top), error: None },
                Err(error) => Line { image: path, top: None, error: Some(format!("{error:#}")) },
            };
            serde_json::to_writer(&mut *out, &line)?;
            out.write_all(b"\n")?;
            if result.is_ok() { summary.classified += 1 } else { summary.failed += 1 }
        }
        out.flush()?;
        progress.update((summary.classified + summary.failed) as u64, || {
            format!("{} failed, {} skipped", summary.failed, summary.skipped)
        });
        if crate::support::interrupt::requested() {
            summary.interrupted = true;
            break;
        }
    }
    progress.finish();
    Ok(summary)
}

/// Fails when nothing at all was found to classify (a typo in a path, most likely).
pub fn ensure_found(summary: &StreamSummary, roots: &[PathBuf]) -> Result<()> {
    if summary.classified + summary.failed + summary.skipped == 0 && !summary.interrupted {
        bail!(
            "no images found under {}",
            roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_the_walk_without_overlap() {
        let shards: Vec<Shard> = ["1/3", "2/3", "3/3"].iter().map(|s| s.parse().unwrap()).collect();
        for position in 0..30 {
            assert_eq!(shards.iter().filter(|s| s.takes(position)).count(), 1);
        }
        assert_eq!("0/3".parse::<Shard>().unwrap(), "3/3".parse::<Shard>().unwrap());
        for bad in ["3", "4/3", "1/0", "a/b"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn done_images_are_read_and_a_cut_line_removed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("out.jsonl");
        std::fs::write(&file, "{\"image\":\"a.jpg\",\"top\":[]}\n{\"image\":\"b.jpg\",\"err")
            .unwrap();
        let done = done_images(&file).unwrap();
        assert_eq!(done, HashSet::from([PathBuf::from("a.jpg")]));
        assert!(std::fs::read_to_string(&file).unwrap().ends_with("[]}\n"));
    }

    #[test]
    fn the_walk_is_sorted_and_keeps_images_only() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b/2.jpg", "b/1.png", "a/3.JPG", "a/notes.txt"] {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"x").unwrap();
        }
        let found: Vec<String> = walk_images(&[dir.path().to_path_buf()])
            .map(|p| p.unwrap().strip_prefix(dir.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(found, ["a/3.JPG", "b/1.png", "b/2.jpg"]);
    }
}
