//! Alpha blending of the coloured heatmap onto the crop rectangle of an RGB frame.

use super::HeatmapError;
use crate::preprocess::CropRect;

/// Fixed-point precision of alpha.
const ALPHA_BITS: u32 = 16;
const ALPHA_ONE: u32 = 1 << ALPHA_BITS;

/// Blends `heat_rgb` (packed RGB, `rect.width * rect.height * 3` bytes) onto the rectangle
/// `rect` of `frame` (RGB rows every `frame_stride` bytes):
/// `out = round((1 - alpha) * frame + alpha * heat)`, with alpha clamped to `[0, 1]` (NaN
/// counts as 0) and held in 16-bit fixed point, so the result is the exact rounded value
/// except within about 0.004 of a rounding boundary, where it may differ by one level.
///
/// Fails if `heat_rgb` has the wrong length, `frame_stride` is shorter than the rectangle's
/// right edge, or the rectangle does not fit in `frame`.
pub fn blend_into(
    frame: &mut [u8],
    frame_stride: usize,
    rect: CropRect,
    heat_rgb: &[u8],
    alpha: f32,
) -> Result<(), HeatmapError> {
    let (w, h) = (rect.width as usize, rect.height as usize);
    let row = w * 3;
    if heat_rgb.len() != row * h {
        return Err(HeatmapError::BufferSize {
            what: "heatmap rgb",
            expected: row * h,
            got: heat_rgb.len(),
        });
    }
    if w == 0 || h == 0 {
        return Ok(());
    }
    let x0 = rect.x as usize * 3;
    let y0 = rect.y as usize;
    let right = x0 + row;
    let end = (y0 + h - 1)
        .checked_mul(frame_stride)
        .and_then(|v| v.checked_add(right));
    if right > frame_stride || end.is_none_or(|e| e > frame.len()) {
        return Err(HeatmapError::RectOutsideFrame {
            x: rect.x,
            y: rect.y,
            width: rect.width,
            height: rect.height,
            stride: frame_stride,
            frame_len: frame.len(),
        });
    }
    let a = if alpha > 0.0 {
        (f64::from(alpha.min(1.0)) * f64::from(ALPHA_ONE)).round() as u32
    } else {
        0
    };
    let inv = ALPHA_ONE - a;
    let half = ALPHA_ONE / 2;
    for (r, heat) in heat_rgb.chunks_exact(row).enumerate() {
        let start = (y0 + r) * frame_stride + x0;
        let dst = &mut frame[start..start + row];
        for (d, &s) in dst.iter_mut().zip(heat) {
            *d = ((inv * u32::from(*d) + a * u32::from(s) + half) >> ALPHA_BITS) as u8;
        }
    }
    Ok(())
}
