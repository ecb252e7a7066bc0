//! Kernel tests: every optimised kernel against a naive reference written here, per output
//! pixel in `f64` straight from the formula (BT.601, Pillow's `precompute_coeffs`, OpenCV's
//! INTER_LINEAR, pytorch-grad-cam), over random sizes, strides and contents (proptest); plus
//! MJPEG round trips, corrupt input and size errors.
//!
//! Tolerances (each stated once, here):

use std::time::Duration;

use dermcam::capture::{FrameFormat, PixelFormat, RawFrame};
use dermcam::convert::{self, ConvertError, Converter, MjpegDecoder, MjpegFault};
use dermcam::frame::RgbFrame;
use dermcam::heatmap::{self, ColorLut, ColorMapKind, HeatmapError, Upsampler};
use dermcam::preprocess::{
    centre_square_crop, CropRect, Layout, PreprocessError, Preprocessor, TensorSpec,
};
use proptest::prelude::*;

/// YUYV -> RGB: exact, except where the real-valued result lies within this distance of a
/// rounding boundary (x.5); there ±1 is allowed (16-bit fixed-point coefficients).
const YUYV_TIE_BAND: f64 = 0.01;
/// RGB24 stride copy: exact.
const RGB_COPY_TOL: i32 = 0;
/// Resize (PIL BILINEAR) in grey levels, fixed-point kernel vs the naive Pillow port: exact.
const RESIZE_TOL: f64 = 0.0;
/// Normalised tensor values, f32 kernel vs f64 reference.
const TENSOR_TOL: f64 = 1e-4;
/// Upsample (OpenCV INTER_LINEAR), values in [0, 1].
const UPSAMPLE_TOL: f64 = 1e-5;
/// Min-max scaling, values in [0, 1].
const MINMAX_TOL: f64 = 1e-6;
/// JET table vs the OpenCV golden: exact.
const JET_GOLDEN_TOL: i32 = 0;
/// JET table vs the jet curves rounded in f64 (OpenCV's f32 steps move .5 ties by one).
const JET_CURVE_TOL: i32 = 1;
/// Inferno table vs matplotlib / OpenCV inferno (33 interpolated anchors).
const INFERNO_TOL: i32 = 2;
/// Blend: ±1 (16-bit fixed-point alpha).
const BLEND_TOL: i32 = 1;
/// MJPEG decode vs the `image` crate's own decode of the same JPEG.
const MJPEG_TOL: i32 = 2;

// ---------------------------------------------------------------------------------------
// Naive references
// ---------------------------------------------------------------------------------------

/// BT.601 limited range, per pixel, f64; returns the unrounded values too.
fn naive_yuv(y: u8, u: u8, v: u8) -> [f64; 3] {
    let (c, d, e) = (
        f64::from(y) - 16.0,
        f64::from(u) - 128.0,
        f64::from(v) - 128.0,
    );
    [
        1.164 * c + 1.596 * e,
        1.164 * c - 0.392 * d - 0.813 * e,
        1.164 * c + 2.017 * d,
    ]
}

fn round_clamp(v: f64) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

/// Pillow's `precompute_coeffs` for BILINEAR, for output `xx`: (xmin, normalised weights).
fn naive_pil_coeffs(in_size: usize, out_size: usize, xx: usize) -> (usize, Vec<f64>) {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = if scale < 1.0 { 1.0 } else { scale };
    let support = 1.0 * filterscale;
    let center = (xx as f64 + 0.5) * scale;
    let mut xmin = (center - support + 0.5).trunc() as i64;
    if xmin < 0 {
        xmin = 0;
    }
    let mut xmax = (center + support + 0.5).trunc() as i64;
    if xmax > in_size as i64 {
        xmax = in_size as i64;
    }
    let n = (xmax - xmin).max(0) as usize;
    let mut k: Vec<f64> = (0..n)
        .map(|x| {
            let t = ((x as i64 + xmin) as f64 - center + 0.5) / filterscale;
            if t.abs() < 1.0 {
                1.0 - t.abs()
            } else {
                0.0
            }
        })
        .collect();
    let ww: f64 = k.iter().sum();
    if ww != 0.0 {
        for w in &mut k {
            *w /= ww;
        }
    }
    (xmin as usize, k)
}

/// PIL `Image.resize((ow, oh), BILINEAR)` of the crop, written from Pillow's definition:
/// coefficients in f64 (`precompute_coeffs`), converted to 22-bit fixed point
/// (`normalize_coeffs_8bpc`), a horizontal pass into 8-bit, then a vertical pass, each
/// rounding with `clip8`. Interleaved RGB grey levels.
fn naive_resize(rgb: &[u8], fw: usize, crop: CropRect, ow: usize, oh: usize) -> Vec<f64> {
    let (cw, ch) = (crop.width as usize, crop.height as usize);
    let fixed = |w: f64| -> i64 {
        let s = w * 4_194_304.0;
        if w < 0.0 {
            (s - 0.5).trunc() as i64
        } else {
            (s + 0.5).trunc() as i64
        }
    };
    let clip8 = |acc: i64| -> u8 { (acc >> 22).clamp(0, 255) as u8 };
    // Horizontal pass over every crop row.
    let mut mid = vec![0u8; ch * ow * 3];
    for y in 0..ch {
        for xx in 0..ow {
            let (xmin, wx) = naive_pil_coeffs(cw, ow, xx);
            for c in 0..3 {
                let mut acc: i64 = 1 << 21;
                for (i, w) in wx.iter().enumerate() {
                    let px = crop.x as usize + xmin + i;
                    let py = crop.y as usize + y;
                    acc += fixed(*w) * i64::from(rgb[(py * fw + px) * 3 + c]);
                }
                mid[(y * ow + xx) * 3 + c] = clip8(acc);
            }
        }
    }
    // Vertical pass.
    let mut out = vec![0.0; ow * oh * 3];
    for yy in 0..oh {
        let (ymin, wy) = naive_pil_coeffs(ch, oh, yy);
        for xx in 0..ow {
            for c in 0..3 {
                let mut acc: i64 = 1 << 21;
                for (j, w) in wy.iter().enumerate() {
                    acc += fixed(*w) * i64::from(mid[((ymin + j) * ow + xx) * 3 + c]);
                }
                out[(yy * ow + xx) * 3 + c] = f64::from(clip8(acc));
            }
        }
    }
    out
}

/// Index into a tensor of `layout`.
fn tensor_index(layout: Layout, w: usize, h: usize, x: usize, y: usize, c: usize) -> usize {
    match layout {
        Layout::Nchw => c * w * h + y * w + x,
        Layout::Nhwc => (y * w + x) * 3 + c,
    }
}

/// OpenCV INTER_LINEAR source position for output `d`: (i0, i1, frac), f64.
fn naive_cv_coord(src: usize, dst: usize, d: usize) -> (usize, usize, f64) {
    let f = (d as f64 + 0.5) * src as f64 / dst as f64 - 0.5;
    let s = f.floor();
    let (mut s, mut fr) = (s as i64, f - s);
    if s < 0 {
        s = 0;
        fr = 0.0;
    }
    if s >= src as i64 - 1 {
        s = src as i64 - 1;
        fr = 0.0;
    }
    let s = s as usize;
    (s, (s + 1).min(src - 1), fr)
}

fn naive_upsample(src: &[f32], sw: usize, sh: usize, dw: usize, dh: usize) -> Vec<f64> {
    let mut out = vec![0.0; dw * dh];
    for dy in 0..dh {
        let (y0, y1, fy) = naive_cv_coord(sh, dh, dy);
        for dx in 0..dw {
            let (x0, x1, fx) = naive_cv_coord(sw, dw, dx);
            let p = |x: usize, y: usize| f64::from(src[y * sw + x]);
            out[dy * dw + dx] = (1.0 - fy) * ((1.0 - fx) * p(x0, y0) + fx * p(x1, y0))
                + fy * ((1.0 - fx) * p(x0, y1) + fx * p(x1, y1));
        }
    }
    out
}

/// pytorch-grad-cam `scale_cam_image` (without the resize): f64.
fn naive_min_max(v: &[f32]) -> Vec<f64> {
    let min = v
        .iter()
        .map(|&x| f64::from(x))
        .fold(f64::INFINITY, f64::min);
    let shifted: Vec<f64> = v.iter().map(|&x| f64::from(x) - min).collect();
    let max = shifted.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    shifted.iter().map(|x| x / (1e-7 + max)).collect()
}

/// `np.uint8(255 * mask)` on a float32 mask (product in f32, cast truncates), with the clamp
/// dermcam adds.
fn naive_lut_index(v: f32) -> usize {
    let v = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
    (255.0f32 * v).trunc() as usize
}

/// The jet curves of OpenCV's anchor table, rounded in f64.
fn naive_jet(i: usize) -> [u8; 3] {
    let x = i as f64 / 255.0;
    let f = |a: f64, b: f64| round_clamp(255.0 * (4.0 * x + a).min(b - 4.0 * x).clamp(0.0, 1.0));
    [f(-1.5, 4.5), f(-0.5, 3.5), f(0.5, 2.5)]
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn raw<'a>(format: FrameFormat, data: &'a [u8], sequence: u64) -> RawFrame<'a> {
    RawFrame {
        format,
        sequence,
        timestamp: Duration::from_micros(sequence * 33_333),
        error_flag: false,
        data,
    }
}

fn spec(w: u32, h: u32, layout: Layout, scale: f32, mean: [f32; 3], std: [f32; 3]) -> TensorSpec {
    TensorSpec {
        width: w,
        height: h,
        layout,
        scale,
        mean,
        std,
    }
}

/// Deterministic pseudo-random bytes (xorshift), for fixed test images.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 24) as u8
        })
        .collect()
}

/// A smooth test picture (JPEG-friendly), packed RGB.
fn smooth_picture(w: usize, h: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            v.push((x * 255 / w.max(1)) as u8);
            v.push((y * 255 / h.max(1)) as u8);
            v.push(((x + y) * 127 / (w + h)) as u8 + 60);
        }
    }
    v
}

fn encode_jpeg(rgb: &[u8], w: u32, h: u32, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode(rgb, w, h, image::ExtendedColorType::Rgb8)
        .expect("encode test JPEG");
    out
}

fn mjpeg_format(w: u32, h: u32) -> FrameFormat {
    FrameFormat {
        pixel: PixelFormat::Mjpeg,
        width: w,
        height: h,
        stride: 0,
    }
}

// ---------------------------------------------------------------------------------------
// YUYV and RGB24
// ---------------------------------------------------------------------------------------

fn yuyv_case() -> impl Strategy<Value = (usize, usize, usize, Vec<u8>)> {
    (1usize..24, 1usize..12, 0usize..9).prop_flat_map(|(pairs, h, pad)| {
        let w = pairs * 2;
        let stride = w * 2 + pad;
        (
            Just(w),
            Just(h),
            Just(stride),
            prop::collection::vec(any::<u8>(), stride * h),
        )
    })
}

proptest! {
    #[test]
    fn yuyv_matches_naive((w, h, stride, src) in yuyv_case()) {
        let mut dst = vec![0u8; w * h * 3];
        convert::yuyv::yuyv_to_rgb(&src, w, h, stride, &mut dst);
        for y in 0..h {
            for x in 0..w {
                let m = y * stride + (x / 2) * 4;
                let luma = src[m + if x % 2 == 0 { 0 } else { 2 }];
                let exact = naive_yuv(luma, src[m + 1], src[m + 3]);
                for c in 0..3 {
                    let got = dst[(y * w + x) * 3 + c];
                    let want = round_clamp(exact[c]);
                    let near_tie = (exact[c] - exact[c].floor() - 0.5).abs() < YUYV_TIE_BAND;
                    let ok = got == want || (near_tie && got.abs_diff(want) <= 1);
                    prop_assert!(ok, "pixel ({x},{y}) channel {c}: got {got}, want {want} ({})", exact[c]);
                }
            }
        }
    }

    #[test]
    fn rgb24_stride_copy_matches_naive(w in 1usize..40, h in 1usize..10, pad in 0usize..7, seed in any::<u64>()) {
        let stride = w * 3 + pad;
        let src = noise(stride * h, seed);
        let mut dst = vec![0u8; w * h * 3];
        convert::rgb::rgb24_to_rgb(&src, w, h, stride, &mut dst);
        for y in 0..h {
            for x in 0..w * 3 {
                let d = i32::from(dst[y * w * 3 + x]) - i32::from(src[y * stride + x]);
                prop_assert!(d.abs() <= RGB_COPY_TOL);
            }
        }
    }
}

#[test]
fn yuyv_reference_colours() {
    // Black, white and the BT.601 red/green/blue of limited range.
    let cases: [([u8; 3], [u8; 3]); 5] = [
        ([16, 128, 128], [0, 0, 0]),
        ([235, 128, 128], [255, 255, 255]),
        ([81, 90, 240], [255, 0, 0]),
        ([145, 54, 34], [0, 255, 0]),
        ([41, 240, 110], [0, 0, 255]),
    ];
    for ([y, u, v], rgb) in cases {
        let mut dst = [0u8; 6];
        convert::yuyv::yuyv_to_rgb(&[y, u, y, v], 2, 1, 4, &mut dst);
        for c in 0..3 {
            assert!(
                dst[c].abs_diff(rgb[c]) <= 1,
                "{y},{u},{v}: {dst:?} vs {rgb:?}"
            );
        }
        assert_eq!(dst[..3], dst[3..]);
    }
}

#[test]
fn converter_yuyv_with_padding_and_metadata() {
    let (w, h, stride) = (6u32, 3u32, 16u32);
    let format = FrameFormat {
        pixel: PixelFormat::Yuyv,
        width: w,
        height: h,
        stride,
    };
    let data = noise((stride * h) as usize, 7);
    let mut conv = Converter::new(format).expect("valid format");
    let mut dst = RgbFrame::new(w, h);
    conv.convert(&raw(format, &data, 42), &mut dst)
        .expect("convert");
    assert_eq!(dst.sequence, 42);
    assert_eq!(dst.timestamp, Duration::from_micros(42 * 33_333));
    let mut want = vec![0u8; (w * h * 3) as usize];
    convert::yuyv::yuyv_to_rgb(&data, w as usize, h as usize, stride as usize, &mut want);
    assert_eq!(dst.data(), &want[..]);
}

#[test]
fn converter_rgb24() {
    let format = FrameFormat {
        pixel: PixelFormat::Rgb24,
        width: 5,
        height: 2,
        stride: 17,
    };
    let data = noise(34, 3);
    let mut conv = Converter::new(format).expect("valid format");
    let mut dst = RgbFrame::new(5, 2);
    conv.convert(&raw(format, &data, 1), &mut dst)
        .expect("convert");
    assert_eq!(&dst.data()[..15], &data[..15]);
    assert_eq!(&dst.data()[15..], &data[17..32]);
}

#[test]
fn converter_rejects_bad_formats() {
    let f = |pixel, width, height, stride| FrameFormat {
        pixel,
        width,
        height,
        stride,
    };
    assert!(matches!(
        Converter::new(f(PixelFormat::Yuyv, 7, 4, 14)),
        Err(ConvertError::OddWidth { width: 7 })
    ));
    assert!(matches!(
        Converter::new(f(PixelFormat::Yuyv, 8, 4, 15)),
        Err(ConvertError::StrideTooSmall {
            stride: 15,
            min: 16,
            ..
        })
    ));
    assert!(matches!(
        Converter::new(f(PixelFormat::Rgb24, 8, 4, 20)),
        Err(ConvertError::StrideTooSmall {
            stride: 20,
            min: 24,
            ..
        })
    ));
    assert!(matches!(
        Converter::new(f(PixelFormat::Rgb24, 0, 4, 20)),
        Err(ConvertError::InvalidSize { .. })
    ));
    assert!(matches!(
        Converter::new(f(PixelFormat::Mjpeg, 70_000, 4, 0)),
        Err(ConvertError::InvalidSize { .. })
    ));
}

#[test]
fn converter_size_errors() {
    let format = FrameFormat {
        pixel: PixelFormat::Yuyv,
        width: 4,
        height: 2,
        stride: 8,
    };
    let mut conv = Converter::new(format).expect("valid");
    let mut dst = RgbFrame::new(4, 2);
    let short = [0u8; 15];
    let err = conv.convert(&raw(format, &short, 9), &mut dst).unwrap_err();
    assert!(
        matches!(
            err,
            ConvertError::Truncated {
                sequence: 9,
                expected: 16,
                got: 15
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("15"), "{err}");
    let data = [0u8; 16];
    let mut wrong = RgbFrame::new(4, 3);
    assert!(matches!(
        conv.convert(&raw(format, &data, 1), &mut wrong),
        Err(ConvertError::SizeMismatch {
            expected_height: 2,
            got_height: 3,
            ..
        })
    ));
    let other = FrameFormat {
        stride: 10,
        ..format
    };
    let data = [0u8; 20];
    assert!(matches!(
        conv.convert(&raw(other, &data, 1), &mut dst),
        Err(ConvertError::FormatMismatch { .. })
    ));
    // Nothing was written into the metadata on failure.
    assert_eq!(dst.sequence, 0);
}

// ---------------------------------------------------------------------------------------
// MJPEG
// ---------------------------------------------------------------------------------------

#[test]
fn decoder_name_matches_lock_file() {
    let lock = include_str!("../Cargo.lock");
    let (name, version) = convert::DECODER_NAME
        .split_once(' ')
        .expect("name and version");
    let entry = format!("name = \"{name}\"\nversion = \"{version}\"");
    assert!(lock.contains(&entry), "Cargo.lock has no {entry}");
}

#[test]
fn mjpeg_round_trip_matches_image_crate() {
    for (w, h, q) in [(64u32, 48u32, 90u8), (33, 17, 75), (16, 16, 100)] {
        let picture = smooth_picture(w as usize, h as usize);
        let jpeg = encode_jpeg(&picture, w, h, q);
        let reference = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg)
            .expect("image decodes its own JPEG")
            .to_rgb8();
        let format = mjpeg_format(w, h);
        let mut conv = Converter::new(format).expect("valid");
        let mut dst = RgbFrame::new(w, h);
        conv.convert(&raw(format, &jpeg, 5), &mut dst)
            .expect("decode");
        assert_eq!(dst.sequence, 5);
        let worst = dst
            .data()
            .iter()
            .zip(reference.as_raw())
            .map(|(&a, &b)| (i32::from(a) - i32::from(b)).abs())
            .max()
            .unwrap_or(0);
        assert!(worst <= MJPEG_TOL, "{w}x{h} q{q}: max difference {worst}");
        // And it is close to the original picture.
        let mean_err: f64 = dst
            .data()
            .iter()
            .zip(&picture)
            .map(|(&a, &b)| f64::from((i32::from(a) - i32::from(b)).abs()))
            .sum::<f64>()
            / picture.len() as f64;
        assert!(mean_err < 6.0, "{w}x{h}: mean error {mean_err}");
    }
}

#[test]
fn mjpeg_truncated_is_an_error() {
    let (w, h) = (48u32, 32u32);
    let jpeg = encode_jpeg(&noise((w * h * 3) as usize, 11), w, h, 90);
    let mut dec = MjpegDecoder::new(w, h).expect("valid");
    let mut dst = vec![0u8; (w * h * 3) as usize];
    for cut in [
        0usize,
        1,
        2,
        10,
        100,
        jpeg.len() / 2,
        jpeg.len() * 9 / 10,
        jpeg.len() - 8,
        jpeg.len() - 1,
    ] {
        let err = dec.decode(3, &jpeg[..cut], &mut dst);
        assert!(
            matches!(err, Err(ConvertError::Mjpeg { sequence: 3, .. })),
            "cut at {cut} of {}: {err:?}",
            jpeg.len()
        );
    }
    dec.decode(3, &jpeg, &mut dst)
        .expect("the whole JPEG decodes");
    // Zero padding after EOI, as some cameras send, is fine.
    let mut padded = jpeg.clone();
    padded.extend([0u8; 32]);
    dec.decode(3, &padded, &mut dst)
        .expect("padded JPEG decodes");
}

#[test]
fn mjpeg_corrupt_and_wrong_size() {
    let (w, h) = (32u32, 24u32);
    let jpeg = encode_jpeg(&smooth_picture(w as usize, h as usize), w, h, 85);
    let mut dst = vec![0u8; (w * h * 3) as usize];
    let mut dec = MjpegDecoder::new(w, h).expect("valid");
    let not_jpeg = dec.decode(1, b"hello, world", &mut dst);
    assert!(matches!(
        not_jpeg,
        Err(ConvertError::Mjpeg {
            reason: MjpegFault::NotJpeg { len: 12 },
            ..
        })
    ));
    let mut garbage = vec![0xFF, 0xD8];
    garbage.extend(noise(500, 5));
    assert!(matches!(
        dec.decode(1, &garbage, &mut dst),
        Err(ConvertError::Mjpeg { .. })
    ));
    // A valid JPEG of other dimensions.
    let mut other = MjpegDecoder::new(w + 2, h).expect("valid");
    let mut dst2 = vec![0u8; ((w + 2) * h * 3) as usize];
    let err = other.decode(8, &jpeg, &mut dst2).unwrap_err();
    assert!(
        matches!(
            err,
            ConvertError::MjpegDimensions {
                sequence: 8,
                expected_width: 34,
                got_width: 32,
                got_height: 24,
                ..
            }
        ),
        "{err}"
    );
    // Wrong destination buffer.
    let mut small = vec![0u8; 10];
    assert!(dec.decode(1, &jpeg, &mut small).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Bit flips and byte smashes anywhere never panic: the result is Ok (the damage
    /// decoded to other pixels) or an MJPEG error.
    #[test]
    fn mjpeg_bit_flips_never_panic(flips in prop::collection::vec((any::<prop::sample::Index>(), 0u8..8), 1..6),
                                   cut in prop::option::of(any::<prop::sample::Index>())) {
        let (w, h) = (24u32, 16u32);
        let mut jpeg = encode_jpeg(&smooth_picture(w as usize, h as usize), w, h, 80);
        for (at, bit) in flips {
            let i = at.index(jpeg.len());
            jpeg[i] ^= 1 << bit;
        }
        if let Some(c) = cut {
            let n = c.index(jpeg.len());
            jpeg.truncate(n);
        }
        let mut dec = MjpegDecoder::new(w, h).expect("valid");
        let mut dst = vec![0u8; (w * h * 3) as usize];
        match dec.decode(0, &jpeg, &mut dst) {
            Ok(()) | Err(ConvertError::Mjpeg { .. }) | Err(ConvertError::MjpegDimensions { .. }) => {}
            Err(other) => prop_assert!(false, "unexpected error {other}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Crop, resize, normalise
// ---------------------------------------------------------------------------------------

#[test]
fn centre_square_crop_examples() {
    assert_eq!(
        centre_square_crop(640, 480, 1.0),
        CropRect {
            x: 80,
            y: 0,
            width: 480,
            height: 480
        }
    );
    assert_eq!(
        centre_square_crop(640, 480, 0.5),
        CropRect {
            x: 200,
            y: 120,
            width: 240,
            height: 240
        }
    );
    // round(479 * 0.5) = round(239.5) = 240; x = (641 - 240) / 2 = 200 (integer division).
    assert_eq!(
        centre_square_crop(641, 479, 0.5),
        CropRect {
            x: 200,
            y: 119,
            width: 240,
            height: 240
        }
    );
    assert_eq!(centre_square_crop(10, 10, 0.0).width, 1);
    assert_eq!(centre_square_crop(10, 20, 3.0).width, 10);
    assert_eq!(centre_square_crop(10, 20, f32::NAN).width, 1);
}

fn preprocess_case() -> impl Strategy<Value = (u32, u32, CropRect, u32, u32, u64)> {
    (1u32..48, 1u32..48).prop_flat_map(|(fw, fh)| {
        (1..=fw, 1..=fh).prop_flat_map(move |(cw, ch)| {
            (0..=fw - cw, 0..=fh - ch, 1u32..40, 1u32..40, any::<u64>()).prop_map(
                move |(x, y, ow, oh, seed)| {
                    (
                        fw,
                        fh,
                        CropRect {
                            x,
                            y,
                            width: cw,
                            height: ch,
                        },
                        ow,
                        oh,
                        seed,
                    )
                },
            )
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]
    #[test]
    fn resize_matches_naive_pil((fw, fh, crop, ow, oh, seed) in preprocess_case()) {
        let rgb = noise((fw * fh * 3) as usize, seed);
        // scale 1, mean 0, std 1: the tensor holds the resized grey levels.
        let s = spec(ow, oh, Layout::Nhwc, 1.0, [0.0; 3], [1.0; 3]);
        let mut pre = Preprocessor::new(fw, fh, crop, &s).expect("valid");
        let mut out = vec![0.0f32; s.len()];
        pre.run(&rgb, &mut out).expect("run");
        let want = naive_resize(&rgb, fw as usize, crop, ow as usize, oh as usize);
        for (i, (&g, &w)) in out.iter().zip(&want).enumerate() {
            prop_assert!((f64::from(g) - w).abs() <= RESIZE_TOL, "element {i}: {g} vs {w}");
        }
    }

    #[test]
    fn preprocess_matches_naive_normalised(
        (fw, fh, crop, ow, oh, seed) in preprocess_case(),
        nchw in any::<bool>(),
        mean in prop::array::uniform3(0.0f32..1.0),
        std in prop::array::uniform3(0.05f32..1.0),
    ) {
        let layout = if nchw { Layout::Nchw } else { Layout::Nhwc };
        let rgb = noise((fw * fh * 3) as usize, seed);
        let s = spec(ow, oh, layout, 255.0, mean, std);
        let mut pre = Preprocessor::new(fw, fh, crop, &s).expect("valid");
        let mut out = vec![f32::NAN; s.len()];
        pre.run(&rgb, &mut out).expect("run");
        let resized = naive_resize(&rgb, fw as usize, crop, ow as usize, oh as usize);
        let (w, h) = (ow as usize, oh as usize);
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let v = resized[(y * w + x) * 3 + c];
                    let want = (v / 255.0 - f64::from(mean[c])) / f64::from(std[c]);
                    let got = f64::from(out[tensor_index(layout, w, h, x, y, c)]);
                    prop_assert!((got - want).abs() <= TENSOR_TOL, "({x},{y},{c}): {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn identity_fast_path_is_copy_and_normalise(
        fw in 1u32..40, fh in 1u32..40, seed in any::<u64>(), nchw in any::<bool>(),
    ) {
        let crop = centre_square_crop(fw, fh, 0.8);
        let layout = if nchw { Layout::Nchw } else { Layout::Nhwc };
        let (mean, std) = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);
        let s = spec(crop.width, crop.height, layout, 255.0, mean, std);
        let mut pre = Preprocessor::new(fw, fh, crop, &s).expect("valid");
        prop_assert!(pre.identity_fast_path());
        let rgb = noise((fw * fh * 3) as usize, seed);
        let mut out = vec![0.0f32; s.len()];
        pre.run(&rgb, &mut out).expect("run");
        let (w, h) = (crop.width as usize, crop.height as usize);
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let p = rgb[((crop.y as usize + y) * fw as usize + crop.x as usize + x) * 3 + c];
                    let want = (f64::from(p) / 255.0 - f64::from(mean[c])) / f64::from(std[c]);
                    let got = f64::from(out[tensor_index(layout, w, h, x, y, c)]);
                    prop_assert!((got - want).abs() <= TENSOR_TOL);
                }
            }
        }
    }
}

#[test]
fn pil_downscale_known_values() {
    // 4 -> 2 pixels, one row: PIL's BILINEAR (support 2) weights for output 0 are
    // centre 1.0, xmin 0, xmax 3 -> triangle(-0.25, 0.25, 0.75) = (0.75, 0.75, 0.25)/1.75.
    let row: [u8; 12] = [0, 0, 0, 70, 70, 70, 140, 140, 140, 210, 210, 210];
    let s = spec(2, 1, Layout::Nhwc, 1.0, [0.0; 3], [1.0; 3]);
    let crop = CropRect {
        x: 0,
        y: 0,
        width: 4,
        height: 1,
    };
    let mut pre = Preprocessor::new(4, 1, crop, &s).expect("valid");
    assert!(!pre.identity_fast_path());
    let mut out = [0.0f32; 6];
    pre.run(&row, &mut out).expect("run");
    let want0 = (0.75 * 0.0 + 0.75 * 70.0 + 0.25 * 140.0) / 1.75;
    let want1 = (0.25 * 70.0 + 0.75 * 140.0 + 0.75 * 210.0) / 1.75;
    assert!((f64::from(out[0]) - want0).abs() < 1e-4, "{out:?}");
    assert!((f64::from(out[3]) - want1).abs() < 1e-4, "{out:?}");
}

#[test]
fn preprocess_errors() {
    let s = spec(8, 8, Layout::Nchw, 255.0, [0.5; 3], [0.25; 3]);
    let crop = CropRect {
        x: 4,
        y: 0,
        width: 8,
        height: 8,
    };
    assert!(matches!(
        Preprocessor::new(10, 10, crop, &s),
        Err(PreprocessError::CropOutsideFrame {
            frame_width: 10,
            ..
        })
    ));
    let crop = CropRect {
        x: u32::MAX,
        y: 0,
        width: 2,
        height: 2,
    };
    assert!(matches!(
        Preprocessor::new(10, 10, crop, &s),
        Err(PreprocessError::CropOutsideFrame { .. })
    ));
    let crop = CropRect {
        x: 0,
        y: 0,
        width: 10,
        height: 10,
    };
    let zero = spec(0, 8, Layout::Nchw, 255.0, [0.5; 3], [0.25; 3]);
    assert!(matches!(
        Preprocessor::new(10, 10, crop, &zero),
        Err(PreprocessError::ZeroSize { what: "tensor", .. })
    ));
    let bad_std = spec(8, 8, Layout::Nchw, 255.0, [0.5; 3], [0.25, 0.0, 0.25]);
    assert!(matches!(
        Preprocessor::new(10, 10, crop, &bad_std),
        Err(PreprocessError::InvalidNormalisation {
            field: "std",
            channel: 1,
            ..
        })
    ));
    let bad_scale = spec(8, 8, Layout::Nchw, 0.0, [0.5; 3], [0.25; 3]);
    assert!(matches!(
        Preprocessor::new(10, 10, crop, &bad_scale),
        Err(PreprocessError::InvalidNormalisation { field: "scale", .. })
    ));
    let mut pre = Preprocessor::new(10, 10, crop, &s).expect("valid");
    let mut out = vec![0.0f32; 8 * 8 * 3];
    assert_eq!(
        pre.run(&[0u8; 299], &mut out),
        Err(PreprocessError::BufferSize {
            what: "rgb frame",
            expected: 300,
            got: 299
        })
    );
    let mut short = vec![0.0f32; 10];
    assert_eq!(
        pre.run(&[0u8; 300], &mut short),
        Err(PreprocessError::BufferSize {
            what: "tensor",
            expected: 192,
            got: 10
        })
    );
    assert_eq!("nhwc".parse::<Layout>(), Ok(Layout::Nhwc));
    assert_eq!("NCHW".parse::<Layout>(), Ok(Layout::Nchw));
    assert!("CHW".parse::<Layout>().is_err());
}

// ---------------------------------------------------------------------------------------
// Heatmap: upsample, min-max, colour map, blend
// ---------------------------------------------------------------------------------------

proptest! {
    #[test]
    fn upsample_matches_naive_opencv(
        sw in 1usize..12, sh in 1usize..12, dw in 1usize..60, dh in 1usize..60,
        seed in any::<u64>(),
    ) {
        let src: Vec<f32> = noise(sw * sh, seed).iter().map(|&b| f32::from(b) / 255.0).collect();
        let mut up = Upsampler::new(sw, sh, dw, dh).expect("valid");
        let mut dst = vec![0.0f32; dw * dh];
        up.run(&src, &mut dst).expect("run");
        let want = naive_upsample(&src, sw, sh, dw, dh);
        for (i, (&g, &w)) in dst.iter().zip(&want).enumerate() {
            prop_assert!((f64::from(g) - w).abs() <= UPSAMPLE_TOL, "element {i}: {g} vs {w}");
        }
    }

    #[test]
    fn min_max_matches_naive(v in prop::collection::vec(-50.0f32..50.0, 1..200)) {
        let mut got = v.clone();
        heatmap::scale_min_max(&mut got);
        let want = naive_min_max(&v);
        for (&g, &w) in got.iter().zip(&want) {
            prop_assert!((f64::from(g) - w).abs() <= MINMAX_TOL, "{g} vs {w}");
        }
    }

    #[test]
    fn colorize_matches_naive_lookup(v in prop::collection::vec(-0.5f32..1.5, 1..100), inferno in any::<bool>()) {
        let kind = if inferno { ColorMapKind::Inferno } else { ColorMapKind::Jet };
        let lut = ColorLut::new(kind);
        let mut out = vec![0u8; v.len() * 3];
        lut.colorize(&v, &mut out).expect("sizes match");
        for (i, &x) in v.iter().enumerate() {
            let idx = naive_lut_index(x);
            prop_assert_eq!(usize::from(lut.index(x)), idx);
            prop_assert_eq!(&out[i * 3..i * 3 + 3], &lut.table()[idx][..]);
        }
    }

    #[test]
    fn blend_matches_naive(
        fw in 1u32..30, fh in 1u32..20, pad in 0usize..5, alpha in -0.5f32..1.5,
        rect_seed in any::<(u32, u32, u32, u32)>(), seed in any::<u64>(),
    ) {
        let rw = rect_seed.0 % fw + 1;
        let rh = rect_seed.1 % fh + 1;
        let rect = CropRect { x: rect_seed.2 % (fw - rw + 1), y: rect_seed.3 % (fh - rh + 1), width: rw, height: rh };
        let stride = fw as usize * 3 + pad;
        let frame0 = noise(stride * fh as usize, seed);
        let heat = noise((rw * rh * 3) as usize, seed ^ 0x55);
        let mut frame = frame0.clone();
        heatmap::blend_into(&mut frame, stride, rect, &heat, alpha).expect("fits");
        let a = f64::from(alpha.clamp(0.0, 1.0));
        for y in 0..fh as usize {
            for x in 0..stride {
                let i = y * stride + x;
                let inside = y >= rect.y as usize && y < (rect.y + rect.height) as usize
                    && x >= rect.x as usize * 3 && x < (rect.x + rect.width) as usize * 3;
                if inside {
                    let h = heat[(y - rect.y as usize) * rw as usize * 3 + x - rect.x as usize * 3];
                    let want = ((1.0 - a) * f64::from(frame0[i]) + a * f64::from(h)).round() as i32;
                    prop_assert!((i32::from(frame[i]) - want).abs() <= BLEND_TOL, "({x},{y}) {} vs {want}", frame[i]);
                } else {
                    prop_assert_eq!(frame[i], frame0[i], "outside the rectangle at ({}, {})", x, y);
                }
            }
        }
    }
}

#[test]
fn upsample_edges_and_identity() {
    // 2 -> 4: OpenCV gives [a, 0.75a + 0.25b, 0.25a + 0.75b, b].
    let mut up = Upsampler::new(2, 1, 4, 1).expect("valid");
    let mut dst = [0.0f32; 4];
    up.run(&[0.0, 1.0], &mut dst).expect("run");
    assert_eq!(dst, [0.0, 0.25, 0.75, 1.0]);
    let mut same = Upsampler::new(3, 2, 3, 2).expect("valid");
    let src = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    let mut out = [0.0f32; 6];
    same.run(&src, &mut out).expect("run");
    assert_eq!(out, src);
}

#[test]
fn heatmap_errors() {
    assert!(matches!(
        Upsampler::new(0, 7, 224, 224),
        Err(HeatmapError::ZeroSize {
            what: "upsampler source",
            ..
        })
    ));
    let mut up = Upsampler::new(7, 7, 16, 16).expect("valid");
    let mut dst = vec![0.0f32; 256];
    assert_eq!(
        up.run(&[0.0; 48], &mut dst),
        Err(HeatmapError::BufferSize {
            what: "upsampler source",
            expected: 49,
            got: 48
        })
    );
    assert!(up.run(&[0.0; 49], &mut dst[..255]).is_err());
    let lut = ColorLut::new(ColorMapKind::Jet);
    assert!(lut.colorize(&[0.5; 4], &mut [0u8; 11]).is_err());
    let rect = CropRect {
        x: 2,
        y: 2,
        width: 3,
        height: 3,
    };
    let mut frame = vec![0u8; 5 * 3 * 5];
    assert!(heatmap::blend_into(&mut frame, 15, rect, &[0u8; 27], 0.5).is_ok());
    let outside = CropRect { x: 3, ..rect };
    assert!(matches!(
        heatmap::blend_into(&mut frame, 15, outside, &[0u8; 27], 0.5),
        Err(HeatmapError::RectOutsideFrame { .. })
    ));
    assert!(matches!(
        heatmap::blend_into(&mut frame, 15, rect, &[0u8; 26], 0.5),
        Err(HeatmapError::BufferSize { .. })
    ));
    let low = CropRect { y: 3, ..rect };
    assert!(heatmap::blend_into(&mut frame, 15, low, &[0u8; 27], 0.5).is_err());
    assert_eq!("jet".parse::<ColorMapKind>(), Ok(ColorMapKind::Jet));
    assert_eq!("Inferno".parse::<ColorMapKind>(), Ok(ColorMapKind::Inferno));
    assert!("viridis".parse::<ColorMapKind>().is_err());
}

#[test]
fn scale_min_max_edge_cases() {
    let mut empty: [f32; 0] = [];
    heatmap::scale_min_max(&mut empty);
    let mut constant = [3.0f32; 5];
    heatmap::scale_min_max(&mut constant);
    assert_eq!(constant, [0.0; 5]);
    let mut v = [2.0f32, 4.0, 6.0];
    heatmap::scale_min_max(&mut v);
    assert_eq!(v[0], 0.0);
    assert!((v[2] - 1.0).abs() < 1e-6);
}

#[test]
fn lut_index_truncates_like_numpy() {
    let lut = ColorLut::new(ColorMapKind::Inferno);
    assert_eq!(lut.index(0.0), 0);
    assert_eq!(lut.index(1.0), 255);
    assert_eq!(lut.index(2.0), 255);
    assert_eq!(lut.index(-1.0), 0);
    assert_eq!(lut.index(f32::NAN), 0);
    assert_eq!(lut.index(0.999), 254); // 254.745 truncates
    assert_eq!(lut.index(0.5), 127); // 127.5 truncates
}

#[test]
fn jet_follows_the_curves() {
    let lut = ColorLut::new(ColorMapKind::Jet);
    for i in 0..256 {
        let want = naive_jet(i);
        for c in 0..3 {
            let d = (i32::from(lut.table()[i][c]) - i32::from(want[c])).abs();
            assert!(
                d <= JET_CURVE_TOL,
                "entry {i} channel {c}: {:?} vs {want:?}",
                lut.table()[i]
            );
        }
    }
    // Ends of OpenCV's JET: dark blue to dark red.
    assert_eq!(lut.table()[0], [0, 0, 128]);
    assert_eq!(lut.table()[255], [128, 0, 0]);
}

#[test]
fn inferno_spot_values() {
    // matplotlib `_inferno_data` entries that are not anchors, * 255 rounded.
    let lut = ColorLut::new(ColorMapKind::Inferno);
    let spots: [(usize, [f64; 3]); 4] = [
        (4, [0.006006, 0.004692, 0.038558]),
        (100, [0.565854, 0.143567, 0.408258]),
        (180, [0.956852, 0.475356, 0.094695]),
        (251, [0.966249, 0.980678, 0.587206]),
    ];
    for (i, rgb) in spots {
        for (c, &v) in rgb.iter().enumerate() {
            let want = (v * 255.0).round() as i32;
            let d = (i32::from(lut.table()[i][c]) - want).abs();
            assert!(
                d <= INFERNO_TOL,
                "entry {i} channel {c}: {:?}",
                lut.table()[i]
            );
        }
    }
}

/// Compares the tables with `tests/golden/colormaps.json` (or the file named by
/// `DERMCAM_COLORMAP_GOLDEN`), written from OpenCV / matplotlib; skipped while it is absent.
#[test]
fn colormaps_match_golden() {
    let path = std::env::var("DERMCAM_COLORMAP_GOLDEN").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/colormaps.json").to_owned()
    });
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            println!("SKIPPED colormaps_match_golden: cannot read {path}: {e}");
            return;
        }
    };
    let golden: serde_json::Value = serde_json::from_str(&text).expect("golden is JSON");
    for (name, kind, tol) in [
        ("jet", ColorMapKind::Jet, JET_GOLDEN_TOL),
        ("inferno", ColorMapKind::Inferno, INFERNO_TOL),
    ] {
        let rows = golden[name]
            .as_array()
            .unwrap_or_else(|| panic!("golden has no {name}"));
        assert_eq!(rows.len(), 256, "{name} has {} rows", rows.len());
        let lut = ColorLut::new(kind);
        let mut worst = 0;
        for (i, row) in rows.iter().enumerate() {
            for c in 0..3 {
                let want = row[c]
                    .as_i64()
                    .unwrap_or_else(|| panic!("{name}[{i}][{c}]"))
                    as i32;
                let d = (i32::from(lut.table()[i][c]) - want).abs();
                worst = worst.max(d);
                assert!(
                    d <= tol,
                    "{name}[{i}][{c}]: {} vs {want}",
                    lut.table()[i][c]
                );
            }
        }
        println!("{name}: max difference from golden {worst} (tolerance {tol})");
    }
}

/// The resize equals real PIL output to the grey level: `tests/golden/preprocess/*.json`
/// holds `crop.resize((64, 64), Image.BILINEAR)` computed by Pillow on synthetic PNGs.
#[test]
fn resize_equals_pillow_golden() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/preprocess");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).expect("golden dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let g: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        let image = concat!(env!("CARGO_MANIFEST_DIR"), "/").to_string()
            + g["image"].as_str().expect("image");
        let img = image::open(&image).expect("png").to_rgb8();
        let (fw, fh) = img.dimensions();
        let c = &g["crop"];
        let crop = CropRect {
            x: c["x"].as_u64().expect("x") as u32,
            y: c["y"].as_u64().expect("y") as u32,
            width: c["width"].as_u64().expect("w") as u32,
            height: c["height"].as_u64().expect("h") as u32,
        };
        let s = spec(
            64,
            64,
            Layout::Nchw,
            255.0,
            [0.485, 0.456, 0.406],
            [0.229, 0.224, 0.225],
        );
        let mut pre = Preprocessor::new(fw, fh, crop, &s).expect("valid");
        let mut out = vec![0.0f32; s.len()];
        pre.run(img.as_raw(), &mut out).expect("run");
        let want: Vec<u8> = g["resized_rgb_u8"]
            .as_array()
            .expect("resized")
            .iter()
            .map(|v| v.as_u64().expect("u8") as u8)
            .collect();
        let differing = pre
            .resized_rgb()
            .iter()
            .zip(&want)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(
            differing,
            0,
            "{}: {differing} grey levels differ from Pillow",
            path.display()
        );
        let tensor: Vec<f32> = g["input"]
            .as_array()
            .expect("input")
            .iter()
            .map(|v| v.as_f64().expect("f") as f32)
            .collect();
        let worst = out
            .iter()
            .zip(&tensor)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(
            worst <= 1e-5,
            "{}: tensor differs by {worst}",
            path.display()
        );
        checked += 1;
    }
    assert!(checked >= 2, "expected the Pillow goldens");
}

// ---------------------------------------------------------------------------------------
// JPEG decoding equal to the training pipeline's (Pillow = libjpeg-turbo)
// ---------------------------------------------------------------------------------------

/// `Some(reason)` when libjpeg-turbo cannot be loaded here: the test is then skipped with a
/// message, unless `DERMCAM_REQUIRE_LIBJPEG=1` (set by `.ci/run`, which installs it).
fn libjpeg_missing() -> Option<String> {
    let reason = convert::libjpeg::unavailable_reason()?;
    if std::env::var("DERMCAM_REQUIRE_LIBJPEG").as_deref() == Ok("1") {
        panic!("DERMCAM_REQUIRE_LIBJPEG=1 but {reason}");
    }
    eprintln!("SKIPPED: {reason}");
    Some(reason.to_string())
}

fn jpeg_golden(name: &str) -> (Vec<u8>, image::RgbImage) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/jpeg");
    let jpeg = std::fs::read(dir.join(format!("{name}.jpg"))).expect("golden JPEG");
    let pil = image::open(dir.join(format!("{name}-pil.png")))
        .expect("golden PNG")
        .to_rgb8();
    (jpeg, pil)
}

/// libjpeg-turbo, through both the stream converter and the stills path, gives exactly the
/// pixels Pillow decoded (tests/golden/jpeg/make.py), for 4:2:0, 4:2:2 and 4:4:4 at odd sizes.
#[test]
fn libjpeg_decodes_exactly_like_pillow() {
    if libjpeg_missing().is_some() {
        return;
    }
    for name in ["s420", "s422", "s444"] {
        let (jpeg, pil) = jpeg_golden(name);
        let (w, h) = pil.dimensions();
        let format = mjpeg_format(w, h);
        let mut conv =
            Converter::with_jpeg(format, convert::JpegDecoderChoice::LibjpegTurbo).expect("conv");
        assert_eq!(
            conv.jpeg_decoder_name(),
            Some(convert::LIBJPEG_DECODER_NAME)
        );
        let mut dst = RgbFrame::new(w, h);
        conv.convert(&raw(format, &jpeg, 1), &mut dst)
            .expect("decode");
        let differing = dst
            .data()
            .iter()
            .zip(pil.as_raw())
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(differing, 0, "{name}: {differing} bytes differ from Pillow");
        let (vw, vh, v) =
            convert::decode_jpeg_to_vec(&jpeg, convert::JpegDecoderChoice::LibjpegTurbo)
                .expect("stills decode");
        assert_eq!((vw, vh), (w, h));
        assert!(
            v == *pil.as_raw(),
            "{name}: stills path differs from Pillow"
        );
    }
}

/// zune-jpeg (the fallback) stays within a couple of grey levels of Pillow: the difference
/// that made the libjpeg-turbo path worth having. Printed, and bounded.
#[test]
fn zune_jpeg_is_close_to_pillow() {
    for name in ["s420", "s422", "s444"] {
        let (jpeg, pil) = jpeg_golden(name);
        let (_, _, v) = convert::decode_jpeg_to_vec(&jpeg, convert::JpegDecoderChoice::ZuneJpeg)
            .expect("zune decode");
        let diffs: Vec<i32> = v
            .iter()
            .zip(pil.as_raw())
            .map(|(&a, &b)| (i32::from(a) - i32::from(b)).abs())
            .collect();
        let worst = diffs.iter().copied().max().unwrap_or(0);
        let n = diffs.iter().filter(|&&d| d > 0).count();
        eprintln!(
            "{name}: zune-jpeg differs from Pillow on {n}/{} bytes, max {worst}",
            diffs.len()
        );
        assert!(
            worst <= 8,
            "{name}: zune-jpeg is {worst} grey levels off Pillow"
        );
    }
}

/// Truncated or corrupt data is an error from libjpeg-turbo too (strict: warnings are
/// errors), never a half-grey frame or a crash.
#[test]
fn libjpeg_rejects_truncated_and_corrupt_frames() {
    if libjpeg_missing().is_some() {
        return;
    }
    let (jpeg, pil) = jpeg_golden("s420");
    let (w, h) = pil.dimensions();
    let format = mjpeg_format(w, h);
    let mut conv =
        Converter::with_jpeg(format, convert::JpegDecoderChoice::LibjpegTurbo).expect("conv");
    let mut dst = RgbFrame::new(w, h);
    // Cut in the middle of the scan, EOI re-appended so the cheap EOI check passes.
    let mut cut = jpeg[..jpeg.len() * 2 / 3].to_vec();
    cut.extend_from_slice(&[0xFF, 0xD9]);
    let e = conv
        .convert(&raw(format, &cut, 2), &mut dst)
        .expect_err("truncated scan must fail");
    assert!(matches!(e, ConvertError::Mjpeg { sequence: 2, .. }), "{e}");
    // Garbage after a valid SOI.
    let mut garbage = vec![0xFF, 0xD8];
    garbage.extend((0..500u32).map(|i| (i * 37 % 251) as u8));
    garbage.extend_from_slice(&[0xFF, 0xD9]);
    assert!(conv.convert(&raw(format, &garbage, 3), &mut dst).is_err());
    // The decoder still works afterwards.
    conv.convert(&raw(format, &jpeg, 4), &mut dst)
        .expect("decode after errors");
    assert!(dst.data() == pil.as_raw().as_slice());
}
