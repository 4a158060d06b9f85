//! Times every distinct ResNet-50 (Keras layout) convolution at batch 32, forward (with fused
//! bias and ReLU), input gradient and weight gradient, so that kernel changes can be judged per
//! layer and for a whole training step.
//!
//! Run: `cargo run --release -p fruitlab-kernels --example resnet50_layers [ARITHMETIC] [SIZE]`
//! with ARITHMETIC `f32` (default), `bf16` (the fastest bf16 kernel), `amx` or `avx512-bf16`,
//! and SIZE the input's side in pixels (default 100). Uses all cores; set `RAYON_NUM_THREADS`
//! to change that.

use std::time::Instant;

use fruitlab_kernels::bf16::{self, Bf16Kernel};
use fruitlab_kernels::{
    Activation, ConvShape, Gemm, conv2d_backward_input, conv2d_backward_weight, conv2d_forward,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const BATCH: usize = 32;
const WARMUPS: usize = 2;
const RUNS: usize = 5;

/// One distinct convolution and how many times the network uses it.
struct Layer {
    name: &'static str,
    count: usize,
    shape: ConvShape,
}

fn layer(
    name: &'static str,
    count: usize,
    in_hw: usize,
    channels: (usize, usize),
    k: usize,
    stride: usize,
) -> Layer {
    let shape = ConvShape {
        batch: BATCH,
        in_h: in_hw,
        in_w: in_hw,
        in_c: channels.0,
        out_c: channels.1,
        kernel_h: k,
        kernel_w: k,
        stride_h: stride,
        stride_w: stride,
        pad_h: k / 2,
        pad_w: k / 2,
    };
    Layer { name, count, shape }
}

/// Keras ResNet-50 at `size` pixels: the stem and max pooling each halve the size (rounding
/// up), and so does each later stage's strided 1x1 convolution (100: 50, 25, 13, 7, 4).
fn resnet50(size: usize) -> Vec<Layer> {
    let half = |n: usize| n.div_ceil(2);
    let s2 = half(half(size));
    let (s3, s4, s5) = (half(s2), half(half(s2)), half(half(half(s2))));
    vec![
        layer("stem 7x7/2 3->64", 1, size, (3, 64), 7, 2),
        layer("s2 1x1 64->64", 1, s2, (64, 64), 1, 1),
        layer("s2 3x3 64->64", 3, s2, (64, 64), 3, 1),
        layer("s2 1x1 64->256 (+sc)", 4, s2, (64, 256), 1, 1),
        layer("s2 1x1 256->64", 2, s2, (256, 64), 1, 1),
        layer("s3 1x1/2 256->128", 1, s2, (256, 128), 1, 2),
        layer("s3 sc 1x1/2 256->512", 1, s2, (256, 512), 1, 2),
        layer("s3 3x3 128->128", 4, s3, (128, 128), 3, 1),
        layer("s3 1x1 128->512", 4, s3, (128, 512), 1, 1),
        layer("s3 1x1 512->128", 3, s3, (512, 128), 1, 1),
        layer("s4 1x1/2 512->256", 1, s3, (512, 256), 1, 2),
        layer("s4 sc 1x1/2 512->1024", 1, s3, (512, 1024), 1, 2),
        layer("s4 3x3 256->256", 6, s4, (256, 256), 3, 1),
        layer("s4 1x1 256->1024", 6, s4, (256, 1024), 1, 1),
        layer("s4 1x1 1024->256", 5, s4, (1024, 256), 1, 1),
        layer("s5 1x1/2 1024->512", 1, s4, (1024, 512), 1, 2),
        layer("s5 sc 1x1/2 1024->2048", 1, s4, (1024, 2048), 1, 2),
        layer("s5 3x3 512->512", 3, s5, (512, 512), 3, 1),
        layer("s5 1x1 512->2048", 3, s5, (512, 2048), 1, 1),
        layer("s5 1x1 2048->512", 2, s5, (2048, 512), 1, 1),
    ]
}

/// The arithmetic named on the command line.
fn arithmetic(name: &str) -> Gemm {
    let kernel = |kernel: Bf16Kernel| {
        assert!(kernel.is_available(), "{} cannot run here: {:?}", kernel.name(), bf16::support());
        Gemm::Bf16(kernel)
    };
    match name {
        "f32" => Gemm::F32,
        "bf16" => kernel(bf16::support().best.expect("this CPU has no bf16 kernel")),
        "amx" => kernel(Bf16Kernel::Amx),
        "avx512-bf16" => kernel(Bf16Kernel::Avx512),
        other => panic!("`{other}`: use f32, bf16, amx or avx512-bf16"),
    }
}

fn random(len: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// Median wall time of `f` in milliseconds, after warm-ups.
fn median_ms(mut f: impl FnMut()) -> f64 {
    (0..WARMUPS).for_each(|_| f());
    let mut times: Vec<f64> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[RUNS / 2]
}

/// Median times of forward, input gradient and weight gradient.
fn time_layer(gemm: Gemm, s: &ConvShape, rng: &mut ChaCha8Rng) -> [f64; 3] {
    let (x, w, b, g) = (
        random(s.input_len(), rng),
        random(s.weight_len(), rng),
        random(s.out_c, rng),
        random(s.output_len(), rng),
    );
    let (mut y, mut dx, mut dw) =
        (vec![0.0; s.output_len()], vec![0.0; s.input_len()], vec![0.0; s.weight_len()]);
    [
        median_ms(|| conv2d_forward(gemm, s, &x, &w, Some(&b), None, Activation::Relu, &mut y)),
        median_ms(|| conv2d_backward_input(gemm, s, &g, &w, &mut dx)),
        median_ms(|| conv2d_backward_weight(gemm, s, &x, &g, &mut dw)),
    ]
}

fn gflops(flops: f64, ms: f64) -> f64 {
    flops / ms / 1e6
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let gemm = arithmetic(args.get(1).map_or("f32", String::as_str));
    let size: usize = args.get(2).map_or(100, |s| s.parse().expect("SIZE is a number of pixels"));
    println!(
        "ResNet-50 (Keras) convolutions, batch {BATCH}, {size}x{size} input, {}, {} threads, median of {RUNS}",
        gemm.name(),
        rayon::current_num_threads()
    );
    println!(
        "{:<24} {:>3} {:>6} | {:>8} {:>6} | {:>8} {:>6} | {:>8} {:>6}",
        "layer", "n", "GFLOP", "fwd ms", "GF/s", "dx ms", "GF/s", "dw ms", "GF/s"
    );
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    // Network totals, each layer weighted by its count: (ms, flops) for forward and backward.
    let (mut fwd, mut bwd) = ((0.0, 0.0), (0.0, 0.0));
    for Layer { name, count, shape } in resnet50(size) {
        let flops = shape.flops();
        let [f, dx, dw] = time_layer(gemm, &shape, &mut rng);
        println!(
            "{name:<24} {count:>3} {:>6.2} | {f:>8.2} {:>6.0} | {dx:>8.2} {:>6.0} | {dw:>8.2} {:>6.0}",
            flops / 1e9,
            gflops(flops, f),
            gflops(flops, dx),
            gflops(flops, dw),
        );
        let n = count as f64;
        fwd = (fwd.0 + n * f, fwd.1 + n * flops);
        // The stem's input gradient is never needed in training (its input is the image).
        let dx = if shape.in_c == 3 { (0.0, 0.0) } else { (dx, flops) };
        bwd = (bwd.0 + n * (dx.0 + dw), bwd.1 + n * (dx.1 + flops));
    }
    let step = (fwd.0 + bwd.0, fwd.1 + bwd.1);
    println!("forward total:            {:>8.1} ms {:>6.0} GFLOP/s", fwd.0, gflops(fwd.1, fwd.0));
    println!(
        "forward+backward total:   {:>8.1} ms {:>6.0} GFLOP/s",
        step.0,
        gflops(step.1, step.0)
    );
    println!("(totals weight each layer by its count; they exclude the stem's input gradient)");
}
