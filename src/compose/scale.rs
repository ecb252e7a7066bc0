//! Fitting the camera frame into a display of another size: the letterbox geometry
//! ([`Fit`]) and an RGB scaler ([`Scaler`]) whose tables are computed once.
//!
//! The scaler is a separable triangle (bilinear) filter whose support grows with the
//! reduction factor, so shrinking a 640x480 frame onto a 320x240 panel averages instead of
//! aliasing, and enlarging it onto a 1280x800 screen interpolates. Weights are 22-bit fixed
//! point; a horizontal pass writes an 8-bit intermediate image, a vertical pass the output.
//! [`Scaler::run`] allocates nothing.

use crate::preprocess::CropRect;

/// Where a `src_w x src_h` frame lands in a `dst_w x dst_h` display: the largest rectangle of
/// the frame's aspect ratio that fits, centred (letterbox or pillarbox bars around it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fit {
    /// Frame width.
    pub src_w: u32,
    /// Frame height.
    pub src_h: u32,
    /// Display width.
    pub dst_w: u32,
    /// Display height.
    pub dst_h: u32,
    /// The frame's rectangle on the display.
    pub rect: CropRect,
}

impl Fit {
    /// The fit of a frame into a display (all sizes at least 1).
    pub fn new(src_w: u32, src_h: u32, dst_w: u32, dst_h: u32) -> Fit {
        let (sw, sh) = (u64::from(src_w.max(1)), u64::from(src_h.max(1)));
        let (dw, dh) = (u64::from(dst_w.max(1)), u64::from(dst_h.max(1)));
        // Width-limited when dw / sw <= dh / sh.
        let (fw, fh) = if dw * sh <= dh * sw {
            (dw, ((sh * dw * 2 + sw) / (sw * 2)).clamp(1, dh))
        } else {
            (((sw * dh * 2 + sh) / (sh * 2)).clamp(1, dw), dh)
        };
        Fit {
            src_w: sw as u32,
            src_h: sh as u32,
            dst_w: dw as u32,
            dst_h: dh as u32,
            rect: CropRect {
                x: ((dw - fw) / 2) as u32,
                y: ((dh - fh) / 2) as u32,
                width: fw as u32,
                height: fh as u32,
            },
        }
    }

    /// Maps a rectangle in frame pixels to display pixels (edges rounded to the nearest).
    pub fn map_rect(&self, r: CropRect) -> CropRect {
        let map = |v: u32, fitted: u32, src: u32| -> u32 {
            ((u64::from(v) * u64::from(fitted) * 2 + u64::from(src)) / (u64::from(src) * 2)) as u32
        };
        let x0 = map(r.x, self.rect.width, self.src_w);
        let x1 = map(r.x.saturating_add(r.width), self.rect.width, self.src_w);
        let y0 = map(r.y, self.rect.height, self.src_h);
        let y1 = map(r.y.saturating_add(r.height), self.rect.height, self.src_h);
        CropRect {
            x: self.rect.x + x0,
            y: self.rect.y + y0,
            width: x1.saturating_sub(x0),
            height: y1.saturating_sub(y0),
        }
    }
}

/// Fixed-point precision of the weights.
const PRECISION_BITS: u32 = 22;

/// One axis: for each output index the first input index and its weights.
#[derive(Debug, Clone)]
struct Axis {
    start: Vec<u32>,
    count: Vec<u32>,
    /// `out * ksize` weights, zero past `count`.
    weights: Vec<i32>,
    ksize: usize,
    /// The same windows with exactly `ksize` taps each (moved left at the far edge, zero
    /// weights padding), for the fixed-size inner loops; empty when `in_size < ksize`.
    padded_start: Vec<u32>,
    padded: Vec<i32>,
}

/// The triangle filter.
fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

impl Axis {
    fn new(in_size: usize, out_size: usize) -> Axis {
        let scale = in_size as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = filterscale;
        let ksize = support.ceil() as usize * 2 + 1;
        let mut start = Vec::with_capacity(out_size);
        let mut count = Vec::with_capacity(out_size);
        let mut weights = vec![0i32; out_size * ksize];
        let mut k = vec![0.0f64; ksize];
        for o in 0..out_size {
            let center = (o as f64 + 0.5) * scale;
            let lo = ((center - support + 0.5).floor().max(0.0)) as usize;
            let hi = ((center + support + 0.5).floor() as usize).min(in_size);
            let n = hi.saturating_sub(lo).min(ksize);
            let mut sum = 0.0;
            for (i, kv) in k.iter_mut().enumerate().take(n) {
                *kv = triangle(((i + lo) as f64 - center + 0.5) / filterscale);
                sum += *kv;
            }
            // Fixed point, with the rounding remainder given to the largest weight so every
            // window sums to exactly 1.0 (flat areas stay exactly flat).
            let one = 1i64 << PRECISION_BITS;
            let row = &mut weights[o * ksize..o * ksize + n];
            let mut total = 0i64;
            for (i, w) in row.iter_mut().enumerate() {
                let v = if sum > 0.0 { k[i] / sum } else { 0.0 };
                *w = (v * one as f64).round() as i32;
                total += i64::from(*w);
            }
            let big = (0..n).fold(0, |b, i| if k[i] > k[b] { i } else { b });
            if n > 0 {
                row[big] += (one - total) as i32;
            }
            start.push(lo as u32);
            count.push(n as u32);
        }
        let (mut padded_start, mut padded) = (Vec::new(), Vec::new());
        if in_size >= ksize {
            padded = vec![0i32; out_size * ksize];
            for o in 0..out_size {
                let lo = start[o] as usize;
                let st = lo.min(in_size - ksize);
                let n = count[o] as usize;
                let shift = lo - st;
                padded[o * ksize + shift..o * ksize + shift + n]
                    .copy_from_slice(&weights[o * ksize..o * ksize + n]);
                padded_start.push(st as u32);
            }
        }
        Axis {
            start,
            count,
            weights,
            ksize,
            padded_start,
            padded,
        }
    }

    #[inline]
    fn window(&self, out: usize) -> (usize, &[i32]) {
        let s = out * self.ksize;
        (
            self.start[out] as usize,
            &self.weights[s..s + self.count[out] as usize],
        )
    }
}

/// Rounding bias of the accumulators. Weights are non-negative and sum to exactly
/// `1 << PRECISION_BITS`, so `255 << 22` plus this bias fits an `i32`.
const ROUND: i32 = 1 << (PRECISION_BITS - 1);

#[inline]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Scales packed RGB888 images of one size to another, with tables and an intermediate
/// buffer sized once in [`Scaler::new`].
#[derive(Debug, Clone)]
pub struct Scaler {
    src_w: usize,
    src_h: usize,
    dst_w: usize,
    dst_h: usize,
    horizontal: Axis,
    vertical: Axis,
    /// `src_h` rows of `dst_w` pixels.
    mid: Vec<u8>,
    /// One output row of accumulators.
    acc: Vec<i32>,
}

/// Sizes that do not fit a scaler's buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("scaler buffers do not match: {what}")]
pub struct ScaleError {
    /// What did not match.
    pub what: &'static str,
}

impl Scaler {
    /// A scaler from `src_w x src_h` to `dst_w x dst_h` (sizes of 0 count as 1).
    pub fn new(src_w: u32, src_h: u32, dst_w: u32, dst_h: u32) -> Scaler {
        let (sw, sh) = (src_w.max(1) as usize, src_h.max(1) as usize);
        let (dw, dh) = (dst_w.max(1) as usize, dst_h.max(1) as usize);
        Scaler {
            src_w: sw,
            src_h: sh,
            dst_w: dw,
            dst_h: dh,
            horizontal: Axis::new(sw, dw),
            vertical: Axis::new(sh, dh),
            mid: vec![0u8; if sw == dw { 0 } else { sh * dw * 3 }],
            acc: vec![0i32; dw * 3],
        }
    }

    /// Output size.
    pub fn dst_size(&self) -> (u32, u32) {
        (self.dst_w as u32, self.dst_h as u32)
    }

    /// Scales `src` (rows of `src_stride` bytes) into the `dst_w x dst_h` rectangle at
    /// (`x`, `y`) of `dst` (rows of `dst_stride` bytes). Allocates nothing.
    pub fn run(
        &mut self,
        src: &[u8],
        src_stride: usize,
        dst: &mut [u8],
        dst_stride: usize,
        x: usize,
        y: usize,
    ) -> Result<(), ScaleError> {
        let (sw, sh, dw, dh) = (self.src_w, self.src_h, self.dst_w, self.dst_h);
        if src_stride < sw * 3 || src.len() < (sh - 1) * src_stride + sw * 3 {
            return Err(ScaleError { what: "source" });
        }
        if dst_stride < (x + dw) * 3 || dst.len() < (y + dh - 1) * dst_stride + (x + dw) * 3 {
            return Err(ScaleError {
                what: "destination",
            });
        }
        let row_bytes = dw * 3;
        // Horizontal pass into `mid` (skipped when the width does not change).
        let h_identity = sw == dw;
        let fixed = !self.horizontal.padded.is_empty();
        if !h_identity {
            for (r, mid) in self.mid.chunks_exact_mut(row_bytes).enumerate() {
                let row = &src[r * src_stride..r * src_stride + sw * 3];
                match self.horizontal.ksize {
                    3 if fixed => horizontal_fixed::<3>(&self.horizontal, row, mid),
                    5 if fixed => horizontal_fixed::<5>(&self.horizontal, row, mid),
                    7 if fixed => horizontal_fixed::<7>(&self.horizontal, row, mid),
                    _ => horizontal_any(&self.horizontal, row, mid),
                }
            }
        }
        let mid: &[u8] = if h_identity { src } else { &self.mid };
        let mid_stride = if h_identity { src_stride } else { row_bytes };
        // Vertical pass: whole rows at a time into an accumulator row (vectorises).
        for o in 0..dh {
            let out = &mut dst[(y + o) * dst_stride + x * 3..(y + o) * dst_stride + (x + dw) * 3];
            if sh == dh {
                out.copy_from_slice(&mid[o * mid_stride..o * mid_stride + row_bytes]);
                continue;
            }
            let (s, w) = self.vertical.window(o);
            self.acc.fill(ROUND);
            for (i, &wi) in w.iter().enumerate() {
                let r = &mid[(s + i) * mid_stride..(s + i) * mid_stride + row_bytes];
                for (a, &v) in self.acc.iter_mut().zip(r) {
                    *a += i32::from(v) * wi;
                }
            }
            for (v, &a) in out.iter_mut().zip(self.acc.iter()) {
                *v = clip8(a);
            }
        }
        Ok(())
    }
}

/// One row of the horizontal pass with `K` taps per output pixel (unrolled).
#[inline]
fn horizontal_fixed<const K: usize>(axis: &Axis, row: &[u8], mid: &mut [u8]) {
    for ((px, &s), w) in mid
        .chunks_exact_mut(3)
        .zip(&axis.padded_start)
        .zip(axis.padded.chunks_exact(K))
    {
        let s = s as usize * 3;
        let taps = &row[s..s + 3 * K];
        let mut acc = [ROUND; 3];
        for k in 0..K {
            acc[0] += i32::from(taps[3 * k]) * w[k];
            acc[1] += i32::from(taps[3 * k + 1]) * w[k];
            acc[2] += i32::from(taps[3 * k + 2]) * w[k];
        }
        px[0] = clip8(acc[0]);
        px[1] = clip8(acc[1]);
        px[2] = clip8(acc[2]);
    }
}

/// One row of the horizontal pass, any window size.
fn horizontal_any(axis: &Axis, row: &[u8], mid: &mut [u8]) {
    for (o, px) in mid.chunks_exact_mut(3).enumerate() {
        let (s, w) = axis.window(o);
        let taps = &row[s * 3..(s + w.len()) * 3];
        let mut acc = [ROUND; 3];
        for (p, &wi) in taps.chunks_exact(3).zip(w) {
            acc[0] += i32::from(p[0]) * wi;
            acc[1] += i32::from(p[1]) * wi;
            acc[2] += i32::from(p[2]) * wi;
        }
        px[0] = clip8(acc[0]);
        px[1] = clip8(acc[1]);
        px[2] = clip8(acc[2]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct 2-D float evaluation of the same filter, per output pixel.
    fn naive(src: &[u8], sw: usize, sh: usize, dw: usize, dh: usize) -> Vec<f64> {
        let weights = |inn: usize, out: usize, o: usize| -> Vec<(usize, f64)> {
            let scale = inn as f64 / out as f64;
            let fs = scale.max(1.0);
            let c = (o as f64 + 0.5) * scale;
            let raw: Vec<(usize, f64)> = (0..inn)
                .map(|i| (i, triangle((i as f64 + 0.5 - c) / fs)))
                .filter(|&(_, w)| w > 0.0)
                .collect();
            let sum: f64 = raw.iter().map(|p| p.1).sum();
            raw.into_iter().map(|(i, w)| (i, w / sum)).collect()
        };
        let mut out = vec![0.0; dw * dh * 3];
        for oy in 0..dh {
            let wy = weights(sh, dh, oy);
            for ox in 0..dw {
                let wx = weights(sw, dw, ox);
                for c in 0..3 {
                    let mut v = 0.0;
                    for &(iy, a) in &wy {
                        for &(ix, b) in &wx {
                            v += a * b * f64::from(src[(iy * sw + ix) * 3 + c]);
                        }
                    }
                    out[(oy * dw + ox) * 3 + c] = v;
                }
            }
        }
        out
    }

    fn pattern(w: usize, h: usize, seed: u32) -> Vec<u8> {
        let mut s = seed;
        (0..w * h * 3)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn matches_the_naive_filter_within_one_grey_level() {
        for &(sw, sh, dw, dh) in &[
            (16, 12, 8, 6),
            (16, 12, 32, 24),
            (20, 15, 7, 5),
            (9, 7, 13, 11),
            (31, 17, 31, 17),
            (40, 30, 11, 30),
            (12, 20, 12, 7),
            (6, 5, 640, 3),
            (3, 2, 1, 1),
            (2, 9, 5, 2),
        ] {
            let src = pattern(sw, sh, (sw * dh) as u32);
            let mut sc = Scaler::new(sw as u32, sh as u32, dw as u32, dh as u32);
            // Into the middle of a larger destination with padded rows.
            let stride = (dw + 5) * 3 + 2;
            let mut dst = vec![7u8; stride * (dh + 3)];
            sc.run(&src, sw * 3, &mut dst, stride, 2, 1).expect("run");
            let reference = naive(&src, sw, sh, dw, dh);
            for y in 0..dh + 3 {
                for x in 0..stride {
                    let inside = (1..=dh).contains(&y) && (6..(2 + dw) * 3).contains(&x);
                    let v = dst[y * stride + x];
                    if !inside {
                        assert_eq!(v, 7, "{sw}x{sh}->{dw}x{dh}: wrote outside at {x},{y}");
                        continue;
                    }
                    let r = reference[((y - 1) * dw) * 3 + x - 6];
                    assert!(
                        (f64::from(v) - r).abs() <= 1.0,
                        "{sw}x{sh}->{dw}x{dh} at byte {x},{y}: {v} vs {r:.2}"
                    );
                }
            }
        }
    }

    #[test]
    fn identity_and_flat_areas_are_exact() {
        let src = pattern(13, 9, 3);
        let mut sc = Scaler::new(13, 9, 13, 9);
        let mut dst = vec![0u8; src.len()];
        sc.run(&src, 39, &mut dst, 39, 0, 0).expect("run");
        assert_eq!(src, dst);
        let flat = vec![201u8; 50 * 30 * 3];
        for (dw, dh) in [(17, 11), (123, 77), (50, 29)] {
            let mut sc = Scaler::new(50, 30, dw, dh);
            let mut dst = vec![0u8; dw as usize * dh as usize * 3];
            sc.run(&flat, 150, &mut dst, dw as usize * 3, 0, 0)
                .expect("run");
            assert!(dst.iter().all(|&v| v == 201), "{dw}x{dh}");
        }
    }

    #[test]
    fn halving_averages_pairs() {
        // 2x reduction: the triangle of support 2 centred between two pixels weighs
        // 1/8, 3/8, 3/8, 1/8 over four pixels.
        let row: Vec<u8> = [0u8, 0, 80, 80, 160, 160, 240, 240]
            .iter()
            .flat_map(|&v| [v, v, v])
            .collect();
        let mut sc = Scaler::new(8, 1, 4, 1);
        let mut dst = vec![0u8; 12];
        sc.run(&row, 24, &mut dst, 12, 0, 0).expect("run");
        // Edge windows are renormalised: (3*0+3*0+1*80)/7 = 11.4; (0+3*80+3*80+160)/8 = 80...
        assert_eq!([dst[0], dst[3], dst[6], dst[9]], [11, 80, 160, 229]);
    }

    #[test]
    fn rejects_short_buffers() {
        let mut sc = Scaler::new(4, 4, 2, 2);
        let mut dst = vec![0u8; 12];
        assert!(sc.run(&[0u8; 47], 12, &mut dst, 6, 0, 0).is_err());
        assert!(sc.run(&[0u8; 48], 12, &mut dst[..11], 6, 0, 0).is_err());
        assert!(sc.run(&[0u8; 48], 12, &mut dst, 6, 1, 0).is_err());
    }

    #[test]
    fn fit_letterboxes_and_maps_rects() {
        let f = Fit::new(640, 480, 1280, 800);
        assert_eq!(
            f.rect,
            CropRect {
                x: 106,
                y: 0,
                width: 1067,
                height: 800
            }
        );
        let f = Fit::new(640, 480, 800, 480);
        assert_eq!((f.rect.x, f.rect.width, f.rect.height), (80, 640, 480));
        let f = Fit::new(640, 480, 320, 240);
        assert_eq!(
            (f.rect.x, f.rect.y, f.rect.width, f.rect.height),
            (0, 0, 320, 240)
        );
        let f = Fit::new(640, 480, 480, 640);
        assert_eq!((f.rect.y, f.rect.width, f.rect.height), (140, 480, 360));
        let crop = CropRect {
            x: 80,
            y: 0,
            width: 480,
            height: 480,
        };
        assert_eq!(
            Fit::new(640, 480, 320, 240).map_rect(crop),
            CropRect {
                x: 40,
                y: 0,
                width: 240,
                height: 240
            }
        );
        assert_eq!(
            Fit::new(640, 480, 800, 480).map_rect(crop),
            CropRect {
                x: 160,
                y: 0,
                width: 480,
                height: 480
            }
        );
    }
}
