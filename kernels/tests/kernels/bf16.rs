//! The bf16 kernels (AMX, AVX512-BF16) against the f64 references on every ResNet-50
//! convolution kind and the awkward shapes, forward and both gradients, under several thread
//! counts; and a failure, not a skip, when the CPU reports a bf16 kernel this process does not
//! run.
//!
//! Tolerance, per output: `|fast - reference| <= 2^-7 * sum |a * b| + 1e-5`, the sum over the
//! output's products (each operand is rounded to bf16 once, a relative error of at most 2^-9,
//! so each product is off by at most ~2^-8 of itself; 2^-7 leaves room for the f32 sums).

use fruitlab_kernels::bf16::{self, Bf16Kernel, Bf16Support};
use fruitlab_kernels::{
    Activation, ConvShape, Gemm, conv2d_backward_input, conv2d_backward_weight, conv2d_forward,
};

use crate::conv::{THREADS, awkward_shapes, resnet_shapes};
use crate::reference;
use crate::util::{random, relative_error, to_f64, with_threads};

/// The bound's factor on the sum of product magnitudes.
const BOUND: f64 = 1.0 / 128.0;

/// Every bf16 kernel this process can run.
fn kernels() -> Vec<Bf16Kernel> {
    [Bf16Kernel::Amx, Bf16Kernel::Avx512].into_iter().filter(|k| k.is_available()).collect()
}

#[test]
fn every_bf16_kernel_the_cpu_reports_runs_here() {
    let support = bf16::support();
    if support.amx_reported {
        assert!(
            Bf16Kernel::Amx.is_available(),
            "the CPU and OS report AMX-BF16 but this process cannot use it: {:?}",
            support.amx_unavailable
        );
        assert_eq!(support.best, Some(Bf16Kernel::Amx));
    }
    if std::arch::is_x86_feature_detected!("avx512bf16") {
        assert!(Bf16Kernel::Avx512.is_available());
    }
    println!("bf16 kernels run on this machine: {:?} ({support:?})", kernels());
}

#[test]
fn speed_takes_avx512_bf16_only_where_it_beats_fp32() {
    let support = |best, avx512_bf16_fast| Bf16Support {
        best,
        amx_unavailable: None,
        amx_reported: false,
        avx512_bf16: true,
        avx512_bf16_fast,
    };
    assert_eq!(support(Some(Bf16Kernel::Avx512), false).fastest(), None);
    assert_eq!(support(Some(Bf16Kernel::Avx512), true).fastest(), Some(Bf16Kernel::Avx512));
    assert_eq!(support(Some(Bf16Kernel::Amx), false).fastest(), Some(Bf16Kernel::Amx));
    assert_eq!(support(None, true).fastest(), None);
}

/// Asserts every output within the bf16 bound of the reference, and that the result is not
/// the f32 one (the bf16 path really ran: its rounding shows).
fn assert_within_bound(what: &str, actual: &[f32], reference: &[f64], magnitudes: &[f64]) {
    for (i, ((&a, &r), &m)) in actual.iter().zip(reference).zip(magnitudes).enumerate() {
        let error = (f64::from(a) - r).abs();
        assert!(
            error <= BOUND * m + 1e-5,
            "{what}: output {i} is {a}, the reference {r} (error {error:e}, bound {:e})",
            BOUND * m + 1e-5
        );
    }
    let overall = relative_error(actual, reference);
    assert!(overall > 1e-6, "{what}: relative error {overall:e}: an f32 result, not bf16");
}

fn absolute(values: &[f64]) -> Vec<f64> {
    values.iter().map(|v| v.abs()).collect()
}

fn check(kernel: Bf16Kernel, name: &str, s: &ConvShape, seed: u64) {
    let (x, w, g) = (
        random(s.input_len(), seed),
        random(s.weight_len(), seed + 1),
        random(s.output_len(), seed + 2),
    );
    let (x64, w64, g64) = (to_f64(&x), to_f64(&w), to_f64(&g));
    let (ax, aw, ag) = (absolute(&x64), absolute(&w64), absolute(&g64));
    let y_ref = reference::conv_forward(s, &x64, &w64, None);
    let y_mag = reference::conv_forward(s, &ax, &aw, None);
    let dx_ref = reference::conv_backward_input(s, &g64, &w64);
    let dx_mag = reference::conv_backward_input(s, &ag, &aw);
    let dw_ref = reference::conv_backward_weight(s, &x64, &g64);
    let dw_mag = reference::conv_backward_weight(s, &ax, &ag);
    let gemm = Gemm::Bf16(kernel);
    for threads in THREADS {
        let what = |op: &str| format!("{} {name} {op}, {threads} threads", kernel.name());
        with_threads(threads, || {
            let mut y = vec![f32::NAN; s.output_len()];
            conv2d_forward(gemm, s, &x, &w, None, None, Activation::Identity, &mut y);
            assert_within_bound(&what("forward"), &y, &y_ref, &y_mag);
            let mut dx = vec![f32::NAN; s.input_len()];
            conv2d_backward_input(gemm, s, &g, &w, &mut dx);
            assert_within_bound(&what("backward input"), &dx, &dx_ref, &dx_mag);
            let mut dw = vec![f32::NAN; s.weight_len()];
            conv2d_backward_weight(gemm, s, &x, &g, &mut dw);
            assert_within_bound(&what("backward weight"), &dw, &dw_ref, &dw_mag);
        });
    }
}

#[test]
fn bf16_convolutions_match_the_reference_within_the_bf16_bound() {
    let kernels = kernels();
    let shapes: Vec<(&str, ConvShape)> =
        resnet_shapes().into_iter().chain(awkward_shapes()).collect();
    for kernel in &kernels {
        for (i, (name, s)) in shapes.iter().enumerate() {
            check(*kernel, name, s, 7000 + 10 * i as u64);
        }
    }
    println!("checked {} shapes on {:?}", shapes.len(), kernels);
}

/// Accumulating onto a prefilled output (bias and residual) and the activation, in bf16.
#[test]
fn bf16_epilogues_add_onto_the_product() {
    let s = ConvShape {
        batch: 2,
        in_h: 9,
        in_w: 9,
        in_c: 40,
        out_c: 48,
        kernel_h: 3,
        kernel_w: 3,
        stride_h: 1,
        stride_w: 1,
        pad_h: 1,
        pad_w: 1,
    };
    let (x, w, b, r) = (
        random(s.input_len(), 1),
        random(s.weight_len(), 2),
        random(s.out_c, 3),
        random(s.output_len(), 4),
    );
    let conv = reference::conv_forward(&s, &to_f64(&x), &to_f64(&w), None);
    let magnitude =
        reference::conv_forward(&s, &absolute(&to_f64(&x)), &absolute(&to_f64(&w)), None);
    for kernel in kernels() {
        let mut y = vec![f32::NAN; s.output_len()];
        conv2d_forward(
            Gemm::Bf16(kernel),
            &s,
            &x,
            &w,
            Some(&b),
            Some(&r),
            Activation::Relu,
            &mut y,
        );
        let expected: Vec<f64> = conv
            .iter()
            .enumerate()
            .map(|(i, v)| (v + f64::from(b[i % s.out_c]) + f64::from(r[i])).max(0.0))
            .collect();
        assert_within_bound(kernel.name(), &y, &expected, &magnitude);
    }
}
