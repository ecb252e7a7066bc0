//! Bilinear upsampling of the CAM grid, exactly as OpenCV's
//! `cv2.resize(src, (dst_w, dst_h), interpolation=cv2.INTER_LINEAR)` on `float32`, and the
//! min-max scaling of pytorch-grad-cam.

use super::HeatmapError;

/// One axis of OpenCV's INTER_LINEAR: for each output index the two input indices and
/// their weights.
#[derive(Debug, Clone)]
struct LinearAxis {
    /// First input index of each output.
    i0: Vec<usize>,
    /// Second input index (equal to `i0` at the clamped edges).
    i1: Vec<usize>,
    /// Weights `(1 - f, f)`.
    w: Vec<[f32; 2]>,
}

impl LinearAxis {
    /// OpenCV's `resize` coordinate mapping: `scale = 1 / (dst / src)`,
    /// `f = (float)((d + 0.5) * scale - 0.5)`, `s = floor(f)`, `f -= s`; `s < 0` becomes
    /// `s = 0, f = 0`, `s >= src - 1` becomes `s = src - 1, f = 0`.
    fn new(src: usize, dst: usize) -> LinearAxis {
        let scale = 1.0 / (dst as f64 / src as f64);
        let mut i0 = Vec::with_capacity(dst);
        let mut i1 = Vec::with_capacity(dst);
        let mut w = Vec::with_capacity(dst);
        for d in 0..dst {
            let fx = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let sx = fx.floor();
            let mut f = fx - sx;
            let mut s = sx as i64;
            if s < 0 {
                s = 0;
                f = 0.0;
            }
            if s >= src as i64 - 1 {
                s = src as i64 - 1;
                f = 0.0;
            }
            let s = s as usize;
            i0.push(s);
            i1.push((s + 1).min(src - 1));
            w.push([1.0 - f, f]);
        }
        LinearAxis { i0, i1, w }
    }
}

/// Bilinear resizing of a single-channel `f32` map with OpenCV's INTER_LINEAR semantics
/// (half-pixel centres, edges clamped). Index and weight tables are built in
/// [`Upsampler::new`]; [`Upsampler::run`] does not allocate.
#[derive(Debug, Clone)]
pub struct Upsampler {
    src_w: usize,
    src_h: usize,
    dst_w: usize,
    dst_h: usize,
    x: LinearAxis,
    y: LinearAxis,
    /// Source rows interpolated horizontally (`src_h x dst_w`).
    rows: Vec<f32>,
}

impl Upsampler {
    /// Prepares resizing `src_w x src_h` maps to `dst_w x dst_h`. All sizes must be positive.
    pub fn new(
        src_w: usize,
        src_h: usize,
        dst_w: usize,
        dst_h: usize,
    ) -> Result<Self, HeatmapError> {
        if src_w == 0 || src_h == 0 {
            return Err(HeatmapError::ZeroSize {
                what: "upsampler source",
                width: src_w,
                height: src_h,
            });
        }
        if dst_w == 0 || dst_h == 0 {
            return Err(HeatmapError::ZeroSize {
                what: "upsampler destination",
                width: dst_w,
                height: dst_h,
            });
        }
        Ok(Upsampler {
            src_w,
            src_h,
            dst_w,
            dst_h,
            x: LinearAxis::new(src_w, dst_w),
            y: LinearAxis::new(src_h, dst_h),
            rows: vec![0.0; src_h * dst_w],
        })
    }

    /// Source size `(width, height)`.
    pub fn src_size(&self) -> (usize, usize) {
        (self.src_w, self.src_h)
    }

    /// Destination size `(width, height)`.
    pub fn dst_size(&self) -> (usize, usize) {
        (self.dst_w, self.dst_h)
    }

    /// Resizes the row-major map `src` (`src_w * src_h`) into `dst` (`dst_w * dst_h`).
    ///
    /// Each output is `b0 * (a0 * s00 + a1 * s01) + b1 * (a0 * s10 + a1 * s11)` in `f32`,
    /// the order of OpenCV's horizontal-then-vertical passes.
    pub fn run(&mut self, src: &[f32], dst: &mut [f32]) -> Result<(), HeatmapError> {
        let src_len = self.src_w * self.src_h;
        if src.len() != src_len {
            return Err(HeatmapError::BufferSize {
                what: "upsampler source",
                expected: src_len,
                got: src.len(),
            });
        }
        let dst_len = self.dst_w * self.dst_h;
        if dst.len() != dst_len {
            return Err(HeatmapError::BufferSize {
                what: "upsampler destination",
                expected: dst_len,
                got: dst.len(),
            });
        }
        // Horizontal pass once per source row (as OpenCV does), then each output row is a
        // blend of two of those rows: same arithmetic, bit for bit, and vectorisable.
        for (row, h) in src
            .chunks_exact(self.src_w)
            .zip(self.rows.chunks_exact_mut(self.dst_w))
        {
            for (((o, &x0), &x1), &[a0, a1]) in
                h.iter_mut().zip(&self.x.i0).zip(&self.x.i1).zip(&self.x.w)
            {
                *o = row[x0] * a0 + row[x1] * a1;
            }
        }
        for (dy, out) in dst.chunks_exact_mut(self.dst_w).enumerate() {
            let h0 = &self.rows[self.y.i0[dy] * self.dst_w..][..self.dst_w];
            let h1 = &self.rows[self.y.i1[dy] * self.dst_w..][..self.dst_w];
            let [b0, b1] = self.y.w[dy];
            for ((o, a), b) in out.iter_mut().zip(h0).zip(h1) {
                *o = a * b0 + b * b1;
            }
        }
        Ok(())
    }
}

/// Min-max scaling as pytorch-grad-cam's `scale_cam_image`: `x -= min(x)`, then
/// `x /= 1e-7 + max(x)` (the maximum after the subtraction), in `f32`. An empty buffer is
/// left alone; a constant map becomes all zeros. NaNs are ignored by min/max and stay NaN.
pub fn scale_min_max(buf: &mut [f32]) {
    if buf.is_empty() {
        return;
    }
    let min = buf.iter().copied().fold(f32::INFINITY, f32::min);
    if !min.is_finite() {
        return;
    }
    let mut max = f32::NEG_INFINITY;
    for v in buf.iter_mut() {
        *v -= min;
        max = max.max(*v);
    }
    let denom = 1e-7f32 + max;
    for v in buf.iter_mut() {
        *v /= denom;
    }
}
