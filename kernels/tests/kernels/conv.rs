//! Fast convolution kernels against the naive references, on every ResNet-50 convolution
//! configuration at reduced size, awkward shapes, and several thread counts.

use fruitlab_kernels::{
    Activation, ConvShape, Gemm, activation_backward, bias_backward, conv2d_backward_input,
    conv2d_backward_weight, conv2d_forward,
};

use crate::reference;
use crate::util::{assert_close, random, to_f64, with_threads};

/// Thread counts each case runs under: serial, the GEMM-parallel path for small problems,
/// and an odd count that does not divide the tile counts.
pub const THREADS: [usize; 3] = [1, 2, 3];

/// A square-kernel, square-stride convolution: `(batch, in_hw, in_c, out_c, k, stride, pad)`.
fn square(
    batch: usize,
    in_hw: usize,
    in_c: usize,
    out_c: usize,
    k: usize,
    stride: usize,
    pad: usize,
) -> ConvShape {
    ConvShape {
        batch,
        in_h: in_hw,
        in_w: in_hw,
        in_c,
        out_c,
        kernel_h: k,
        kernel_w: k,
        stride_h: stride,
        stride_w: stride,
        pad_h: pad,
        pad_w: pad,
    }
}

/// ResNet-50 configurations (Keras layout, plus torchvision's 3x3 stride 2) at small sizes.
pub fn resnet_shapes() -> Vec<(&'static str, ConvShape)> {
    vec![
        ("stem 7x7/2 50x50", square(2, 50, 3, 64, 7, 2, 3)),
        ("stem 7x7/2 25x25", square(1, 25, 3, 64, 7, 2, 3)),
        ("stem 7x7/2 13x13", square(3, 13, 3, 17, 7, 2, 3)),
        ("1x1 7x7 64->17", square(3, 7, 64, 17, 1, 1, 0)),
        ("1x1 13x13 128->64", square(2, 13, 128, 64, 1, 1, 0)),
        ("1x1 4x4 17->128", square(1, 4, 17, 128, 1, 1, 0)),
        ("1x1 25x25 64->256", square(2, 25, 64, 256, 1, 1, 0)),
        ("1x1/2 13x13 64->128", square(2, 13, 64, 128, 1, 2, 0)),
        ("1x1/2 7x7 17->64", square(3, 7, 17, 64, 1, 2, 0)),
        ("1x1/2 4x4 128->17", square(1, 4, 128, 17, 1, 2, 0)),
        ("1x1/2 25x25 3->64", square(2, 25, 3, 64, 1, 2, 0)),
        ("3x3 13x13 64->64", square(2, 13, 64, 64, 3, 1, 1)),
        ("3x3 7x7 17->128", square(3, 7, 17, 128, 3, 1, 1)),
        ("3x3 4x4 128->64", square(1, 4, 128, 64, 3, 1, 1)),
        ("3x3 25x25 3->17", square(2, 25, 3, 17, 3, 1, 1)),
        ("3x3 50x50 64->17", square(1, 50, 64, 17, 3, 1, 1)),
        ("3x3 4x4 batch 8", square(8, 4, 32, 16, 3, 1, 1)),
        ("3x3/2 13x13 64->128", square(2, 13, 64, 128, 3, 2, 1)),
        ("3x3/2 7x7 17->64", square(3, 7, 17, 64, 3, 2, 1)),
        ("3x3/2 4x4 128->17", square(1, 4, 128, 17, 3, 2, 1)),
        ("3x3/2 25x25 3->64", square(2, 25, 3, 64, 3, 2, 1)),
    ]
}

pub fn awkward_shapes() -> Vec<(&'static str, ConvShape)> {
    vec![
        ("1x1 spatial, 1x1 kernel", square(2, 1, 64, 3, 1, 1, 0)),
        ("1x1 spatial, 3x3 pad 1", square(1, 1, 64, 64, 3, 1, 1)),
        ("kernel == input 3x3", square(2, 3, 17, 5, 3, 1, 0)),
        ("kernel == input 7x7", square(1, 7, 3, 64, 7, 2, 0)),
        ("out_c 1", square(2, 13, 17, 1, 3, 1, 1)),
        ("in_c 1, batch 1", square(1, 9, 1, 8, 3, 2, 1)),
        ("padding wider than kernel reach", square(2, 4, 3, 4, 3, 1, 3)),
        ("stride 3 > kernel", square(2, 10, 5, 6, 2, 3, 0)),
        (
            "non-square 5x9, 1x3 kernel, strides 1x2",
            ConvShape {
                batch: 2,
                in_h: 5,
                in_w: 9,
                in_c: 6,
                out_c: 7,
                kernel_h: 1,
                kernel_w: 3,
                stride_h: 1,
                stride_w: 2,
                pad_h: 0,
                pad_w: 1,
            },
        ),
        (
            "non-square 8x3, 5x2 kernel",
            ConvShape {
                batch: 3,
                in_h: 8,
                in_w: 3,
                in_c: 4,
                out_c: 9,
                kernel_h: 5,
                kernel_w: 2,
                stride_h: 2,
                stride_w: 1,
                pad_h: 2,
                pad_w: 0,
            },
        ),
    ]
}

/// Checks forward (with bias), input gradient and weight gradient of `s` against the
/// references under every thread count in [`THREADS`].
fn check_against_reference(name: &str, s: &ConvShape, seed: u64) {
    let (x, w, b, g) = (
        random(s.input_len(), seed),
        random(s.weight_len(), seed + 1),
        random(s.out_c, seed + 2),
        random(s.output_len(), seed + 3),
    );
    let (x64, w64, g64) = (to_f64(&x), to_f64(&w), to_f64(&g));
    let y_ref = reference::conv_forward(s, &x64, &w64, Some(&to_f64(&b)));
    let dx_ref = reference::conv_backward_input(s, &g64, &w64);
    let dw_ref = reference::conv_backward_weight(s, &x64, &g64);
    for threads in THREADS {
        let what = |op: &str| format!("{name} {op}, {threads} threads ({s:?})");
        with_threads(threads, || {
            // Garbage-filled outputs: the kernels must overwrite every element.
            let mut y = vec![f32::NAN; s.output_len()];
            conv2d_forward(Gemm::F32, s, &x, &w, Some(&b), None, Activation::Identity, &mut y);
            assert_close(&what("forward"), &y, &y_ref);
            let mut dx = vec![f32::NAN; s.input_len()];
            conv2d_backward_input(Gemm::F32, s, &g, &w, &mut dx);
            assert_close(&what("backward input"), &dx, &dx_ref);
            let mut dw = vec![f32::NAN; s.weight_len()];
            conv2d_backward_weight(Gemm::F32, s, &x, &g, &mut dw);
            assert_close(&what("backward weight"), &dw, &dw_ref);
        });
    }
}

#[test]
fn resnet_convolutions_match_reference() {
    for (i, (name, s)) in resnet_shapes().iter().enumerate() {
        check_against_reference(name, s, 100 * i as u64);
    }
}

#[test]
fn awkward_convolutions_match_reference() {
    for (i, (name, s)) in awkward_shapes().iter().enumerate() {
        check_against_reference(name, s, 100 * i as u64 + 50);
    }
}

/// Every combination of bias, residual and activation, on a pointwise shape (epilogue on the
/// input rows) and a gathered one.
#[test]
fn fused_epilogues_match_reference() {
    let shapes = [square(2, 7, 32, 48, 1, 1, 0), square(2, 9, 8, 16, 3, 2, 1)];
    for (i, s) in shapes.iter().enumerate() {
        let seed = 1000 + 10 * i as u64;
        let (x, w, b, r) = (
            random(s.input_len(), seed),
            random(s.weight_len(), seed + 1),
            random(s.out_c, seed + 2),
            random(s.output_len(), seed + 3),
        );
        let conv = reference::conv_forward(s, &to_f64(&x), &to_f64(&w), None);
        for bias in [None, Some(b.as_slice())] {
            for residual in [None, Some(r.as_slice())] {
                for act in [Activation::Identity, Activation::Relu] {
                    let expected: Vec<f64> = conv
                        .iter()
                        .enumerate()
                        .map(|(i, &v)| {
                            let v = v
                                + bias.map_or(0.0, |b| f64::from(b[i % s.out_c]))
                                + residual.map_or(0.0, |r| f64::from(r[i]));
                            if act == Activation::Relu { v.max(0.0) } else { v }
                        })
                        .collect();
                    let mut y = vec![f32::NAN; s.output_len()];
                    conv2d_forward(Gemm::F32, s, &x, &w, bias, residual, act, &mut y);
                    let what = format!(
                        "{s:?} bias {} residual {} {act:?}",
                        bias.is_some(),
                        residual.is_some()
                    );
                    assert_close(&what, &y, &expected);
                    if act == Activation::Relu {
                        assert!(y.iter().all(|&v| v >= 0.0), "{what}: negative after ReLU");
                    }
                }
            }
        }
    }
}

#[test]
fn relu_backward_masks_where_output_is_not_positive() {
    let y = [1.5, 0.0, -2.0, 3.0, f32::NAN, 1e-30];
    let mut dy = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0];
    activation_backward(Activation::Relu, &y, &mut dy);
    assert_eq!(dy, [10.0, 0.0, 0.0, 40.0, 0.0, 60.0]);

    let mut dy = [1.0, 2.0, 3.0];
    activation_backward(Activation::Identity, &[-1.0, 0.0, 1.0], &mut dy);
    assert_eq!(dy, [1.0, 2.0, 3.0]);
}

#[test]
fn relu_backward_matches_definition_on_large_input() {
    // Longer than one parallel chunk, so several jobs run.
    let y = random(200_000, 1);
    let dy = random(200_000, 2);
    let mut g = dy.clone();
    activation_backward(Activation::Relu, &y, &mut g);
    for ((g, dy), y) in g.iter().zip(&dy).zip(&y) {
        assert_eq!(*g, if *y > 0.0 { *dy } else { 0.0 });
    }
}

#[test]
fn bias_backward_matches_reference() {
    for (pixels, out_c) in [(1, 1), (7, 3), (5000, 64), (20_000, 17)] {
        let g = random(pixels * out_c, pixels as u64);
        let expected = reference::bias_backward(&to_f64(&g), out_c);
        assert_close(&format!("bias {pixels}x{out_c}"), &bias_backward(&g, out_c), &expected);
    }
}

/// A single non-zero weight turns the convolution into a shifted copy of one input channel,
/// which pins down the weight layout, padding and stride semantics independently of the
/// reference implementation.
#[test]
fn single_tap_weight_selects_a_shifted_input_channel() {
    let s = ConvShape {
        batch: 2,
        in_h: 5,
        in_w: 4,
        in_c: 2,
        out_c: 3,
        kernel_h: 3,
        kernel_w: 3,
        stride_h: 2,
        stride_w: 1,
        pad_h: 1,
        pad_w: 1,
    };
    let (co, ci, ky, kx) = (1, 1, 0, 2);
    let mut w = vec![0.0; s.weight_len()];
    w[((co * s.in_c + ci) * 3 + ky) * 3 + kx] = 1.0;
    let x: Vec<f32> = (0..s.input_len()).map(|i| i as f32).collect();
    let mut y = vec![f32::NAN; s.output_len()];
    conv2d_forward(Gemm::F32, &s, &x, &w, None, None, Activation::Identity, &mut y);
    assert_eq!((s.out_h(), s.out_w()), (3, 4));
    for n in 0..2 {
        for oy in 0..3 {
            for ox in 0..4 {
                // Input row oy*2 + ky - 1, column ox + kx - 1, or zero padding.
                let (iy, ix) = ((oy * 2 + ky) as isize - 1, (ox + kx) as isize - 1);
                let inside = (0..5).contains(&iy) && (0..4).contains(&ix);
                let expected = if inside {
                    (((n * 5 + iy as usize) * 4 + ix as usize) * 2 + ci) as f32
                } else {
                    0.0
                };
                for c in 0..3 {
                    let got = y[((n * 3 + oy) * 4 + ox) * 3 + c];
                    assert_eq!(
                        got,
                        if c == co { expected } else { 0.0 },
                        "n {n} oy {oy} ox {ox} c {c}"
                    );
                }
            }
        }
    }
}

#[test]
fn output_sizes_follow_the_resnet_at_100x100() {
    let stem = square(32, 100, 3, 64, 7, 2, 3);
    assert_eq!((stem.out_h(), stem.out_w()), (50, 50));
    assert_eq!(square(32, 25, 256, 128, 1, 2, 0).out_h(), 13);
    assert_eq!(square(32, 13, 512, 256, 1, 2, 0).out_h(), 7);
    assert_eq!(square(32, 7, 1024, 512, 1, 2, 0).out_h(), 4);
    assert_eq!(square(32, 25, 64, 128, 3, 2, 1).out_h(), 13);
    assert_eq!(stem.flops(), 2.0 * (32 * 50 * 50 * 64 * 7 * 7 * 3) as f64);
}

#[test]
fn invalid_shapes_are_rejected() {
    let ok = square(1, 4, 3, 2, 3, 1, 0);
    assert!(ok.validate().is_ok());
    assert!(ConvShape { in_c: 0, ..ok }.validate().is_err());
    assert!(ConvShape { stride_w: 0, ..ok }.validate().is_err());
    assert!(ConvShape { kernel_h: 5, ..ok }.validate().is_err());
    assert!(ConvShape { kernel_h: 5, pad_h: 1, ..ok }.validate().is_ok());
}

#[test]
#[should_panic(expected = "w has 53 elements")]
fn wrong_slice_length_panics() {
    let s = square(1, 4, 3, 2, 3, 1, 0);
    let mut y = vec![0.0; s.output_len()];
    conv2d_forward(
        Gemm::F32,
        &s,
        &vec![0.0; s.input_len()],
        &[0.0; 53],
        None,
        None,
        Activation::Relu,
        &mut y,
    );
}
