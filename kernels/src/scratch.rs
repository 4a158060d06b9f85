//! Per-thread scratch buffers (patch matrices, packed operands), kept between calls: a kernel
//! then writes memory the thread already has instead of zeroing fresh pages at every call.
//! A buffer is handed out as it was left (the kernels write every element they read), grown
//! when too small.

use std::cell::RefCell;

thread_local! {
    static F32: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static BF16: RefCell<Vec<u16>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's f32 scratch, at least `len` long. A nested call on the same
/// thread (work stolen while `f` waits) gets a buffer of its own.
pub(crate) fn with_f32<R>(len: usize, f: impl FnOnce(&mut Vec<f32>) -> R) -> R {
    with(&F32, len, f)
}

/// As [`with_f32`], for bf16 bits.
pub(crate) fn with_bf16<R>(len: usize, f: impl FnOnce(&mut Vec<u16>) -> R) -> R {
    with(&BF16, len, f)
}

/// Takes this thread's bf16 buffer (for an operand that outlives the call), `len` long.
pub(crate) fn take_bf16(len: usize) -> Vec<u16> {
    let mut buffer = BF16.with(|cell| {
        cell.try_borrow_mut().map(|mut b| std::mem::take(&mut *b)).unwrap_or_default()
    });
    buffer.resize(len, 0);
    buffer
}

/// Gives a buffer back to this thread (keeping the larger of it and the one there).
pub(crate) fn give_bf16(buffer: Vec<u16>) {
    BF16.with(|cell| {
        if let Ok(mut kept) = cell.try_borrow_mut()
            && buffer.capacity() > kept.capacity()
        {
            *kept = buffer;
        }
    });
}

fn with<T: Copy + Default + 'static, R>(
    key: &'static std::thread::LocalKey<RefCell<Vec<T>>>,
    len: usize,
    f: impl FnOnce(&mut Vec<T>) -> R,
) -> R {
    key.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buffer) => {
            if buffer.len() < len {
                buffer.resize(len, T::default());
            }
            f(&mut buffer)
        }
        Err(_) => f(&mut vec![T::default(); len]),
    })
}
