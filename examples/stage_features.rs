//! Writes, for every image of a folder of class folders, the frozen ImageNet backbone's
//! candidate features for a linear top: the global average of stages 3, 4 and 5, the global
//! maximum of stage 5, and the global average of stage 5 on the mirrored image. Read by
//! `bench/stage_features.py`, which measures which of them a linear top gains from.
//!
//!     cargo run --release --example stage_features -- FOLDER OUT_PREFIX [SIZE]
//!
//! `OUT_PREFIX.f32`: one row of little-endian f32 per image (in fruitlab's reading order), the blocks in the order of
//! [`WIDTHS`]; `OUT_PREFIX.labels`: the class index and path of each row.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::tensor::Tensor;
use fruitlab::data::ImageFolder;
use fruitlab::model::resnet::global_average_pool;
use fruitlab::model::{Layout, ResNet50};
use fruitlab::preprocess::{InputSpec, batch_tensor};

/// The widths of a row's blocks: the average of stages 3, 4 and 5, the maximum of stage 5,
/// the average of stage 5 on the mirrored image.
const WIDTHS: [usize; 5] = [512, 1024, 2048, 2048, 2048];
const BATCH: usize = 16;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(folder), Some(out)) = (args.first(), args.get(1)) else {
        bail!("usage: stage_features FOLDER OUT_PREFIX [SIZE]");
    };
    let size = args.get(2).map_or(Ok(288), |s| s.parse().context("SIZE is a number of pixels"))?;
    let device = fruitlab::compute::Compute::default().setup()?;
    let backbone = ResNet50::new(Layout::Keras, &device);
    let backbone = fruitlab::weights::imagenet_backbone(backbone, None, &device)?.inference();
    // The frozen photo default's input: ImageNet's centre crop of the shorter side.
    let spec = InputSpec { size, ..InputSpec::IMAGENET };
    let images = ImageFolder::scan(Path::new(folder))?.images;
    let mut rows = BufWriter::new(File::create(format!("{out}.f32"))?);
    let mut labels = BufWriter::new(File::create(format!("{out}.labels"))?);
    for chunk in images.chunks(BATCH) {
        let loaded =
            chunk.iter().map(|image| spec.load(&image.path)).collect::<Result<Vec<_>>>()?;
        let mirrored: Vec<_> = loaded.iter().map(image::imageops::flip_horizontal).collect();
        let input = |images: &[image::RgbImage]| {
            let raw: Vec<&[u8]> = images.iter().map(|image| image.as_raw().as_slice()).collect();
            batch_tensor(&raw, size, spec.normalization, &device)
        };
        let mut blocks = stage_blocks(&backbone, input(&loaded));
        blocks.push(values(global_average_pool(backbone.feature_map(input(&mirrored)))));
        for (i, image) in chunk.iter().enumerate() {
            for (block, width) in blocks.iter().zip(WIDTHS) {
                for value in &block[i * width..(i + 1) * width] {
                    rows.write_all(&value.to_le_bytes())?;
                }
            }
            writeln!(labels, "{}\t{}", image.label, image.path.display())?;
        }
    }
    Ok(())
}

/// The first four blocks of a row (see [`WIDTHS`]) for a batch, each `[batch * width]`.
fn stage_blocks(backbone: &ResNet50, input: Tensor<4>) -> Vec<Vec<f32>> {
    let mut x = backbone.stem_map(input);
    let mut blocks = Vec::new();
    for (index, stage) in backbone.stages.iter().enumerate() {
        x = stage.blocks.iter().fold(x, |x, block| block.forward(x));
        if index >= 1 {
            blocks.push(values(global_average_pool(x.clone())));
        }
    }
    blocks.push(values(x.max_dim(1).max_dim(2)));
    blocks
}

fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data().try_into_vec::<f32>().expect("f32 tensor")
}
