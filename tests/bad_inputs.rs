//! The bad-input matrix: a dataset generated here (never committed) with every kind of awkward
//! or broken file, and broken weight files and checkpoints. Each case gets a clear error or a
//! documented handling (RELIABILITY.md), never a panic.

mod common;

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageFormat, RgbImage};
use serde_json::Value;

fn mini_image(class: &str, index: usize) -> PathBuf {
    let folder = common::mini_dataset().join("Training").join(class);
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(folder).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files[index].clone()
}

fn encode(image: DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    image.write_to(&mut Cursor::new(&mut bytes), format).unwrap();
    bytes
}

fn cmyk_jpeg() -> Vec<u8> {
    let (w, h) = (60u16, 40u16);
    let data: Vec<u8> =
        (0..w as usize * h as usize).flat_map(|i| [(i % 200) as u8, 30, 60, 10]).collect();
    let mut bytes = Vec::new();
    jpeg_encoder::Encoder::new(&mut bytes, 90)
        .encode(&data, w, h, jpeg_encoder::ColorType::Cmyk)
        .unwrap();
    bytes
}

/// Good-but-awkward images that must all decode, and broken ones that must all be reported.
struct Matrix {
    root: tempfile::TempDir,
    awkward: Vec<&'static str>,
    broken: Vec<&'static str>,
}

fn build_matrix() -> Matrix {
    let root = tempfile::tempdir().unwrap();
    let apple = root.path().join("Training/Äpfel grün");
    let pear = root.path().join("Training/Pear");
    std::fs::create_dir_all(&apple).unwrap();
    std::fs::create_dir_all(&pear).unwrap();
    for i in 0..12 {
        std::fs::copy(mini_image("Apple Granny Smith", i), apple.join(format!("{i}_100.jpg")))
            .unwrap();
        std::fs::copy(mini_image("Pear", i), pear.join(format!("{i}_100.jpg"))).unwrap();
    }
    let sample = std::fs::read(mini_image("Apple Granny Smith", 20)).unwrap();
    let decoded = image::load_from_memory(&sample).unwrap();
    let write = |name: &str, bytes: &[u8]| std::fs::write(apple.join(name), bytes).unwrap();

    // Awkward but valid.
    write("a name with spaces ü.jpg", &sample);
    write("alpha.png", &encode(DynamicImage::ImageRgba8(decoded.to_rgba8()), ImageFormat::Png));
    write("grayscale.png", &encode(DynamicImage::ImageLuma8(decoded.to_luma8()), ImageFormat::Png));
    write(
        "sixteen-bit.png",
        &encode(DynamicImage::ImageRgb16(decoded.to_rgb16()), ImageFormat::Png),
    );
    write("cmyk.jpg", &cmyk_jpeg());
    write("lossless.webp", &encode(decoded.clone(), ImageFormat::WebP));
    write(
        "not-square-37x51.jpg",
        &encode(
            DynamicImage::ImageRgb8(RgbImage::from_pixel(37, 51, image::Rgb([200, 180, 20]))),
            ImageFormat::Jpeg,
        ),
    );
    write(
        "huge-10000x10000.png",
        &encode(
            DynamicImage::ImageRgb8(RgbImage::from_pixel(
                10_000,
                10_000,
                image::Rgb([250, 250, 250]),
            )),
            ImageFormat::Png,
        ),
    );
    std::os::unix::fs::symlink(apple.join("0_100.jpg"), apple.join("symlinked.jpg")).unwrap();
    // Broken.
    write("truncated.jpg", &sample[..sample.len() / 2]);
    // Valid headers, damaged image data: decoders turn these into grey or noisy pictures
    // without an error.
    let sos = sample.windows(2).rposition(|w| w == [0xFF, 0xDA]).unwrap();
    let data = sos + 2 + u16::from_be_bytes([sample[sos + 2], sample[sos + 3]]) as usize;
    let mut zeroed = sample.clone();
    let end = zeroed.len() - 2;
    zeroed[data..end].fill(0);
    write("zeroed-data.jpg", &zeroed);
    let mut garbage = sample.clone();
    for (i, byte) in garbage[data..end].iter_mut().enumerate() {
        *byte = (i * 131 % 251) as u8;
    }
    write("garbage-data.jpg", &garbage);
    write("zero-bytes.jpg", b"");
    write("text.jpg", b"this is not an image\n");
    // Formats that are not read: taken as images, so that each is named with its fix.
    write("iphone.HEIC", b"\0\0\0\x18ftypheic\0\0\0\0mif1heic");
    write("animation.gif", b"GIF89a\x01\0\x01\0\0\0\0;");
    std::os::unix::fs::symlink(apple.join("missing.jpg"), apple.join("dangling.jpg")).unwrap();
    // Not an image by extension: ignored, and said so.
    write("notes.txt", b"picked on Tuesday");

    Matrix {
        root,
        awkward: vec![
            "a name with spaces ü.jpg",
            "alpha.png",
            "grayscale.png",
            "sixteen-bit.png",
            "cmyk.jpg",
            "lossless.webp",
            "not-square-37x51.jpg",
            "huge-10000x10000.png",
            "symlinked.jpg",
        ],
        broken: vec![
            "truncated.jpg",
            "zero-bytes.jpg",
            "text.jpg",
            "iphone.HEIC",
            "animation.gif",
            "dangling.jpg",
            "zeroed-data.jpg",
            "garbage-data.jpg",
        ],
    }
}

fn stderr_of(command: &mut assert_cmd::Command) -> String {
    let output = command.assert().failure().code(1).get_output().clone();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "a panic instead of an error: {stderr}");
    stderr
}

fn train_command(data: &Path, out: &Path) -> assert_cmd::Command {
    let mut command = common::fruitlab();
    command
        .args(["train", "--mode", "frozen", "--epochs", "1", "--data"])
        .arg(data)
        .arg("--out")
        .arg(out);
    command
}

#[test]
fn inspect_lists_every_problem_and_train_refuses_or_skips_bad_images() {
    common::cached_weights();
    let matrix = build_matrix();
    let report = common::stdout_json(
        common::fruitlab().args(["data", "inspect", "--json"]).arg(matrix.root.path()),
    );
    let split = &report["splits"][0];
    let unreadable: Vec<String> = split["unreadable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            Path::new(b["path"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let mut expected: Vec<String> = matrix.broken.iter().map(|s| s.to_string()).collect();
    expected.sort();
    let mut found = unreadable.clone();
    found.sort();
    assert_eq!(found, expected, "exactly the broken files are unreadable");
    assert_eq!(split["image_sizes"]["10000x10000"], 1);
    assert_eq!(split["image_sizes"]["37x51"], 1);
    assert_eq!(split["image_sizes"]["60x40"], 1, "the CMYK JPEG decodes");
    assert!(split["ignored_files"][0].as_str().unwrap().ends_with("notes.txt"));
    assert_eq!(report["classes"][0], "Pear");
    assert_eq!(report["classes"][1], "Äpfel grün");

    // Training refuses the dataset and names every broken file ...
    let runs = tempfile::tempdir().unwrap();
    let stderr = stderr_of(&mut train_command(matrix.root.path(), &runs.path().join("refused")));
    for name in &matrix.broken {
        assert!(stderr.contains(name), "{name} not named in: {stderr}");
    }
    assert!(stderr.contains("--skip-bad-images"), "{stderr}");
    assert!(stderr.contains("HEIC images are not read"), "{stderr}");
    assert!(!runs.path().join("refused").exists(), "a refused run leaves no folder");
    // The same from `compare`, which makes both runs' folders (and its --out) before training.
    let compare = runs.path().join("compared");
    let stderr = stderr_of(
        common::fruitlab()
            .args(["compare", "--mode", "frozen", "--epochs", "1", "--data"])
            .arg(matrix.root.path())
            .arg("--out")
            .arg(&compare),
    );
    assert!(stderr.contains("truncated.jpg"), "{stderr}");
    assert!(!compare.exists(), "a refused compare leaves no folder");

    // ... or, when asked, leaves them out and says so in the log and the configuration.
    let run = runs.path().join("skipped");
    train_command(matrix.root.path(), &run).arg("--skip-bad-images").assert().success();
    let config: Value = common::read_json(&run.join("config.json"));
    let skipped = config["dataset"]["skipped_images"].as_array().unwrap();
    assert_eq!(skipped.len(), matrix.broken.len(), "{config}");
    let log = std::fs::read_to_string(run.join("train.log")).unwrap();
    for name in &matrix.broken {
        assert!(log.contains(name), "{name} not in train.log");
    }
    let kept = config["dataset"]["train_images"].as_u64().unwrap()
        + config["dataset"]["val_images"].as_u64().unwrap();
    assert_eq!(kept as usize, 24 + matrix.awkward.len(), "every awkward image was used");
}

#[test]
fn dataset_structure_errors_are_clear() {
    let runs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let copy = |class: &str, split: &str| {
        let folder = data.path().join(split).join(class);
        std::fs::create_dir_all(&folder).unwrap();
        for i in 0..3 {
            std::fs::copy(mini_image("Banana", i), folder.join(format!("{i}_100.jpg"))).unwrap();
        }
    };

    // A root with images but no class folders.
    let flat = data.path().join("flat");
    std::fs::create_dir_all(&flat).unwrap();
    std::fs::copy(mini_image("Banana", 0), flat.join("0_100.jpg")).unwrap();
    let stderr = stderr_of(&mut train_command(&flat, &runs.path().join("a")));
    assert!(stderr.contains("no class folders"), "{stderr}");

    // Test/ classes that differ from Training/.
    copy("Banana", "Training");
    copy("Kiwi", "Training");
    copy("Banana", "Test");
    copy("Lemon", "Test");
    let stderr = stderr_of(&mut train_command(data.path(), &runs.path().join("b")));
    assert!(
        stderr.contains("differ") && stderr.contains("Kiwi") && stderr.contains("Lemon"),
        "{stderr}"
    );

    // Not one image whose size can be read: said, naming a file, not chosen from "0 px".
    let unreadable = data.path().join("unreadable");
    for class in ["Fig", "Plum"] {
        std::fs::create_dir_all(unreadable.join("Training").join(class)).unwrap();
        std::fs::write(unreadable.join("Training").join(class).join("x.jpg"), b"").unwrap();
    }
    let stderr = stderr_of(&mut train_command(&unreadable, &runs.path().join("u")));
    assert!(stderr.contains("could be read") && stderr.contains("x.jpg"), "{stderr}");
    assert!(!stderr.contains("0 px"), "{stderr}");

    // An empty class folder.
    std::fs::remove_dir_all(data.path().join("Test")).unwrap();
    std::fs::create_dir_all(data.path().join("Training/Empty")).unwrap();
    let stderr = stderr_of(&mut train_command(data.path(), &runs.path().join("c")));
    assert!(stderr.contains("without images") && stderr.contains("Empty"), "{stderr}");

    // A batch that cannot fit in memory is refused before any work.
    std::fs::remove_dir_all(data.path().join("Training/Empty")).unwrap();
    let stderr = stderr_of(
        common::fruitlab()
            .args(["train", "--batch-size", "4096", "--image-size", "1024", "--data"])
            .arg(data.path())
            .arg("--out")
            .arg(runs.path().join("d")),
    );
    assert!(stderr.contains("lower --batch-size"), "{stderr}");
}

#[test]
fn broken_weight_files_name_the_problem() {
    let cached = common::cached_weights();
    let dir = tempfile::tempdir().unwrap();
    let dog = common::testdata("dog.jpg");
    let predict = |weights: &Path| {
        let mut command = common::fruitlab();
        command.args(["predict", "--weights"]).arg(weights).arg(&dog);
        command
    };

    let bytes = std::fs::read(&cached).unwrap();
    let truncated = dir.path().join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let stderr = stderr_of(&mut predict(&truncated));
    assert!(stderr.contains("not a valid safetensors file"), "{stderr}");

    let mut tensors = fruitlab::weights::NamedTensors::read_safetensors(&cached).unwrap();
    let kernel = tensors.tensors.remove("res3a_branch2b/kernel").unwrap();
    tensors.insert("res3a_branch2b/kernel", vec![128, 128, 1, 9], kernel.values.clone());
    let wrong_shape = dir.path().join("wrong-shape.safetensors");
    tensors.write_safetensors(&wrong_shape).unwrap();
    let stderr = stderr_of(&mut predict(&wrong_shape));
    assert!(
        stderr.contains("res3a_branch2b/kernel")
            && stderr.contains("[128, 128, 1, 9]")
            && stderr.contains("[128, 128, 3, 3]"),
        "{stderr}"
    );

    tensors.tensors.remove("res3a_branch2b/kernel");
    tensors.insert("res3a_branch2b/weights", vec![128, 128, 3, 3], kernel.values);
    let wrong_name = dir.path().join("wrong-name.safetensors");
    tensors.write_safetensors(&wrong_name).unwrap();
    let stderr = stderr_of(&mut predict(&wrong_name));
    assert!(stderr.contains("res3a_branch2b/kernel") && stderr.contains("missing"), "{stderr}");

    let not_weights = dir.path().join("model.json");
    std::fs::write(&not_weights, b"{\"format\": \"layers-model\"}").unwrap();
    let stderr = stderr_of(&mut predict(&not_weights));
    assert!(stderr.contains("not a TF.js layers model.json"), "{stderr}");

    // `--last` names a run's checkpoint; with the ImageNet weights it is a mistake, not ignored.
    let stderr = stderr_of(predict(&cached).arg("--last"));
    assert!(stderr.contains("--last") && stderr.contains("--run"), "{stderr}");
}

#[test]
fn checkpoint_of_another_model_is_refused() {
    common::cached_weights();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    train_command(&common::mini_dataset(), &run).assert().success();
    // Pretend the run was for three classes: its checkpoint (ten classes) no longer fits.
    std::fs::write(run.join("classes.json"), br#"["a", "b", "c"]"#).unwrap();
    let stderr = stderr_of(
        common::fruitlab().args(["predict", "--run"]).arg(&run).arg(common::testdata("dog.jpg")),
    );
    assert!(stderr.contains("for 10 classes") && stderr.contains("has 3"), "{stderr}");
}
