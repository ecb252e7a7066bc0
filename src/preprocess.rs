//! Preprocessing: crop, resize and normalise a frame into the model input tensor.
//!
//! The resize reproduces PIL's `Image.resize((W, H), Image.BILINEAR)`: a separable
//! triangle filter whose support is scaled by `max(1, src / dst)` (so downscaling is
//! antialiased), with the centres, bounds and coefficient normalisation of Pillow's
//! `precompute_coeffs` (`libImaging/Resample.c`). The coefficient tables are computed once
//! in [`Preprocessor::new`]; [`Preprocessor::run`] does a horizontal pass into a scratch
//! buffer and a vertical pass, then `(x / scale - mean) / std`, without allocating.
//!
//! It is PIL's result to the grey level, not an approximation: like Pillow on 8-bit RGB
//! images, the weights are 22-bit fixed point and the intermediate image is rounded to 8 bits
//! after each pass (`clip8`). A model trained on PIL-resized images therefore sees exactly
//! the same input in dermcam; a float-only resize differs by up to one grey level, which
//! measurably flipped top-1 predictions of the clinical model.

use std::str::FromStr;

/// A rectangle of a frame, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CropRect {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
}

/// The centred square crop of a `frame_width x frame_height` frame whose side is
/// `fraction` of the frame's shorter side.
///
/// `side = round(min(w, h) * fraction)`, clamped to `1..=min(w, h)` (a NaN fraction gives
/// 1); `x = (w - side) / 2`, `y = (h - side) / 2` with integer division. `fraction == 1.0`
/// gives `side == min(w, h)`.
pub fn centre_square_crop(frame_width: u32, frame_height: u32, fraction: f32) -> CropRect {
    let short = frame_width.min(frame_height);
    let wanted = (f64::from(short) * f64::from(fraction)).round();
    // `as` saturates (NaN -> 0), then clamp into the frame.
    let side = (wanted as u32).clamp(1, short.max(1));
    CropRect {
        x: frame_width.saturating_sub(side) / 2,
        y: frame_height.saturating_sub(side) / 2,
        width: side,
        height: side,
    }
}

/// Memory layout of the model's input tensor (batch of one, three channels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// `[1, 3, H, W]`: channel planes.
    Nchw,
    /// `[1, H, W, 3]`: interleaved pixels.
    Nhwc,
}

/// A layout name that is neither `NCHW` nor `NHWC`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown tensor layout {0:?} (expected \"NCHW\" or \"NHWC\")")]
pub struct ParseLayoutError(pub String);

impl FromStr for Layout {
    type Err = ParseLayoutError;

    /// Parses `NCHW` or `NHWC` (any case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("nchw") {
            Ok(Layout::Nchw)
        } else if s.eq_ignore_ascii_case("nhwc") {
            Ok(Layout::Nhwc)
        } else {
            Err(ParseLayoutError(s.to_owned()))
        }
    }
}

/// What the model expects as input: size, layout and normalisation
/// `(pixel / scale - mean[c]) / std[c]` (channels in RGB order).
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    /// Input width.
    pub width: u32,
    /// Input height.
    pub height: u32,
    /// Tensor layout.
    pub layout: Layout,
    /// Pixel values are divided by it first (usually 255).
    pub scale: f32,
    /// Per-channel mean, after scaling.
    pub mean: [f32; 3],
    /// Per-channel standard deviation, after scaling.
    pub std: [f32; 3],
}

impl TensorSpec {
    /// Number of floats in the tensor: `3 * width * height`.
    pub fn len(&self) -> usize {
        3 * self.width as usize * self.height as usize
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Errors of preprocessing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PreprocessError {
    /// A size that must be positive is zero.
    #[error("{what} is {width}x{height}: width and height must be positive")]
    ZeroSize {
        /// Which size ("frame", "crop", "tensor").
        what: &'static str,
        /// Width.
        width: u32,
        /// Height.
        height: u32,
    },
    /// The crop rectangle does not lie inside the frame.
    #[error("crop {crop:?} does not lie inside the {frame_width}x{frame_height} frame")]
    CropOutsideFrame {
        /// The crop.
        crop: CropRect,
        /// Frame width.
        frame_width: u32,
        /// Frame height.
        frame_height: u32,
    },
    /// A normalisation constant is unusable (zero or not finite).
    #[error("tensor spec field {field}[{channel}] = {value} must be finite{extra}")]
    InvalidNormalisation {
        /// `"scale"`, `"mean"` or `"std"`.
        field: &'static str,
        /// Channel index (0 for `scale`).
        channel: usize,
        /// The value.
        value: f32,
        /// `" and non-zero"` where that applies.
        extra: &'static str,
    },
    /// A buffer passed to [`Preprocessor::run`] has the wrong length.
    #[error("{what} buffer has {got} elements, expected {expected}")]
    BufferSize {
        /// `"rgb frame"` or `"tensor"`.
        what: &'static str,
        /// Required length.
        expected: usize,
        /// Given length.
        got: usize,
    },
}

/// One axis of a PIL-style resampling: for each output index, the first input index and
/// `ksize` weights (zero past the window's end).
#[derive(Debug, Clone)]
struct Axis {
    /// First input index of each output's window.
    start: Vec<usize>,
    /// Number of inputs in each output's window.
    count: Vec<usize>,
    /// `out_size * ksize` weights in Pillow's fixed point (`PRECISION_BITS` = 22).
    weights: Vec<i32>,
    ksize: usize,
}

/// Pillow's fixed-point precision for 8-bit resampling (`32 - 8 - 2`).
const PRECISION_BITS: u32 = 22;

/// Pillow's `normalize_coeffs_8bpc`: a normalised weight to fixed point, rounding half away
/// from zero.
fn fixed_point(w: f64) -> i32 {
    let scaled = w * f64::from(1u32 << PRECISION_BITS);
    if w < 0.0 {
        (-0.5 + scaled).trunc() as i32
    } else {
        (0.5 + scaled).trunc() as i32
    }
}

/// Pillow's `clip8`: the accumulator (with its `1 << 21` rounding bias) to a grey level.
#[inline]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

impl Axis {
    /// Pillow's `precompute_coeffs` for the bilinear (triangle) filter, support 1, resampling
    /// `in_size` inputs (the box `0..in_size`) to `out_size` outputs.
    fn bilinear(in_size: usize, out_size: usize) -> Axis {
        let scale = in_size as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = filterscale; // bilinear support 1.0 * filterscale
        let ksize = support.ceil() as usize * 2 + 1;
        let mut start = Vec::with_capacity(out_size);
        let mut count = Vec::with_capacity(out_size);
        let mut weights = vec![0i32; out_size * ksize];
        let mut k = vec![0.0f64; ksize];
        for xx in 0..out_size {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            // C's `(int)` truncates towards zero; negative values are clamped to 0 anyway.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let n = xmax.saturating_sub(xmin).min(ksize);
            let mut ww = 0.0;
            for (x, kx) in k.iter_mut().enumerate().take(n) {
                let t = ((x + xmin) as f64 - center + 0.5) * ss;
                let w = triangle(t);
                *kx = w;
                ww += w;
            }
            for (x, kx) in k.iter().enumerate().take(n) {
                let w = if ww != 0.0 { kx / ww } else { *kx };
                weights[xx * ksize + x] = fixed_point(w);
            }
            start.push(xmin);
            count.push(n);
        }
        Axis {
            start,
            count,
            weights,
            ksize,
        }
    }

    #[inline]
    fn window(&self, out: usize) -> (usize, &[i32]) {
        let w = &self.weights[out * self.ksize..out * self.ksize + self.count[out]];
        (self.start[out], w)
    }
}

/// The bilinear (triangle) filter of Pillow.
fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

/// Crops, resizes and normalises RGB frames of one size into the model's input tensor.
///
/// Built once by [`Preprocessor::new`] (coefficient tables and scratch buffers sized
/// there); [`Preprocessor::run`] does not allocate.
#[derive(Debug, Clone)]
pub struct Preprocessor {
    frame_width: usize,
    frame_height: usize,
    crop: CropRect,
    out_width: usize,
    out_height: usize,
    layout: Layout,
    /// `1 / (scale * std[c])`.
    mul: [f32; 3],
    /// `-mean[c] / std[c]`.
    add: [f32; 3],
    horizontal: Axis,
    vertical: Axis,
    /// `crop.height` rows of `out_width * 3` grey levels: the horizontal pass.
    scratch: Vec<u8>,
    /// The resized image (`out_width * out_height * 3` grey levels, interleaved RGB).
    resized: Vec<u8>,
    identity: bool,
}

impl Preprocessor {
    /// Prepares preprocessing of `frame_width x frame_height` packed RGB frames: crop
    /// `crop` (which must lie inside the frame), resize to `spec.width x spec.height`,
    /// normalise with `spec`.
    pub fn new(
        frame_width: u32,
        frame_height: u32,
        crop: CropRect,
        spec: &TensorSpec,
    ) -> Result<Self, PreprocessError> {
        if frame_width == 0 || frame_height == 0 {
            return Err(PreprocessError::ZeroSize {
                what: "frame",
                width: frame_width,
                height: frame_height,
            });
        }
        if crop.width == 0 || crop.height == 0 {
            return Err(PreprocessError::ZeroSize {
                what: "crop",
                width: crop.width,
                height: crop.height,
            });
        }
        if spec.width == 0 || spec.height == 0 {
            return Err(PreprocessError::ZeroSize {
                what: "tensor",
                width: spec.width,
                height: spec.height,
            });
        }
        let inside = |o: u32, s: u32, limit: u32| o.checked_add(s).is_some_and(|e| e <= limit);
        if !inside(crop.x, crop.width, frame_width) || !inside(crop.y, crop.height, frame_height) {
            return Err(PreprocessError::CropOutsideFrame {
                crop,
                frame_width,
                frame_height,
            });
        }
        if !spec.scale.is_finite() || spec.scale == 0.0 {
            return Err(PreprocessError::InvalidNormalisation {
                field: "scale",
                channel: 0,
                value: spec.scale,
                extra: " and non-zero",
            });
        }
        let mut mul = [0.0f32; 3];
        let mut add = [0.0f32; 3];
        for c in 0..3 {
            let (m, s) = (spec.mean[c], spec.std[c]);
            if !m.is_finite() {
                return Err(PreprocessError::InvalidNormalisation {
                    field: "mean",
                    channel: c,
                    value: m,
                    extra: "",
                });
            }
            if !s.is_finite() || s == 0.0 {
                return Err(PreprocessError::InvalidNormalisation {
                    field: "std",
                    channel: c,
                    value: s,
                    extra: " and non-zero",
                });
            }
            mul[c] = (1.0 / (f64::from(spec.scale) * f64::from(s))) as f32;
            add[c] = (-f64::from(m) / f64::from(s)) as f32;
        }
        let (ow, oh) = (spec.width as usize, spec.height as usize);
        let identity = crop.width == spec.width && crop.height == spec.height;
        let (horizontal, vertical, scratch, resized) = if identity {
            let empty = Axis {
                start: Vec::new(),
                count: Vec::new(),
                weights: Vec::new(),
                ksize: 0,
            };
            (empty.clone(), empty, Vec::new(), Vec::new())
        } else {
            (
                Axis::bilinear(crop.width as usize, ow),
                Axis::bilinear(crop.height as usize, oh),
                vec![0u8; crop.height as usize * ow * 3],
                vec![0u8; ow * oh * 3],
            )
        };
        Ok(Preprocessor {
            frame_width: frame_width as usize,
            frame_height: frame_height as usize,
            crop,
            out_width: ow,
            out_height: oh,
            layout: spec.layout,
            mul,
            add,
            horizontal,
            vertical,
            scratch,
            resized,
            identity,
        })
    }

    /// Whether [`run`](Self::run) takes the identity fast path: the crop already has the
    /// model's size, so the tensor is a plain copy of the crop with normalisation (PIL's
    /// resize to the same size is the identity too).
    pub fn identity_fast_path(&self) -> bool {
        self.identity
    }

    /// The crop rectangle.
    pub fn crop(&self) -> CropRect {
        self.crop
    }

    /// Length of the RGB frame [`run`](Self::run) expects: `frame_width * frame_height * 3`.
    pub fn input_len(&self) -> usize {
        self.frame_width * self.frame_height * 3
    }

    /// Length of the tensor [`run`](Self::run) writes: `3 * width * height`.
    pub fn output_len(&self) -> usize {
        self.out_width * self.out_height * 3
    }

    /// Crops, resizes and normalises the packed RGB frame `rgb` into `out` in the spec's
    /// layout. Fails if `rgb` or `out` have the wrong length.
    pub fn run(&mut self, rgb: &[u8], out: &mut [f32]) -> Result<(), PreprocessError> {
        if rgb.len() != self.input_len() {
            return Err(PreprocessError::BufferSize {
                what: "rgb frame",
                expected: self.input_len(),
                got: rgb.len(),
            });
        }
        if out.len() != self.output_len() {
            return Err(PreprocessError::BufferSize {
                what: "tensor",
                expected: self.output_len(),
                got: out.len(),
            });
        }
        if self.identity {
            self.run_identity(rgb, out);
        } else {
            self.run_resample(rgb, out);
        }
        Ok(())
    }

    fn run_identity(&self, rgb: &[u8], out: &mut [f32]) {
        let stride = self.frame_width * 3;
        let (cx, cy) = (self.crop.x as usize, self.crop.y as usize);
        let (w, h) = (self.out_width, self.out_height);
        for y in 0..h {
            let start = (cy + y) * stride + cx * 3;
            let src = &rgb[start..start + w * 3];
            write_row(self.layout, out, w, h, y, self.mul, self.add, src);
        }
    }

    /// Pillow's two-pass 8-bit resampling: a horizontal pass of every crop row into 8-bit
    /// scratch, then a vertical pass, each with fixed-point weights and `clip8` rounding, so
    /// the resized image equals `crop.resize((w, h), Image.BILINEAR)` to the grey level.
    fn run_resample(&mut self, rgb: &[u8], out: &mut [f32]) {
        let stride = self.frame_width * 3;
        let (cx, cy) = (self.crop.x as usize, self.crop.y as usize);
        let (ow, oh) = (self.out_width, self.out_height);
        let row_len = ow * 3;
        let bias = 1i32 << (PRECISION_BITS - 1);
        for (r, dst) in self.scratch.chunks_exact_mut(row_len).enumerate() {
            let line = &rgb[(cy + r) * stride + cx * 3..];
            for (xx, px) in dst.chunks_exact_mut(3).enumerate() {
                let (xmin, weights) = self.horizontal.window(xx);
                let src = &line[xmin * 3..];
                let (mut s0, mut s1, mut s2) = (bias, bias, bias);
                for (&w, p) in weights.iter().zip(src.chunks_exact(3)) {
                    s0 += w * i32::from(p[0]);
                    s1 += w * i32::from(p[1]);
                    s2 += w * i32::from(p[2]);
                }
                px[0] = clip8(s0);
                px[1] = clip8(s1);
                px[2] = clip8(s2);
            }
        }
        for (yy, dst) in self.resized.chunks_exact_mut(row_len).enumerate() {
            let (ymin, weights) = self.vertical.window(yy);
            for (i, o) in dst.iter_mut().enumerate() {
                let mut acc = bias;
                for (k, &w) in weights.iter().enumerate() {
                    acc += w * i32::from(self.scratch[(ymin + k) * row_len + i]);
                }
                *o = clip8(acc);
            }
        }
        for yy in 0..oh {
            let src = &self.resized[yy * row_len..(yy + 1) * row_len];
            write_row(self.layout, out, ow, oh, yy, self.mul, self.add, src);
        }
    }

    /// The resized crop of the last [`run`](Self::run) as 8-bit interleaved RGB (empty on the
    /// identity fast path, where it is the crop itself).
    pub fn resized_rgb(&self) -> &[u8] {
        &self.resized
    }
}

/// Normalises one row of interleaved RGB values (`w * 3` of them) into row `y` of the
/// tensor `out` (`w x h`, `layout`).
#[allow(clippy::too_many_arguments)]
#[inline]
fn write_row<T: Copy + Into<f32>>(
    layout: Layout,
    out: &mut [f32],
    w: usize,
    h: usize,
    y: usize,
    mul: [f32; 3],
    add: [f32; 3],
    src: &[T],
) {
    match layout {
        Layout::Nhwc => {
            let dst = &mut out[y * w * 3..(y + 1) * w * 3];
            for (d, s) in dst.chunks_exact_mut(3).zip(src.chunks_exact(3)) {
                d[0] = s[0].into() * mul[0] + add[0];
                d[1] = s[1].into() * mul[1] + add[1];
                d[2] = s[2].into() * mul[2] + add[2];
            }
        }
        Layout::Nchw => {
            let plane = w * h;
            let (r, rest) = out.split_at_mut(plane);
            let (g, b) = rest.split_at_mut(plane);
            let row = y * w..(y + 1) * w;
            let (r, g, b) = (&mut r[row.clone()], &mut g[row.clone()], &mut b[row]);
            for (x, s) in src.chunks_exact(3).enumerate() {
                r[x] = s[0].into() * mul[0] + add[0];
                g[x] = s[1].into() * mul[1] + add[1];
                b[x] = s[2].into() * mul[2] + add[2];
            }
        }
    }
}
