//! Display geometry and pixel packing: composed RGB888 frames into the bytes of a mapped
//! framebuffer (fbdev or a DRM dumb buffer), whatever its stride and channel layout.
//!
//! No device access here: the ioctl/mmap layers ([`super::fbdev`], [`super::drm`]) describe
//! their buffer as a [`Layout`] and hand over the mapped bytes, so the packing is tested on
//! the host against plain `Vec`s.

/// One colour channel inside a pixel: `length` bits starting at bit `offset` of the
/// little-endian pixel value (the kernel's `fb_bitfield`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Channel {
    /// Lowest bit.
    pub offset: u32,
    /// Bits (1..=8).
    pub length: u32,
}

/// A pixel format the packer writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelFormat {
    /// Bits per pixel: 16 or 32.
    pub bits_per_pixel: u32,
    /// Red channel.
    pub red: Channel,
    /// Green channel.
    pub green: Channel,
    /// Blue channel.
    pub blue: Channel,
}

/// Why a pixel format cannot be packed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Neither 16 nor 32 bits per pixel.
    #[error("{0} bpp is not supported (RGB565 and XRGB8888 are)")]
    Bpp(u32),
    /// A channel does not fit the pixel or is wider than 8 bits.
    #[error(
        "the {name} channel (offset {offset}, length {length}) does not fit a {bpp}-bit pixel"
    )]
    Channel {
        /// Channel name.
        name: &'static str,
        /// Offset.
        offset: u32,
        /// Length.
        length: u32,
        /// Bits per pixel.
        bpp: u32,
    },
}

impl PixelFormat {
    /// RGB565 (red in the top bits).
    pub const RGB565: PixelFormat = PixelFormat {
        bits_per_pixel: 16,
        red: Channel {
            offset: 11,
            length: 5,
        },
        green: Channel {
            offset: 5,
            length: 6,
        },
        blue: Channel {
            offset: 0,
            length: 5,
        },
    };
    /// XRGB8888 (DRM's `XR24`: bytes B, G, R, X in memory).
    pub const XRGB8888: PixelFormat = PixelFormat {
        bits_per_pixel: 32,
        red: Channel {
            offset: 16,
            length: 8,
        },
        green: Channel {
            offset: 8,
            length: 8,
        },
        blue: Channel {
            offset: 0,
            length: 8,
        },
    };
    /// XBGR8888 (bytes R, G, B, X in memory).
    pub const XBGR8888: PixelFormat = PixelFormat {
        bits_per_pixel: 32,
        red: Channel {
            offset: 0,
            length: 8,
        },
        green: Channel {
            offset: 8,
            length: 8,
        },
        blue: Channel {
            offset: 16,
            length: 8,
        },
    };

    /// Checks that the format can be packed: 16 or 32 bpp, channels of 1..=8 bits inside the
    /// pixel.
    pub fn validate(&self) -> Result<(), FormatError> {
        let bpp = self.bits_per_pixel;
        if bpp != 16 && bpp != 32 {
            return Err(FormatError::Bpp(bpp));
        }
        for (name, c) in [
            ("red", self.red),
            ("green", self.green),
            ("blue", self.blue),
        ] {
            if c.length == 0 || c.length > 8 || c.offset + c.length > bpp {
                return Err(FormatError::Channel {
                    name,
                    offset: c.offset,
                    length: c.length,
                    bpp,
                });
            }
        }
        Ok(())
    }

    /// Bytes per pixel.
    pub fn bytes_per_pixel(&self) -> usize {
        self.bits_per_pixel as usize / 8
    }

    /// A short name: `RGB565`, `BGR565`, `XRGB8888`, `XBGR8888` or the bitfields.
    pub fn name(&self) -> String {
        match *self {
            f if f == Self::RGB565 => "RGB565".into(),
            f if f == Self::XRGB8888 => "XRGB8888".into(),
            f if f == Self::XBGR8888 => "XBGR8888".into(),
            f => format!(
                "{} bpp R{}:{} G{}:{} B{}:{}",
                f.bits_per_pixel,
                f.red.offset,
                f.red.length,
                f.green.offset,
                f.green.length,
                f.blue.offset,
                f.blue.length
            ),
        }
    }
}

/// A mapped buffer's geometry: visible size, row stride in bytes, where the visible area
/// starts (panning offset), and the pixel format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Visible width in pixels.
    pub width: u32,
    /// Visible height in pixels.
    pub height: u32,
    /// Bytes from one row to the next (`line_length`, `pitch`).
    pub stride: usize,
    /// Byte offset of the visible area's top-left pixel.
    pub offset: usize,
    /// Pixel format.
    pub format: PixelFormat,
}

/// A layout that does not fit its buffer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// The pixel format is not supported.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// Rows are shorter than the visible width.
    #[error("line length {stride} bytes is less than {width} pixels of {bpp} bytes")]
    Stride {
        /// Stride.
        stride: usize,
        /// Width.
        width: u32,
        /// Bytes per pixel.
        bpp: usize,
    },
    /// The visible area reaches past the buffer's end.
    #[error("a {width}x{height} area at byte {offset} with line length {stride} needs {needed} bytes but the buffer has {len}")]
    TooSmall {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// Offset.
        offset: usize,
        /// Stride.
        stride: usize,
        /// Bytes needed.
        needed: usize,
        /// Buffer length.
        len: usize,
    },
    /// A frame of another size was given.
    #[error("frame is {frame_w}x{frame_h} but the display is {width}x{height}")]
    FrameSize {
        /// Frame width.
        frame_w: u32,
        /// Frame height.
        frame_h: u32,
        /// Display width.
        width: u32,
        /// Display height.
        height: u32,
    },
}

impl Layout {
    /// Checks the layout against a buffer of `len` bytes.
    pub fn validate(&self, len: usize) -> Result<(), LayoutError> {
        self.format.validate()?;
        let bpp = self.format.bytes_per_pixel();
        let row = self.width as usize * bpp;
        if self.stride < row {
            return Err(LayoutError::Stride {
                stride: self.stride,
                width: self.width,
                bpp,
            });
        }
        let needed = if self.height == 0 {
            self.offset
        } else {
            self.offset + (self.height as usize - 1) * self.stride + row
        };
        if needed > len || self.width == 0 || self.height == 0 {
            return Err(LayoutError::TooSmall {
                width: self.width,
                height: self.height,
                offset: self.offset,
                stride: self.stride,
                needed,
                len,
            });
        }
        Ok(())
    }

    /// Packs a `width x height` packed RGB888 image (`rgb`, rows of `width * 3` bytes) into
    /// `buf`, leaving the padding at the end of each row untouched. Allocates nothing.
    pub fn pack(&self, rgb: &[u8], buf: &mut [u8]) -> Result<(), LayoutError> {
        self.validate(buf.len())?;
        let (w, h) = (self.width as usize, self.height as usize);
        if rgb.len() != w * h * 3 {
            return Err(LayoutError::FrameSize {
                frame_w: (rgb.len() / 3 / h.max(1)) as u32,
                frame_h: self.height,
                width: self.width,
                height: self.height,
            });
        }
        let bpp = self.format.bytes_per_pixel();
        let f = self.format;
        for (y, src) in rgb.chunks_exact(w * 3).enumerate() {
            let start = self.offset + y * self.stride;
            let dst = &mut buf[start..start + w * bpp];
            match bpp {
                4 if f == PixelFormat::XRGB8888 => {
                    for (d, s) in dst.chunks_exact_mut(4).zip(src.chunks_exact(3)) {
                        d.copy_from_slice(&[s[2], s[1], s[0], 0]);
                    }
                }
                4 if f == PixelFormat::XBGR8888 => {
                    for (d, s) in dst.chunks_exact_mut(4).zip(src.chunks_exact(3)) {
                        d.copy_from_slice(&[s[0], s[1], s[2], 0]);
                    }
                }
                4 => {
                    for (d, s) in dst.chunks_exact_mut(4).zip(src.chunks_exact(3)) {
                        d.copy_from_slice(&pixel_value(f, s).to_le_bytes());
                    }
                }
                _ => {
                    for (d, s) in dst.chunks_exact_mut(2).zip(src.chunks_exact(3)) {
                        d.copy_from_slice(&(pixel_value(f, s) as u16).to_le_bytes());
                    }
                }
            }
        }
        Ok(())
    }
}

/// The pixel value of one RGB888 pixel: each channel's top `length` bits at its offset.
#[inline]
fn pixel_value(f: PixelFormat, s: &[u8]) -> u32 {
    let put = |v: u8, c: Channel| (u32::from(v) >> (8 - c.length)) << c.offset;
    put(s[0], f.red) | put(s[1], f.green) | put(s[2], f.blue)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bit by bit: channel bit `8 - length + i` goes to pixel bit `offset + i`, bytes
    /// little-endian.
    fn naive_pack(l: &Layout, rgb: &[u8], buf: &mut [u8]) {
        let bpp = l.format.bits_per_pixel as usize / 8;
        for y in 0..l.height as usize {
            for x in 0..l.width as usize {
                let px = &rgb[(y * l.width as usize + x) * 3..][..3];
                let base = l.offset + y * l.stride + x * bpp;
                for b in 0..bpp {
                    buf[base + b] = 0;
                }
                let chans = [l.format.red, l.format.green, l.format.blue];
                for (v, c) in px.iter().zip(chans) {
                    for i in 0..c.length {
                        let bit = (v >> (8 - c.length + i)) & 1;
                        let at = (c.offset + i) as usize;
                        buf[base + at / 8] |= bit << (at % 8);
                    }
                }
            }
        }
    }

    fn image(w: usize, h: usize, seed: u32) -> Vec<u8> {
        let mut s = seed;
        (0..w * h * 3)
            .map(|_| {
                s = s.wrapping_mul(22_695_477).wrapping_add(1);
                (s >> 16) as u8
            })
            .collect()
    }

    const BGR565: PixelFormat = PixelFormat {
        bits_per_pixel: 16,
        red: Channel {
            offset: 0,
            length: 5,
        },
        green: Channel {
            offset: 5,
            length: 6,
        },
        blue: Channel {
            offset: 11,
            length: 5,
        },
    };
    /// An odd 32-bit layout (as some fbdev drivers report): X at the bottom.
    const RGBX8888: PixelFormat = PixelFormat {
        bits_per_pixel: 32,
        red: Channel {
            offset: 24,
            length: 8,
        },
        green: Channel {
            offset: 16,
            length: 8,
        },
        blue: Channel {
            offset: 8,
            length: 8,
        },
    };

    #[test]
    fn packing_matches_the_naive_bitwise_reference_with_padded_strides() {
        for format in [
            PixelFormat::RGB565,
            BGR565,
            PixelFormat::XRGB8888,
            PixelFormat::XBGR8888,
            RGBX8888,
        ] {
            for (w, h, pad, offset) in [(7, 5, 0, 0), (13, 4, 6, 0), (16, 9, 64, 40), (1, 1, 2, 3)]
            {
                let bpp = format.bytes_per_pixel();
                let l = Layout {
                    width: w,
                    height: h,
                    stride: w as usize * bpp + pad,
                    offset,
                    format,
                };
                let len = offset + l.stride * h as usize + 5;
                let rgb = image(w as usize, h as usize, w * 31 + h);
                let mut fast = vec![0xA5u8; len];
                let mut slow = vec![0xA5u8; len];
                l.pack(&rgb, &mut fast).expect("pack");
                naive_pack(&l, &rgb, &mut slow);
                assert_eq!(fast, slow, "{} {w}x{h} pad {pad}", format.name());
            }
        }
    }

    #[test]
    fn known_pixels() {
        let rgb = [255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255];
        let l = |format, stride| Layout {
            width: 4,
            height: 1,
            stride,
            offset: 0,
            format,
        };
        let mut b = vec![0u8; 8];
        l(PixelFormat::RGB565, 8).pack(&rgb, &mut b).expect("pack");
        assert_eq!(b, [0x00, 0xF8, 0xE0, 0x07, 0x1F, 0x00, 0xFF, 0xFF]);
        let mut b = vec![0u8; 16];
        l(PixelFormat::XRGB8888, 16)
            .pack(&rgb, &mut b)
            .expect("pack");
        assert_eq!(&b[..8], &[0, 0, 255, 0, 0, 255, 0, 0]);
        assert_eq!(&b[8..], &[255, 0, 0, 0, 255, 255, 255, 0]);
        l(PixelFormat::XBGR8888, 16)
            .pack(&rgb, &mut b)
            .expect("pack");
        assert_eq!(&b[..4], &[255, 0, 0, 0]);
    }

    #[test]
    fn bad_layouts_are_refused_with_reasons() {
        let mut f = PixelFormat::XRGB8888;
        f.bits_per_pixel = 24;
        assert_eq!(
            f.validate().map_err(|e| e.to_string()),
            Err("24 bpp is not supported (RGB565 and XRGB8888 are)".into())
        );
        let l = Layout {
            width: 10,
            height: 10,
            stride: 39,
            offset: 0,
            format: PixelFormat::XRGB8888,
        };
        assert!(matches!(
            l.validate(10_000),
            Err(LayoutError::Stride { .. })
        ));
        let l = Layout { stride: 40, ..l };
        assert!(l.validate(400).is_ok());
        assert!(matches!(l.validate(399), Err(LayoutError::TooSmall { .. })));
        let mut buf = vec![0u8; 400];
        assert!(matches!(
            l.pack(&[0u8; 299], &mut buf),
            Err(LayoutError::FrameSize { .. })
        ));
    }
}
