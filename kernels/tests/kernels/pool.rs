//! Fast max pooling against the naive reference, including ties and -inf inputs.

use fruitlab_kernels::{PoolShape, max_pool2d_backward, max_pool2d_forward};

use crate::reference;
use crate::util::{assert_close, random, to_f64, with_threads};

fn pool(
    batch: usize,
    in_hw: usize,
    channels: usize,
    k: usize,
    stride: usize,
    pad: usize,
) -> PoolShape {
    PoolShape {
        batch,
        in_h: in_hw,
        in_w: in_hw,
        channels,
        kernel_h: k,
        kernel_w: k,
        stride_h: stride,
        stride_w: stride,
        pad_h: pad,
        pad_w: pad,
    }
}

/// Runs the fast forward and backward; returns `(y, argmax, dx)`.
fn run(s: &PoolShape, x: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<u32>, Vec<f32>) {
    let mut y = vec![f32::NAN; s.output_len()];
    let mut argmax = vec![u32::MAX; s.output_len()];
    max_pool2d_forward(s, x, &mut y, &mut argmax);
    let mut dx = vec![f32::NAN; s.input_len()];
    max_pool2d_backward(s, &argmax, dy, &mut dx);
    (y, argmax, dx)
}

#[test]
fn max_pool_matches_reference() {
    let shapes = [
        ("resnet 3x3/2 pad 1 50x50", pool(2, 50, 64, 3, 2, 1)),
        ("keras 3x3/2 after zero padding", pool(1, 52, 8, 3, 2, 0)),
        ("3x3/2 7x7", pool(1, 7, 3, 3, 2, 0)),
        ("2x2/2 odd input", pool(3, 5, 17, 2, 2, 0)),
        ("3x3/1 pad 1", pool(2, 13, 8, 3, 1, 1)),
        ("1x1 spatial", pool(1, 1, 5, 1, 1, 0)),
    ];
    for (i, (name, s)) in shapes.iter().enumerate() {
        let x = random(s.input_len(), 500 + i as u64);
        let dy = random(s.output_len(), 600 + i as u64);
        let (y_ref, argmax_ref) = reference::max_pool_forward(s, &to_f64(&x));
        let dx_ref = reference::max_pool_backward(s, &argmax_ref, &to_f64(&dy));
        for threads in [1, 3] {
            let (y, argmax, dx) = with_threads(threads, || run(s, &x, &dy));
            assert_close(&format!("{name} forward"), &y, &y_ref);
            let argmax: Vec<usize> = argmax.iter().map(|&i| i as usize).collect();
            assert_eq!(argmax, argmax_ref, "{name} argmax");
            assert_close(&format!("{name} backward"), &dx, &dx_ref);
        }
    }
}

#[test]
fn ties_go_to_the_first_maximum_and_padding_never_wins() {
    // One image, 3x3, one channel, all equal: every window's argmax is its first real input.
    let s = pool(1, 3, 1, 3, 2, 1);
    let (y, argmax, dx) = run(&s, &[-5.0; 9], &[1.0, 2.0, 3.0, 4.0]);
    assert_eq!(y, [-5.0; 4]);
    assert_eq!(argmax, [0, 1, 3, 4]);
    assert_eq!(dx, [1.0, 2.0, 0.0, 3.0, 4.0, 0.0, 0.0, 0.0, 0.0]);

    // All -inf: the argmax still points at a real input, never at padding.
    let (y, argmax, _) = run(&s, &[f32::NEG_INFINITY; 9], &[0.0; 4]);
    assert_eq!(y, [f32::NEG_INFINITY; 4]);
    assert_eq!(argmax, [0, 1, 3, 4]);
}

#[test]
fn invalid_pool_shapes_are_rejected() {
    assert!(pool(1, 4, 1, 3, 2, 1).validate().is_ok());
    assert!(pool(1, 4, 1, 3, 2, 2).validate().is_err(), "padding over half the kernel");
    assert!(pool(1, 2, 1, 3, 2, 0).validate().is_err(), "kernel larger than input");
    assert!(pool(0, 4, 1, 3, 2, 1).validate().is_err(), "empty batch");
}
