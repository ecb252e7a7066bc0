//! Heatmap rendering: upsampling the Grad-CAM grid and colouring it.
//!
//! The steps follow pytorch-grad-cam: [`scale_min_max`] on the CAM grid, [`Upsampler`]
//! (OpenCV `cv2.resize(..., INTER_LINEAR)`) to the crop's size, [`ColorLut`] (`uint8(255 x)`
//! into OpenCV's JET or matplotlib's inferno) and [`blend_into`] the frame. Tables are built
//! once; the per-frame functions do not allocate.

pub mod blend;
pub mod colormap;
pub mod upsample;

pub use blend::blend_into;
pub use colormap::{ColorLut, ColorMapKind, ParseColorMapError};
pub use upsample::{scale_min_max, Upsampler};

/// Errors of heatmap rendering.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeatmapError {
    /// A size that must be positive is zero.
    #[error("{what} size {width}x{height} is invalid: width and height must be positive")]
    ZeroSize {
        /// Which size (`"upsampler source"`, `"upsampler destination"`).
        what: &'static str,
        /// Width.
        width: usize,
        /// Height.
        height: usize,
    },
    /// A buffer has the wrong length.
    #[error("{what} buffer has {got} elements, expected {expected}")]
    BufferSize {
        /// Which buffer.
        what: &'static str,
        /// Required length.
        expected: usize,
        /// Given length.
        got: usize,
    },
    /// The blend rectangle does not lie inside the frame buffer.
    #[error(
        "blend rectangle {x},{y} {width}x{height} does not fit a frame of {frame_len} bytes with stride {stride}"
    )]
    RectOutsideFrame {
        /// Left edge.
        x: u32,
        /// Top edge.
        y: u32,
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// Frame stride in bytes.
        stride: usize,
        /// Frame length in bytes.
        frame_len: usize,
    },
}
