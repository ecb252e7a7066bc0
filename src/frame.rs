//! RGB frames, the unit that flows from conversion to composition.

use std::time::Duration;

/// A packed RGB888 frame (`stride == width * 3`), allocated once and reused.
#[derive(Debug, Clone)]
pub struct RgbFrame {
    width: u32,
    height: u32,
    data: Box<[u8]>,
    /// Sequence number of the raw frame it was converted from.
    pub sequence: u64,
    /// Capture timestamp of the raw frame.
    pub timestamp: Duration,
}

impl RgbFrame {
    /// Allocates a black frame.
    pub fn new(width: u32, height: u32) -> Self {
        RgbFrame {
            width,
            height,
            data: vec![0u8; width as usize * height as usize * 3].into_boxed_slice(),
            sequence: 0,
            timestamp: Duration::ZERO,
        }
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Bytes per row.
    pub fn stride(&self) -> usize {
        self.width as usize * 3
    }

    /// The pixels, row-major RGB.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The pixels, mutable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }

    /// Copies pixels and metadata from a frame of the same size without allocating.
    ///
    /// Returns `false` (and copies nothing) if the sizes differ.
    pub fn copy_from(&mut self, other: &RgbFrame) -> bool {
        if self.width != other.width || self.height != other.height {
            return false;
        }
        self.data.copy_from_slice(&other.data);
        self.sequence = other.sequence;
        self.timestamp = other.timestamp;
        true
    }
}
