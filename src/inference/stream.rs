//! Prediction at scale: walk a folder tree of any size in a fixed order, classify the images
//! in chunks, and stream one JSON line per image (its classes, or the error for a bad file).
//! Memory stays bounded by one chunk; an interrupted run resumes from its own output
//! (`--skip-done`); `--shard I/N` gives each of N machines a fixed share of the files.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::{Guess, Predictor};
use crate::data::dataset::is_image_name;
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

/// One line of the output: the image (as walked; a name that is not UTF-8 printed lossily),
/// the model that answered, and its classes or the error.
#[derive(Serialize)]
struct Line<'a> {
    image: String,
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    unknown: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top: Option<&'a [Guess]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// How every line of our output starts, even one cut short by a kill.
const LINE_START: &str = "{\"image\":";

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

/// One entry of a walk: an image file, or a path that cannot be classified and why.
pub enum Entry {
    Image(PathBuf),
    Bad(PathBuf, String),
}

/// The images under `roots` in a fixed order: a file as given; a folder walked depth-first,
/// entries sorted by name, image files by extension only, symbolic links followed once (a
/// link back to a folder being walked is reported, not followed). What cannot be walked or
/// has a name that is not UTF-8 is a bad entry; the walk goes on.
pub fn walk_images(roots: &[PathBuf]) -> impl Iterator<Item = Entry> + '_ {
    roots.iter().flat_map(|root| {
        let walker = walkdir::WalkDir::new(root).follow_links(true).sort_by_file_name();
        walker.into_iter().filter_map(|entry| match entry {
            Ok(entry) if entry.file_type().is_dir() => None,
            Ok(entry) => {
                let path = entry.into_path();
                // A file named on the command line is classified whatever its name.
                if !(is_image_name(&path) || path == *root) {
                    return None;
                }
                if path.to_str().is_none() {
                    return Some(Entry::Bad(path, "the file name is not valid UTF-8".into()));
                }
                Some(Entry::Image(path))
            }
            Err(error) => {
                let path = error.path().map_or_else(|| root.clone(), Path::to_path_buf);
                let why = match error.loop_ancestor() {
                    Some(ancestor) => format!(
                        "a symbolic link back to {}, a folder already being walked: not followed",
                        ancestor.display()
                    ),
                    None => format!(
                        "cannot be read: {}",
                        error.io_error().map_or(error.to_string(), |e| e.to_string())
                    ),
                };
                Some(Entry::Bad(path, why))
            }
        })
    })
}

/// The key an image is known by in the output: its path without `.` components, so that
/// `./photos/a.jpg` and `photos/a.jpg` are the same image.
pub fn image_key(path: &Path) -> String {
    let normal: PathBuf =
        path.components().filter(|c| !matches!(c, std::path::Component::CurDir)).collect();
    normal.to_string_lossy().into_owned()
}

/// The images an earlier run's output already answered.
#[derive(Debug, Default)]
pub struct Done {
    /// By [`image_key`].
    pub images: HashSet<String>,
    /// The file ends in a line cut short by a kill (its image is classified again).
    pub ends_mid_line: bool,
}

/// The images already answered in `path`, an earlier output of `predict --jsonl` by the
/// model `model`. The file is only read. A line cut short by a kill is ignored; a file that is
/// not such an output, or one written by another model, is refused, naming it.
pub fn done_images(path: &Path, model: &str) -> Result<Done> {
    if !path.exists() {
        return Ok(Done::default());
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let not_ours = |why: String| {
        anyhow::anyhow!(
            "{} is not an output of `fruitlab predict --jsonl` ({why}): --skip-done reads only such a file, and has left this one as it is",
            path.display()
        )
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| not_ours("it is not UTF-8 text".into()))?;
    let mut done =
        Done { ends_mid_line: !text.is_empty() && !text.ends_with('\n'), ..Done::default() };
    for (number, line) in text.lines().enumerate().map(|(i, line)| (i + 1, line)) {
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = match serde_json::from_str(line) {
            Ok(value) => value,
            // A line cut short by a kill: its image is classified again.
            Err(_) if line.starts_with(LINE_START) => continue,
            Err(_) => return Err(not_ours(format!("line {number} is not one of its JSON lines"))),
        };
        let (Some(image), Some(writer)) = (value["image"].as_str(), value["model"].as_str()) else {
            return Err(not_ours(format!("line {number} names no image and model")));
        };
        if writer != model {
            bail!(
                "{} holds answers of another model ({writer}, line {number}), not of this one ({model}): --skip-done would mix them; write this model's answers to a new file",
                path.display()
            );
        }
        done.images.insert(image_key(Path::new(image)));
    }
    Ok(done)
}

/// Classifies every image under `roots` that this shard takes and `skip` does not hold,
/// writing one JSON line per image (or bad entry) to `out`.
pub fn predict_stream(
    predictor: &Predictor,
    roots: &[PathBuf],
    top_k: usize,
    shard: Shard,
    skip: &HashSet<String>,
    out: &mut impl Write,
) -> Result<StreamSummary> {
    let mut summary = StreamSummary::default();
    let progress = Progress::open_ended("predict");
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut entries = walk_images(roots).enumerate().filter(|(i, _)| shard.takes(*i));
    let write_line = |out: &mut dyn Write, line: &Line| -> Result<()> {
        serde_json::to_writer(&mut *out, line)?;
        out.write_all(b"\n")?;
        Ok(())
    };
    loop {
        chunk.clear();
        for (_, entry) in entries.by_ref() {
            match entry {
                Entry::Bad(path, error) => {
                    let line = Line {
                        image: path.to_string_lossy().into_owned(),
                        model: &predictor.identity,
                        top: None,
                        unknown: None,
                        error: Some(error),
                    };
                    write_line(out, &line)?;
                    summary.failed += 1;
                }
                Entry::Image(path) if skip.contains(&image_key(&path)) => summary.skipped += 1,
                Entry::Image(path) => chunk.push(path),
            }
            if chunk.len() == CHUNK {
                break;
            }
        }
        if chunk.is_empty() {
            break;
        }
        for (path, result) in chunk.iter().zip(predictor.classify_files(&chunk, top_k)?) {
            let image = path.to_string_lossy().into_owned();
            let model = predictor.identity.as_str();
            let line = match &result {
                Ok(prediction) => Line {
                    image,
                    model,
                    unknown: prediction.unknown,
                    top: Some(&prediction.top),
                    error: None,
                },
                Err(error) => Line {
                    image,
                    model,
                    unknown: None,
                    top: None,
                    error: Some(format!("{error:#}")),
                },
            };
            write_line(out, &line)?;
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
    out.flush()?;
    progress.finish();
    Ok(summary)
}

/// Fails when the walk found nothing at all (a typo in a path, most likely); a shard that
/// got no share of a non-empty walk has simply nothing to do.
pub fn ensure_found(summary: &StreamSummary, roots: &[PathBuf]) -> Result<()> {
    let anything = summary.classified + summary.failed + summary.skipped > 0
        || summary.interrupted
        || walk_images(roots).next().is_some();
    if !anything {
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
    fn done_images_are_only_read_and_refuse_what_is_not_ours() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("out.jsonl");
        let ours =
            "{\"image\":\"./a.jpg\",\"model\":\"sha256:1\",\"top\":[]}\n{\"image\":\"b.jpg\",\"mod";
        std::fs::write(&file, ours).unwrap();
        let done = done_images(&file, "sha256:1").unwrap();
        assert_eq!(done.images, HashSet::from(["a.jpg".to_string()]));
        assert!(done.ends_mid_line);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), ours, "the file is left as it is");
        let error = done_images(&file, "sha256:2").unwrap_err().to_string();
        assert!(error.contains("another model") && error.contains("sha256:1"), "{error}");
        for theirs in [&b"my notes\nline two\n"[..], &[0xff, 0xfe, 0x00, 0x41], b"{\"x\": 1}\n"] {
            std::fs::write(&file, theirs).unwrap();
            let error = done_images(&file, "sha256:1").unwrap_err().to_string();
            assert!(error.contains("out.jsonl") && error.contains("not an output"), "{error}");
            assert_eq!(std::fs::read(&file).unwrap(), theirs, "a file not ours is never changed");
        }
        assert_eq!(image_key(Path::new("./pdir/./x.jpg")), image_key(Path::new("pdir/x.jpg")));
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
            .map(|entry| match entry {
                Entry::Image(p) => p.strip_prefix(dir.path()).unwrap().display().to_string(),
                Entry::Bad(p, why) => panic!("{}: {why}", p.display()),
            })
            .collect();
        assert_eq!(found, ["a/3.JPG", "b/1.png", "b/2.jpg"]);
    }
}
