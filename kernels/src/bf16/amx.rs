//! Intel AMX: detection, the tile-state permission a Linux process must ask for, and the
//! micro-kernel: a 32 x 32 block of C in four tile registers, `tdpbf16ps` over the k tiles.
//!
//! The tile instructions have no stable intrinsics; the instructions themselves are written
//! with `asm!`. The compiler never uses tile registers, so they keep their contents between
//! the asm blocks of one micro-kernel call.

use std::arch::asm;
use std::sync::OnceLock;

use super::pack::TILE_LEN;

/// Linux `arch_prctl` request for permission to use an extended state component.
const ARCH_REQ_XCOMP_PERM: i32 = 0x1023;
/// The XSAVE component of the AMX tile data.
const XFEATURE_XTILEDATA: u64 = 18;

/// Whether AMX-BF16 can run in this process, or why not (asked once per process).
pub(crate) fn available() -> Result<(), String> {
    static AVAILABLE: OnceLock<Result<(), String>> = OnceLock::new();
    AVAILABLE.get_or_init(enable).clone()
}

/// Whether the CPU and the operating system report AMX-BF16 (whatever the process may do).
pub(crate) fn reported() -> bool {
    cpu_has_amx_bf16() && os_saves_tiles()
}

fn cpu_has_amx_bf16() -> bool {
    // CPUID leaf 7, sub-leaf 0: EDX bit 22 AMX-BF16, bit 24 AMX-TILE (when leaf 7 exists).
    if std::arch::x86_64::__cpuid(0).eax < 7 {
        return false;
    }
    let edx = std::arch::x86_64::__cpuid_count(7, 0).edx;
    edx & (1 << 22) != 0 && edx & (1 << 24) != 0
}

/// XCR0 bits 17 and 18: the OS saves the tile configuration and tile data on context switches.
fn os_saves_tiles() -> bool {
    if !std::arch::is_x86_feature_detected!("xsave") {
        return false;
    }
    // CPUID leaf 1 ECX bit 27 (OSXSAVE): the OS has enabled XGETBV.
    if std::arch::x86_64::__cpuid(1).ecx & (1 << 27) == 0 {
        return false;
    }
    // SAFETY: XSAVE is present and XGETBV enabled (both checked above).
    unsafe { xcr0() & (0b11 << 17) == 0b11 << 17 }
}

#[target_feature(enable = "xsave")]
fn xcr0() -> u64 {
    // SAFETY: the caller runs this only where XGETBV is enabled.
    unsafe { std::arch::x86_64::_xgetbv(0) }
}

fn enable() -> Result<(), String> {
    if !cpu_has_amx_bf16() {
        return Err("the CPU has no AMX-BF16".into());
    }
    if !os_saves_tiles() {
        return Err("the operating system does not enable the AMX tile state (XCR0)".into());
    }
    // SAFETY: arch_prctl with ARCH_REQ_XCOMP_PERM only changes this process's permission to
    // use an XSAVE component; it reads no memory of ours.
    let result =
        unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) };
    if result != 0 {
        let error = std::io::Error::last_os_error();
        return Err(format!("the kernel refused this process the AMX tile state ({error})"));
    }
    Ok(())
}

/// The tile configuration `ldtilecfg` reads: palette 1, every tile 16 rows of 64 bytes.
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    bytes_per_row: [u16; 16],
    rows: [u8; 16],
}

const CONFIG: TileConfig = TileConfig {
    palette: 1,
    start_row: 0,
    reserved: [0; 14],
    bytes_per_row: [64, 64, 64, 64, 64, 64, 64, 64, 0, 0, 0, 0, 0, 0, 0, 0],
    rows: [16, 16, 16, 16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0],
};

/// Tiles configured on the current thread for the life of the value; released when dropped
/// (a thread holding tile state makes its context switches dearer).
pub(crate) struct Tiles(());

impl Tiles {
    /// Configures the tiles. The caller has checked [`available`].
    pub(crate) fn configure() -> Self {
        debug_assert!(available().is_ok());
        // SAFETY: AMX is available to this process (checked by the caller); the configuration
        // is a valid palette-1 configuration, 64-byte aligned as ldtilecfg requires.
        unsafe { asm!("ldtilecfg [{0}]", in(reg) &CONFIG, options(nostack, readonly)) };
        Tiles(())
    }

    /// `C[32 x 32] (+)= A . B` over `k_tiles` tiles of k. `a` holds the row tiles of rows 0-15
    /// then (one panel further) 16-31, `b` the pair tiles of columns 0-15 then 16-31, each
    /// `k_tiles` consecutive tiles; `c` is row-major with `c_stride` floats per row.
    ///
    /// # Safety
    /// `a0`, `a1`, `b0` and `b1` must each point at `k_tiles` tiles; `c` must be valid for
    /// reads (when `accumulate`) and writes of 32 rows of 32 floats `c_stride` apart.
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn block(
        &self,
        [a0, a1]: [*const u16; 2],
        [b0, b1]: [*const u16; 2],
        k_tiles: usize,
        c: *mut f32,
        c_stride: usize,
        accumulate: bool,
    ) {
        let stride = c_stride * 4;
        let lower = c.wrapping_add(16 * c_stride);
        // SAFETY: the tiles are configured (self exists); the caller guarantees the pointers.
        unsafe {
            if accumulate {
                asm!(
                    "tileloadd tmm0, [{c} + {s}]",
                    "tileloadd tmm1, [{c} + {s} + 64]",
                    "tileloadd tmm2, [{d} + {s}]",
                    "tileloadd tmm3, [{d} + {s} + 64]",
                    c = in(reg) c, d = in(reg) lower, s = in(reg) stride,
                    options(nostack, readonly),
                );
            } else {
                asm!(
                    "tilezero tmm0",
                    "tilezero tmm1",
                    "tilezero tmm2",
                    "tilezero tmm3",
                    options(nostack, nomem)
                );
            }
            asm!(
                "2:",
                "tileloadd tmm4, [{a0} + {s}]",
                "tileloadd tmm6, [{b0} + {s}]",
                "tileloadd tmm5, [{a1} + {s}]",
                "tileloadd tmm7, [{b1} + {s}]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                "add {a0}, {step}",
                "add {a1}, {step}",
                "add {b0}, {step}",
                "add {b1}, {step}",
                "dec {k}",
                "jnz 2b",
                a0 = inout(reg) a0 => _, a1 = inout(reg) a1 => _,
                b0 = inout(reg) b0 => _, b1 = inout(reg) b1 => _,
                k = inout(reg) k_tiles => _,
                s = in(reg) 64usize,
                step = const TILE_LEN * 2,
                options(nostack, readonly),
            );
            asm!(
                "tilestored [{c} + {s}], tmm0",
                "tilestored [{c} + {s} + 64], tmm1",
                "tilestored [{d} + {s}], tmm2",
                "tilestored [{d} + {s} + 64], tmm3",
                c = in(reg) c, d = in(reg) lower, s = in(reg) stride,
                options(nostack),
            );
        }
    }
}

impl Drop for Tiles {
    fn drop(&mut self) {
        // SAFETY: releases the tile state this value configured.
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
    }
}

impl Tiles {
    /// `iterations` rounds of four independent `tdpbf16ps` on tile registers only (no memory):
    /// the instruction's peak rate. Returns the floating-point operations done.
    pub(crate) fn peak_loop(&self, iterations: usize) -> u64 {
        // SAFETY: the tiles are configured (self exists); the loop touches no memory.
        unsafe {
            asm!(
                "tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3",
                "tilezero tmm4", "tilezero tmm5", "tilezero tmm6", "tilezero tmm7",
                "2:",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                "dec {n}",
                "jnz 2b",
                n = inout(reg) iterations.max(1) => _,
                options(nostack, nomem),
            );
        }
        // 4 instructions of 16 x 16 outputs, each a sum of 32 products.
        iterations.max(1) as u64 * 4 * 16 * 16 * 32 * 2
    }
}
