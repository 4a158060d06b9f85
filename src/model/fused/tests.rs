//! Our kernels against burn's stock operations on the same autodiff device: outputs and the
//! gradients of every input, for every kind of convolution ResNet-50 has (7x7/2 stem with 3
//! channels, 1x1 at strides 1 and 2, 3x3 at strides 1 and 2), odd sizes, with and without
//! bias, residual and ReLU; and max pooling.

use burn::tensor::{Device, Distribution, Tensor};

use super::*;

/// Largest relative L2 difference allowed: both compute in f32, in different orders.
const TOLERANCE: f64 = 1e-4;

fn relative(a: Tensor<4>, b: Tensor<4>) -> f64 {
    let a: Vec<f32> = a.into_data().try_into_vec().unwrap();
    let b: Vec<f32> = b.into_data().try_into_vec().unwrap();
    let diff: f64 = a.iter().zip(&b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let norm: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (diff / norm.max(1e-30)).sqrt()
}

fn random<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

#[test]
fn convolutions_match_burns_forward_and_backward() {
    let device = Device::flex().autodiff();
    // (batch, size, in, out, kernel, stride, bias, residual, relu)
    let cases = [
        (2, 13, 3, 8, 7, 2, true, false, true),
        (2, 7, 16, 24, 1, 1, true, true, true),
        (3, 9, 16, 8, 1, 2, true, false, false),
        (2, 7, 8, 8, 3, 1, false, false, true),
        (1, 9, 8, 12, 3, 2, true, false, true),
        (2, 4, 32, 16, 3, 1, true, true, false),
    ];
    for (batch, size, c_in, c_out, kernel, stride, with_bias, with_residual, apply_relu) in cases {
        let x = random([batch, size, size, c_in], &device).require_grad();
        let w = random([c_out, c_in, kernel, kernel], &device).mul_scalar(0.3).require_grad();
        let b = with_bias.then(|| random([c_out], &device).require_grad());
        let out = (size + 2 * (kernel / 2) - kernel) / stride + 1;
        let r = with_residual.then(|| random([batch, out, out, c_out], &device).require_grad());
        let geometry = [stride, kernel / 2];
        let probe = random([batch, out, out, c_out], &device);
        let run = |ours: bool| {
            let y = if ours {
                conv(x.clone(), w.clone(), b.clone(), r.clone(), geometry, apply_relu)
            } else {
                stock_conv(x.clone(), w.clone(), b.clone(), r.clone(), geometry, apply_relu)
            };
            let grads = (y.clone() * probe.clone()).sum().backward();
            let dx = x.grad(&grads).unwrap();
            let dw = w.grad(&grads).unwrap();
            let db = b.as_ref().map(|b| b.grad(&grads).unwrap().reshape([1, 1, 1, c_out]));
            let dr = r.as_ref().map(|r| r.grad(&grads).unwrap());
            (y.detach(), dx, dw, db, dr)
        };
        let (ours, theirs) = (run(true), run(false));
        let case = format!("{kernel}x{kernel}/{stride}, {c_in}->{c_out}, {size}px");
        for (name, a, b) in
            [("output", ours.0, theirs.0), ("dx", ours.1, theirs.1), ("dw", ours.2, theirs.2)]
        {
            let error = relative(a, b);
            assert!(error < TOLERANCE, "{case}: {name} differs by {error:e}");
        }
        for (name, a, b) in [("dbias", ours.3, theirs.3), ("dresidual", ours.4, theirs.4)] {
            if let (Some(a), Some(b)) = (a, b) {
                let error = relative(a, b);
                assert!(error < TOLERANCE, "{case}: {name} differs by {error:e}");
            }
        }
    }
}

#[test]
fn max_pooling_matches_burns_forward_and_backward() {
    let device = Device::flex().autodiff();
    for size in [7, 8, 25] {
        let x = random([2, size, size, 5], &device).require_grad();
        let run = |ours: bool| {
            let y = if ours {
                max_pool(x.clone(), [3, 2, 1])
            } else {
                stock_max_pool(x.clone(), [3, 2, 1])
            };
            let grads = y.clone().sum().backward();
            (y.detach(), x.grad(&grads).unwrap())
        };
        let (ours, theirs) = (run(true), run(false));
        assert!(relative(ours.0, theirs.0) < TOLERANCE, "{size}px output");
        assert!(relative(ours.1, theirs.1) < TOLERANCE, "{size}px gradient");
    }
}
