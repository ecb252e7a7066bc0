//! Packed RGB24 with a line stride to packed RGB.

/// Copies `height` rows of `width` RGB24 pixels from `src`, whose rows start every `stride`
/// bytes (padding ignored), into the packed buffer `dst` (`width * 3` bytes a row).
///
/// # Panics
/// If `stride < width * 3`, `src` is shorter than `stride * (height - 1) + width * 3` or
/// `dst` is shorter than `width * height * 3` ([`Converter`](super::Converter) checks all of
/// these before calling).
pub fn rgb24_to_rgb(src: &[u8], width: usize, height: usize, stride: usize, dst: &mut [u8]) {
    let row = width * 3;
    if row == 0 || height == 0 {
        return;
    }
    assert!(stride >= row, "stride {stride} < row {row}");
    assert!(dst.len() >= row * height, "destination too small");
    for (y, out) in dst.chunks_exact_mut(row).take(height).enumerate() {
        let start = y * stride;
        out.copy_from_slice(&src[start..start + row]);
    }
}
