//! YUYV (YUV 4:2:2, `Y0 U Y1 V`) to RGB, BT.601 limited range, in integer fixed point.
//!
//! ```text
//! R = 1.164 (Y - 16)                   + 1.596 (V - 128)
//! G = 1.164 (Y - 16) - 0.392 (U - 128) - 0.813 (V - 128)
//! B = 1.164 (Y - 16) + 2.017 (U - 128)
//! ```
//!
//! rounded to nearest and clamped to 0..=255. The coefficients are scaled by 2^16, so the
//! result equals the real-valued formula rounded, except when that value lies within about
//! 0.01 of a rounding boundary (x.5), where it may differ by one level.

/// Fixed-point shift.
const SHIFT: u32 = 16;
/// 0.5 in fixed point, for rounding.
const HALF: i32 = 1 << (SHIFT - 1);
/// 1.164 * 2^16, rounded.
const CY: i32 = 76284;
/// 1.596 * 2^16, rounded.
const CRV: i32 = 104_595;
/// 0.392 * 2^16, rounded.
const CGU: i32 = 25690;
/// 0.813 * 2^16, rounded.
const CGV: i32 = 53281;
/// 2.017 * 2^16, rounded.
const CBU: i32 = 132_186;

#[inline(always)]
fn clamp8(v: i32) -> u8 {
    (v >> SHIFT).clamp(0, 255) as u8
}

/// Converts a YUYV image to packed RGB.
///
/// `src` holds `height` rows that start every `stride` bytes; each row has `width / 2`
/// macropixels `Y0 U Y1 V` (padding after `width * 2` bytes is ignored). `dst` receives
/// `width * height * 3` bytes.
///
/// # Panics
/// If `width` is odd, `stride < width * 2`, `src` is shorter than
/// `stride * (height - 1) + width * 2` or `dst` is shorter than `width * height * 3`
/// ([`Converter`](super::Converter) checks all of these before calling).
pub fn yuyv_to_rgb(src: &[u8], width: usize, height: usize, stride: usize, dst: &mut [u8]) {
    assert!(width % 2 == 0, "YUYV width {width} is odd");
    let in_row = width * 2;
    let out_row = width * 3;
    if width == 0 || height == 0 {
        return;
    }
    assert!(stride >= in_row, "stride {stride} < row {in_row}");
    assert!(dst.len() >= out_row * height, "destination too small");
    for (y, out) in dst.chunks_exact_mut(out_row).take(height).enumerate() {
        let start = y * stride;
        let input = &src[start..start + in_row];
        for (m, px) in input.chunks_exact(4).zip(out.chunks_exact_mut(6)) {
            let y0 = (i32::from(m[0]) - 16) * CY + HALF;
            let u = i32::from(m[1]) - 128;
            let y1 = (i32::from(m[2]) - 16) * CY + HALF;
            let v = i32::from(m[3]) - 128;
            let r = CRV * v;
            let g = -CGU * u - CGV * v;
            let b = CBU * u;
            px[0] = clamp8(y0 + r);
            px[1] = clamp8(y0 + g);
            px[2] = clamp8(y0 + b);
            px[3] = clamp8(y1 + r);
            px[4] = clamp8(y1 + g);
            px[5] = clamp8(y1 + b);
        }
    }
}
