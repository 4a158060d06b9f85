//! Checks the naive backward passes against central finite differences of the naive forward,
//! so the references the fast kernels are compared with are themselves right.

use fruitlab_kernels::{ConvShape, PoolShape};

use crate::reference;
use crate::util::{random, to_f64};

/// Step of the central differences; the losses are smooth (piecewise linear), so f64
/// differences are exact to rounding.
const EPS: f64 = 1e-6;
/// Allowed deviation from the finite-difference gradient, relative to its largest element.
const FD_TOLERANCE: f64 = 1e-7;

/// Central-difference gradient of `loss` at `at`.
fn numeric_gradient(at: &[f64], loss: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let mut point = at.to_vec();
    (0..at.len())
        .map(|i| {
            point[i] = at[i] + EPS;
            let up = loss(&point);
            point[i] = at[i] - EPS;
            let down = loss(&point);
            point[i] = at[i];
            (up - down) / (2.0 * EPS)
        })
        .collect()
}

fn assert_gradient(what: &str, analytic: &[f64], numeric: &[f64]) {
    let scale = numeric.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1.0);
    for (i, (a, n)) in analytic.iter().zip(numeric).enumerate() {
        assert!((a - n).abs() <= FD_TOLERANCE * scale, "{what}[{i}]: analytic {a}, numeric {n}");
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(a, b)| a * b).sum()
}

/// Tiny shapes covering stride, padding, non-square kernels and kernels as large as the input.
fn tiny_conv_shapes() -> Vec<ConvShape> {
    let base = ConvShape {
        batch: 2,
        in_h: 5,
        in_w: 4,
        in_c: 3,
        out_c: 2,
        kernel_h: 3,
        kernel_w: 3,
        stride_h: 2,
        stride_w: 2,
        pad_h: 1,
        pad_w: 1,
    };
    vec![
        base,
        ConvShape { batch: 1, kernel_w: 2, stride_h: 1, pad_w: 0, ..base },
        ConvShape { kernel_h: 1, kernel_w: 1, pad_h: 0, pad_w: 0, ..base },
        ConvShape { in_h: 3, in_w: 3, stride_h: 1, stride_w: 1, pad_h: 0, pad_w: 0, ..base },
        ConvShape { kernel_h: 4, kernel_w: 4, stride_h: 3, pad_h: 2, pad_w: 2, ..base },
    ]
}

#[test]
fn naive_conv_gradients_match_finite_differences() {
    for (seed, s) in tiny_conv_shapes().iter().enumerate() {
        let seed = 10 * seed as u64;
        let x = to_f64(&random(s.input_len(), seed));
        let w = to_f64(&random(s.weight_len(), seed + 1));
        let b = to_f64(&random(s.out_c, seed + 2));
        // Loss = sum(r * y) for a random r, so dL/dy = r.
        let r = to_f64(&random(s.output_len(), seed + 3));
        let loss =
            |x: &[f64], w: &[f64], b: &[f64]| dot(&r, &reference::conv_forward(s, x, w, Some(b)));

        let dx = numeric_gradient(&x, |x| loss(x, &w, &b));
        assert_gradient(&format!("dx {s:?}"), &reference::conv_backward_input(s, &r, &w), &dx);
        let dw = numeric_gradient(&w, |w| loss(&x, w, &b));
        assert_gradient(&format!("dw {s:?}"), &reference::conv_backward_weight(s, &x, &r), &dw);
        let db = numeric_gradient(&b, |b| loss(&x, &w, b));
        assert_gradient(&format!("db {s:?}"), &reference::bias_backward(&r, s.out_c), &db);
    }
}

#[test]
fn naive_max_pool_gradient_matches_finite_differences() {
    let s = PoolShape {
        batch: 2,
        in_h: 6,
        in_w: 5,
        channels: 3,
        kernel_h: 3,
        kernel_w: 3,
        stride_h: 2,
        stride_w: 2,
        pad_h: 1,
        pad_w: 1,
    };
    // Distinct random values: no ties, so a step of EPS never moves an argmax.
    let x = to_f64(&random(s.input_len(), 7));
    let r = to_f64(&random(s.output_len(), 8));
    let dx = numeric_gradient(&x, |x| dot(&r, &reference::max_pool_forward(&s, x).0));
    let (_, argmax) = reference::max_pool_forward(&s, &x);
    assert_gradient("max pool dx", &reference::max_pool_backward(&s, &argmax, &r), &dx);
}
