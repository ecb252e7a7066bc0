//! Colour maps: OpenCV's `COLORMAP_JET` (what pytorch-grad-cam uses) and matplotlib's
//! `inferno`, as 256-entry lookup tables built once.

use std::str::FromStr;

use super::HeatmapError;

/// Which colour map to draw the heatmap with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ColorMapKind {
    /// OpenCV `COLORMAP_JET`, bit-exact.
    #[default]
    Jet,
    /// matplotlib `inferno`, within 2 levels per channel.
    Inferno,
}

/// A colour map name other than `jet` or `inferno`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown colour map {0:?} (expected \"jet\" or \"inferno\")")]
pub struct ParseColorMapError(pub String);

impl FromStr for ColorMapKind {
    type Err = ParseColorMapError;

    /// Parses `jet` or `inferno` (any case), as written in the config.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("jet") {
            Ok(ColorMapKind::Jet)
        } else if s.eq_ignore_ascii_case("inferno") {
            Ok(ColorMapKind::Inferno)
        } else {
            Err(ParseColorMapError(s.to_owned()))
        }
    }
}

/// matplotlib's `inferno` (`_cm_listed._inferno_data`, CC0) sampled at every 8th of its 256
/// entries plus the last one: `(index, [r, g, b])` in `0..=1`. Linear interpolation between
/// these anchors stays within 2 levels (of 255) of the full table.
const INFERNO_ANCHORS: [(u8, [f32; 3]); 33] = [
    (0, [0.001462, 0.000466, 0.013866]),
    (8, [0.013995, 0.011225, 0.071862]),
    (16, [0.042253, 0.028139, 0.141141]),
    (24, [0.081962, 0.043328, 0.215289]),
    (32, [0.129285, 0.047293, 0.290788]),
    (40, [0.183429, 0.040329, 0.354971]),
    (48, [0.238273, 0.036621, 0.396353]),
    (56, [0.290763, 0.045644, 0.418637]),
    (64, [0.341500, 0.062325, 0.429425]),
    (72, [0.391453, 0.080927, 0.433109]),
    (80, [0.441207, 0.099338, 0.431594]),
    (88, [0.491022, 0.117179, 0.425552]),
    (96, [0.540920, 0.134729, 0.415123]),
    (104, [0.590734, 0.152563, 0.400290]),
    (112, [0.640135, 0.171438, 0.381065]),
    (120, [0.688653, 0.192239, 0.357603]),
    (128, [0.735683, 0.215906, 0.330245]),
    (136, [0.780517, 0.243327, 0.299523]),
    (144, [0.822386, 0.275197, 0.266085]),
    (152, [0.860533, 0.311892, 0.230606]),
    (160, [0.894305, 0.353399, 0.193584]),
    (168, [0.923215, 0.399359, 0.155193]),
    (176, [0.946965, 0.449191, 0.115272]),
    (184, [0.965397, 0.502249, 0.073859]),
    (192, [0.978422, 0.557937, 0.034931]),
    (200, [0.985952, 0.615750, 0.025592]),
    (208, [0.987874, 0.675267, 0.065257]),
    (216, [0.984075, 0.736087, 0.129527]),
    (224, [0.974638, 0.797692, 0.206332]),
    (232, [0.960626, 0.859069, 0.298010]),
    (240, [0.947594, 0.917399, 0.410665]),
    (248, [0.954529, 0.965896, 0.540361]),
    (255, [0.988362, 0.998364, 0.644924]),
];

/// A 256-entry RGB lookup table and the mapping of `[0, 1]` values onto it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColorLut {
    kind: ColorMapKind,
    table: [[u8; 3]; 256],
}

impl ColorLut {
    /// Builds the table of `kind`.
    pub fn new(kind: ColorMapKind) -> Self {
        let table = match kind {
            ColorMapKind::Jet => jet_table(),
            ColorMapKind::Inferno => inferno_table(),
        };
        ColorLut { kind, table }
    }

    /// The colour map.
    pub fn kind(&self) -> ColorMapKind {
        self.kind
    }

    /// The table, RGB.
    pub fn table(&self) -> &[[u8; 3]; 256] {
        &self.table
    }

    /// The table index of `v`: `uint8(255 * v)` computed in `f32` and truncated, like
    /// numpy's `np.uint8(255 * mask)`, with `v` clamped to `[0, 1]` first (NaN gives 0).
    #[inline]
    pub fn index(&self, v: f32) -> u8 {
        (255.0f32 * v.clamp(0.0, 1.0)) as u8
    }

    /// The colour of `v` (see [`index`](Self::index)).
    #[inline]
    pub fn color(&self, v: f32) -> [u8; 3] {
        self.table[usize::from(self.index(v))]
    }

    /// Colours the map `map` (values in `[0, 1]`) into packed RGB `out_rgb`, which must
    /// have `3 * map.len()` bytes.
    pub fn colorize(&self, map: &[f32], out_rgb: &mut [u8]) -> Result<(), HeatmapError> {
        if out_rgb.len() != map.len() * 3 {
            return Err(HeatmapError::BufferSize {
                what: "colour map output",
                expected: map.len() * 3,
                got: out_rgb.len(),
            });
        }
        for (&v, px) in map.iter().zip(out_rgb.chunks_exact_mut(3)) {
            px.copy_from_slice(&self.table[usize::from(self.index(v))]);
        }
        Ok(())
    }
}

/// OpenCV's `COLORMAP_JET`, computed the way `colormap.cpp` does.
///
/// OpenCV's `Jet` class holds a 256-entry `float` anchor table per channel sampled from the
/// piecewise-linear jet curves at `x = i / 255`:
/// `r = clamp(min(4x - 1.5, 4.5 - 4x))`, `g = clamp(min(4x - 0.5, 3.5 - 4x))`,
/// `b = clamp(min(4x + 0.5, 2.5 - 4x))`. `linear_colormap` interpolates it (`interp1`, in
/// `float`) at `linspace(0, 1, 256)` and `convertTo(CV_8U, 255)` rounds half to even. Many
/// entries sit exactly on .5, so the `f32` steps are reproduced to get the same roundings.
fn jet_table() -> [[u8; 3]; 256] {
    let curve = |i: usize, a: f64, b: f64| -> f32 {
        let x = i as f64 / 255.0;
        (4.0 * x + a).min(b - 4.0 * x).clamp(0.0, 1.0) as f32
    };
    let channels: [(f64, f64); 3] = [(-1.5, 4.5), (-0.5, 3.5), (0.5, 2.5)];
    // linspace(0, 1, 256) in f32, as OpenCV's `linspace`.
    let step = 1.0f32 / 255.0f32;
    let xs: [f32; 256] = std::array::from_fn(|i| 0.0f32 + i as f32 * step);
    let mut table = [[0u8; 3]; 256];
    for (c, &(a, b)) in channels.iter().enumerate() {
        let ys: [f32; 256] = std::array::from_fn(|i| curve(i, a, b));
        for i in 0..256 {
            // interp1 at xi == X[i]: low = i - 1, high = i (low = 0, high = 1 at i = 0).
            let (lo, hi) = if i == 0 { (0, 1) } else { (i - 1, i) };
            let yi = ys[lo] + (xs[i] - xs[lo]) * (ys[hi] - ys[lo]) / (xs[hi] - xs[lo]);
            table[i][c] = (yi * 255.0f32).round_ties_even().clamp(0.0, 255.0) as u8;
        }
    }
    table
}

/// matplotlib's `inferno`, linearly interpolated from [`INFERNO_ANCHORS`] and rounded.
fn inferno_table() -> [[u8; 3]; 256] {
    let mut table = [[0u8; 3]; 256];
    for pair in INFERNO_ANCHORS.windows(2) {
        let (i0, c0) = (usize::from(pair[0].0), pair[0].1);
        let (i1, c1) = (usize::from(pair[1].0), pair[1].1);
        for (i, entry) in table.iter_mut().enumerate().take(i1 + 1).skip(i0) {
            let t = (i - i0) as f64 / (i1 - i0) as f64;
            for c in 0..3 {
                let v = f64::from(c0[c]) + (f64::from(c1[c]) - f64::from(c0[c])) * t;
                entry[c] = (v * 255.0).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    table
}
