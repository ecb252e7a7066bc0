//! The overlay drawn over the frame: the top class with its full name and probability, a
//! probability bar, the frame rate, the crop outline and the permanent "screening aid — not
//! a diagnosis" mark. Generic over any embedded-graphics [`DrawTarget`], so the same code
//! draws into a frame buffer, a PNG, a panel or a mock display. Text is formatted into
//! fixed-capacity `heapless` strings: drawing allocates nothing.

use core::fmt::Write;

use embedded_graphics::mono_font::ascii::{FONT_10X20, FONT_6X10, FONT_9X15};
use embedded_graphics::mono_font::{MonoFont, MonoTextStyle};
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{PrimitiveStyle, Rectangle};
use embedded_graphics::text::{Alignment, Baseline, Text, TextStyleBuilder};

use crate::model::Label;
use crate::preprocess::CropRect;

/// The mark shown on every frame.
pub const DISCLAIMER: &str = "SCREENING AID - NOT A DIAGNOSIS";

/// Colours of the overlay.
pub mod colors {
    use embedded_graphics::pixelcolor::Rgb888;
    /// Text.
    pub const TEXT: Rgb888 = Rgb888::new(255, 255, 255);
    /// Bar of a confident result.
    pub const CONFIDENT: Rgb888 = Rgb888::new(64, 200, 120);
    /// Bar and label of a low-confidence result.
    pub const LOW: Rgb888 = Rgb888::new(255, 176, 32);
    /// Bar background.
    pub const BAR_BG: Rgb888 = Rgb888::new(70, 70, 70);
    /// Crop outline.
    pub const CROP: Rgb888 = Rgb888::new(230, 230, 230);
    /// Band behind text.
    pub const BAND: Rgb888 = Rgb888::new(0, 0, 0);
}

/// What the overlay shows about the newest analysis.
#[derive(Debug, Clone, Copy)]
pub struct Finding<'a> {
    /// Index of the shown class.
    pub class: usize,
    /// Probabilities of all classes, in label order.
    pub probabilities: &'a [f32],
}

/// Everything the overlay needs for one frame.
#[derive(Debug, Clone, Copy)]
pub struct OverlayInfo<'a> {
    /// Class labels.
    pub labels: &'a [Label],
    /// The newest analysis, if there is one yet.
    pub finding: Option<Finding<'a>>,
    /// Displayed frames per second.
    pub fps: f32,
    /// Model runs per second.
    pub inference_fps: f32,
    /// The analysed region of the frame.
    pub crop: CropRect,
    /// Below this probability the result is marked low confidence.
    pub low_confidence: f32,
}

/// Picks a font for the frame width.
pub fn font_for_width(width: u32) -> &'static MonoFont<'static> {
    if width >= 600 {
        &FONT_10X20
    } else if width >= 400 {
        &FONT_9X15
    } else {
        &FONT_6X10
    }
}

/// Something the canvas can shade (darken) behind text; targets without it get opaque
/// bands.
pub trait Shade: DrawTarget<Color = Rgb888> {
    /// Mixes `amount`/255 of `color` into `area`.
    fn shade_area(
        &mut self,
        area: &Rectangle,
        color: Rgb888,
        amount: u8,
    ) -> Result<(), Self::Error>;
}

impl Shade for super::canvas::RgbCanvas<'_> {
    fn shade_area(
        &mut self,
        area: &Rectangle,
        color: Rgb888,
        amount: u8,
    ) -> Result<(), Self::Error> {
        self.shade(area, color, amount);
        Ok(())
    }
}

/// Draws the overlay.
pub fn draw_overlay<D: Shade>(target: &mut D, info: &OverlayInfo<'_>) -> Result<(), D::Error> {
    let size = target.bounding_box().size;
    let font = font_for_width(size.width);
    let small = if size.width >= 600 {
        &FONT_9X15
    } else {
        &FONT_6X10
    };
    let fh = font.character_size.height as i32;
    let sh = small.character_size.height as i32;
    let pad = (fh / 4).max(2);
    let text = MonoTextStyle::new(font, colors::TEXT);
    let small_text = MonoTextStyle::new(small, colors::TEXT);
    let top = TextStyleBuilder::new().baseline(Baseline::Top).build();
    let top_right = TextStyleBuilder::new()
        .baseline(Baseline::Top)
        .alignment(Alignment::Right)
        .build();
    let top_centre = TextStyleBuilder::new()
        .baseline(Baseline::Top)
        .alignment(Alignment::Center)
        .build();

    // Crop outline.
    let crop = Rectangle::new(
        Point::new(info.crop.x as i32, info.crop.y as i32),
        Size::new(info.crop.width, info.crop.height),
    );
    crop.into_styled(PrimitiveStyle::with_stroke(colors::CROP, 1))
        .draw(target)?;

    // Top band: finding and rates.
    let bar_h = (fh / 3).max(4);
    let band_h = pad + fh + pad + bar_h + pad;
    let band = Rectangle::new(Point::zero(), Size::new(size.width, band_h as u32));
    target.shade_area(&band, colors::BAND, 170)?;

    let mut line: heapless::String<128> = heapless::String::new();
    let mut rate: heapless::String<32> = heapless::String::new();
    // Rates only mean something for a live stream (a still has none).
    if info.fps > 0.0 || info.inference_fps > 0.0 {
        let _ = write!(
            rate,
            "{:.1} fps  model {:.1}/s",
            info.fps, info.inference_fps
        );
        Text::with_text_style(
            &rate,
            Point::new(size.width as i32 - pad, pad + (fh - sh) / 2),
            small_text,
            top_right,
        )
        .draw(target)?;
    }

    let bar_w = (size.width as i32 / 2).max(40);
    let bar = Rectangle::new(
        Point::new(pad, pad + fh + pad),
        Size::new(bar_w as u32, bar_h as u32),
    );
    match info.finding {
        Some(f) if f.class < info.labels.len() && f.class < f.probabilities.len() => {
            let p = f.probabilities[f.class].clamp(0.0, 1.0);
            let low = p < info.low_confidence;
            let name = info.labels[f.class].name.as_str();
            if write!(line, "{name}  {:.0}%", p * 100.0).is_err() {
                line.clear();
                let _ = write!(line, "{}  {:.0}%", info.labels[f.class].id, p * 100.0);
            }
            if low {
                let _ = line.push_str("  (low confidence)");
            }
            let style = MonoTextStyle::new(font, if low { colors::LOW } else { colors::TEXT });
            Text::with_text_style(&line, Point::new(pad, pad), style, top).draw(target)?;
            bar.into_styled(PrimitiveStyle::with_fill(colors::BAR_BG))
                .draw(target)?;
            let filled = (bar_w as f32 * p).round() as u32;
            if filled > 0 {
                Rectangle::new(bar.top_left, Size::new(filled, bar_h as u32))
                    .into_styled(PrimitiveStyle::with_fill(if low {
                        colors::LOW
                    } else {
                        colors::CONFIDENT
                    }))
                    .draw(target)?;
            }
        }
        _ => {
            Text::with_text_style("Analysing...", Point::new(pad, pad), text, top).draw(target)?;
        }
    }

    // Bottom band: the permanent disclaimer.
    let bottom_h = sh + 2 * pad;
    let bottom = Rectangle::new(
        Point::new(0, size.height as i32 - bottom_h),
        Size::new(size.width, bottom_h as u32),
    );
    target.shade_area(&bottom, colors::BAND, 170)?;
    Text::with_text_style(
        DISCLAIMER,
        Point::new(size.width as i32 / 2, size.height as i32 - bottom_h + pad),
        small_text,
        top_centre,
    )
    .draw(target)?;
    Ok(())
}
