//! An embedded-graphics [`DrawTarget`] over a packed RGB888 buffer, so the overlay is drawn
//! with the same code on an in-memory frame, in a PNG, and (through another `DrawTarget`)
//! on a panel.

use embedded_graphics::pixelcolor::{Rgb888, RgbColor};
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::Rectangle;

/// A packed RGB888 buffer seen as a display. Pixels outside are clipped.
#[derive(Debug)]
pub struct RgbCanvas<'a> {
    buf: &'a mut [u8],
    width: u32,
    height: u32,
}

impl<'a> RgbCanvas<'a> {
    /// Wraps `buf` (`width * height * 3` bytes). Returns `None` if the length is wrong.
    pub fn new(buf: &'a mut [u8], width: u32, height: u32) -> Option<Self> {
        (buf.len() == width as usize * height as usize * 3).then_some(RgbCanvas {
            buf,
            width,
            height,
        })
    }

    #[inline]
    fn put(&mut self, x: i32, y: i32, c: Rgb888) {
        if x < 0 || y < 0 || x as u32 >= self.width || y as u32 >= self.height {
            return;
        }
        let i = (y as usize * self.width as usize + x as usize) * 3;
        self.buf[i] = c.r();
        self.buf[i + 1] = c.g();
        self.buf[i + 2] = c.b();
    }

    /// Darkens (or lightens toward `color`) a rectangle by mixing `amount` (0..=255) of
    /// `color` into it: a translucent band behind text.
    pub fn shade(&mut self, area: &Rectangle, color: Rgb888, amount: u8) {
        let clipped = area.intersection(&self.bounding_box());
        let Some(br) = clipped.bottom_right() else {
            return;
        };
        let a = amount as u32;
        let (cr, cg, cb) = (color.r() as u32, color.g() as u32, color.b() as u32);
        for y in clipped.top_left.y..=br.y {
            let row = y as usize * self.width as usize * 3;
            for x in clipped.top_left.x..=br.x {
                let i = row + x as usize * 3;
                for (k, c) in [cr, cg, cb].into_iter().enumerate() {
                    let v = self.buf[i + k] as u32;
                    self.buf[i + k] = ((v * (255 - a) + c * a + 127) / 255) as u8;
                }
            }
        }
    }
}

impl OriginDimensions for RgbCanvas<'_> {
    fn size(&self) -> Size {
        Size::new(self.width, self.height)
    }
}

impl DrawTarget for RgbCanvas<'_> {
    type Color = Rgb888;
    type Error = core::convert::Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Self::Color>>,
    {
        for Pixel(p, c) in pixels {
            self.put(p.x, p.y, c);
        }
        Ok(())
    }

    fn fill_solid(&mut self, area: &Rectangle, color: Self::Color) -> Result<(), Self::Error> {
        let clipped = area.intersection(&self.bounding_box());
        let Some(br) = clipped.bottom_right() else {
            return Ok(());
        };
        let px = [color.r(), color.g(), color.b()];
        for y in clipped.top_left.y..=br.y {
            let row = y as usize * self.width as usize * 3;
            let start = row + clipped.top_left.x as usize * 3;
            let end = row + (br.x as usize + 1) * 3;
            for chunk in self.buf[start..end].chunks_exact_mut(3) {
                chunk.copy_from_slice(&px);
            }
        }
        Ok(())
    }
}
