//! Naive nested-loop references with f64 accumulators: slow and obviously correct, the ground
//! truth for the fast kernels.

use fruitlab_kernels::{ConvShape, PoolShape};

/// Input position of tap `k` at output position `o`, or `None` when it falls in the padding.
fn tap(o: usize, k: usize, stride: usize, pad: usize, input: usize) -> Option<usize> {
    (o * stride + k).checked_sub(pad).filter(|&i| i < input)
}

/// Calls `mac(y_index, x_index, w_index)` for every multiply-add of the convolution, with
/// NHWC activations and `[out_c, in_c, kh, kw]` weights. Forward and both gradients are sums
/// over exactly these triples.
fn for_each_mac(s: &ConvShape, mut mac: impl FnMut(usize, usize, usize)) {
    let (out_h, out_w) = (s.out_h(), s.out_w());
    for n in 0..s.batch {
        for oy in 0..out_h {
            for ox in 0..out_w {
                for co in 0..s.out_c {
                    let yi = ((n * out_h + oy) * out_w + ox) * s.out_c + co;
                    for ci in 0..s.in_c {
                        for ky in 0..s.kernel_h {
                            let Some(iy) = tap(oy, ky, s.stride_h, s.pad_h, s.in_h) else {
                                continue;
                            };
                            for kx in 0..s.kernel_w {
                                let Some(ix) = tap(ox, kx, s.stride_w, s.pad_w, s.in_w) else {
                                    continue;
                                };
                                let xi = ((n * s.in_h + iy) * s.in_w + ix) * s.in_c + ci;
                                let wi = ((co * s.in_c + ci) * s.kernel_h + ky) * s.kernel_w + kx;
                                mac(yi, xi, wi);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `y = conv(x, w) + bias`.
pub fn conv_forward(s: &ConvShape, x: &[f64], w: &[f64], bias: Option<&[f64]>) -> Vec<f64> {
    let mut y = vec![0.0; s.output_len()];
    for_each_mac(s, |yi, xi, wi| y[yi] += x[xi] * w[wi]);
    if let Some(b) = bias {
        y.chunks_exact_mut(s.out_c).for_each(|px| px.iter_mut().zip(b).for_each(|(y, b)| *y += b));
    }
    y
}

/// Gradient of `sum(g * conv(x, w))` with respect to `x`.
pub fn conv_backward_input(s: &ConvShape, g: &[f64], w: &[f64]) -> Vec<f64> {
    let mut dx = vec![0.0; s.input_len()];
    for_each_mac(s, |yi, xi, wi| dx[xi] += g[yi] * w[wi]);
    dx
}

/// Gradient of `sum(g * conv(x, w))` with respect to `w`.
pub fn conv_backward_weight(s: &ConvShape, x: &[f64], g: &[f64]) -> Vec<f64> {
    let mut dw = vec![0.0; s.weight_len()];
    for_each_mac(s, |yi, xi, wi| dw[wi] += g[yi] * x[xi]);
    dw
}

/// Gradient of `sum(g * (y + bias))` with respect to `bias`.
pub fn bias_backward(g: &[f64], out_c: usize) -> Vec<f64> {
    let mut db = vec![0.0; out_c];
    g.chunks_exact(out_c).for_each(|px| db.iter_mut().zip(px).for_each(|(d, g)| *d += g));
    db
}

/// Max of each window (padding never wins) and the flat input index of its first maximum.
pub fn max_pool_forward(s: &PoolShape, x: &[f64]) -> (Vec<f64>, Vec<usize>) {
    let (out_h, out_w, c) = (s.out_h(), s.out_w(), s.channels);
    let mut y = Vec::with_capacity(s.output_len());
    let mut argmax = Vec::with_capacity(s.output_len());
    for n in 0..s.batch {
        for oy in 0..out_h {
            for ox in 0..out_w {
                for ch in 0..c {
                    let mut best: Option<(f64, usize)> = None;
                    for ky in 0..s.kernel_h {
                        let Some(iy) = tap(oy, ky, s.stride_h, s.pad_h, s.in_h) else { continue };
                        for kx in 0..s.kernel_w {
                            let Some(ix) = tap(ox, kx, s.stride_w, s.pad_w, s.in_w) else {
                                continue;
                            };
                            let i = ((n * s.in_h + iy) * s.in_w + ix) * c + ch;
                            if best.is_none_or(|(b, _)| x[i] > b) {
                                best = Some((x[i], i));
                            }
                        }
                    }
                    let (v, i) = best.expect("every window holds a real input");
                    y.push(v);
                    argmax.push(i);
                }
            }
        }
    }
    (y, argmax)
}

/// Gradient of max pooling: each `dy` added at its window's argmax.
pub fn max_pool_backward(s: &PoolShape, argmax: &[usize], dy: &[f64]) -> Vec<f64> {
    let mut dx = vec![0.0; s.input_len()];
    argmax.iter().zip(dy).for_each(|(&i, g)| dx[i] += g);
    dx
}
