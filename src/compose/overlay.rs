//! The overlay drawn over the frame: the top class with its full name and probability, the
//! other classes as small bars sorted by probability, the frame rate, the crop outline, the
//! screen state ([`ScreenState`]) as a banner or badge, and the permanent "screening aid —
//! not a diagnosis" mark. Generic over any embedded-graphics [`DrawTarget`], so the same code
//! draws into a frame buffer, a PNG, a panel or a mock display. Text is formatted into
//! fixed-capacity `heapless` strings and the class ranking is sorted in a fixed-capacity
//! `heapless::Vec`: drawing allocates nothing.

use core::fmt::Write;

use embedded_graphics::mono_font::ascii::{FONT_10X20, FONT_6X10, FONT_8X13_BOLD, FONT_9X15};
use embedded_graphics::mono_font::{MonoFont, MonoTextStyle};
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{PrimitiveStyle, Rectangle};
use embedded_graphics::text::{Alignment, Baseline, Text, TextStyle, TextStyleBuilder};

use crate::model::Label;
use crate::preprocess::CropRect;

/// The mark shown on every frame.
pub const DISCLAIMER: &str = "SCREENING AID - NOT A DIAGNOSIS";

/// Most classes ranked on screen (the top class plus the others as bars).
pub const MAX_RANKED: usize = 64;

/// Colours of the overlay.
pub mod colors {
    use embedded_graphics::pixelcolor::Rgb888;
    /// Text.
    pub const TEXT: Rgb888 = Rgb888::new(255, 255, 255);
    /// Secondary text.
    pub const DIM_TEXT: Rgb888 = Rgb888::new(200, 200, 200);
    /// Bar of a confident result.
    pub const CONFIDENT: Rgb888 = Rgb888::new(64, 200, 120);
    /// Bar and label of a low-confidence result.
    pub const LOW: Rgb888 = Rgb888::new(255, 176, 32);
    /// Bars of the other classes.
    pub const OTHER: Rgb888 = Rgb888::new(140, 170, 220);
    /// Bar background.
    pub const BAR_BG: Rgb888 = Rgb888::new(70, 70, 70);
    /// Crop outline.
    pub const CROP: Rgb888 = Rgb888::new(230, 230, 230);
    /// Band behind text.
    pub const BAND: Rgb888 = Rgb888::new(0, 0, 0);
    /// Screen without a camera.
    pub const NO_CAMERA_BG: Rgb888 = Rgb888::new(24, 26, 32);
    /// Model error banner.
    pub const ERROR: Rgb888 = Rgb888::new(200, 30, 30);
    /// Frozen badge.
    pub const FROZEN: Rgb888 = Rgb888::new(40, 110, 230);
    /// Saved badge.
    pub const SAVED: Rgb888 = Rgb888::new(30, 160, 60);
    /// Dark text on light badges.
    pub const DARK_TEXT: Rgb888 = Rgb888::new(0, 0, 0);
}

/// What the screen is showing, beyond the live result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ScreenState {
    /// Live frame and result.
    #[default]
    Live,
    /// No camera: a dark screen with a message.
    NoCamera,
    /// The model failed: a red banner, no result.
    ModelError,
    /// The frame is frozen (button): a badge.
    Frozen,
    /// The frozen frame was saved as a record: a green badge.
    Saved,
    /// The top probability is below the threshold: an amber badge. Set automatically from
    /// `Live` when the result is below the threshold.
    LowConfidence,
    /// A record could not be saved because the disk is full: a red banner over the frame.
    DiskFull,
    /// A record could not be saved (any other error): a red banner over the frame.
    SaveFailed,
}

impl ScreenState {
    /// All states.
    pub const ALL: [ScreenState; 8] = [
        ScreenState::Live,
        ScreenState::NoCamera,
        ScreenState::ModelError,
        ScreenState::Frozen,
        ScreenState::Saved,
        ScreenState::LowConfidence,
        ScreenState::DiskFull,
        ScreenState::SaveFailed,
    ];

    /// A short lower-case name (`live`, `no-camera`, …).
    pub fn name(self) -> &'static str {
        match self {
            ScreenState::Live => "live",
            ScreenState::NoCamera => "no-camera",
            ScreenState::ModelError => "model-error",
            ScreenState::Frozen => "frozen",
            ScreenState::Saved => "saved",
            ScreenState::LowConfidence => "low-confidence",
            ScreenState::DiskFull => "disk-full",
            ScreenState::SaveFailed => "save-failed",
        }
    }
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
    /// The screen state (`Live` becomes `LowConfidence` automatically).
    pub state: ScreenState,
}

/// Picks a font for the frame width.
pub fn font_for_width(width: u32) -> &'static MonoFont<'static> {
    Fonts::for_width(width).title
}

/// The fonts of one screen size.
#[derive(Clone, Copy)]
struct Fonts {
    /// Top class line.
    title: &'static MonoFont<'static>,
    /// Rates, bars, disclaimer.
    small: &'static MonoFont<'static>,
    /// Badges.
    badge: &'static MonoFont<'static>,
    /// Big banners (NO CAMERA, MODEL ERROR).
    banner: &'static MonoFont<'static>,
}

impl Fonts {
    /// 320x240 (SPI): compact fonts; 800x480 and wider (DSI/HDMI): the largest ASCII fonts.
    fn for_width(width: u32) -> Self {
        if width >= 400 {
            Fonts {
                title: &FONT_10X20,
                small: &FONT_9X15,
                badge: &FONT_10X20,
                banner: &FONT_10X20,
            }
        } else {
            Fonts {
                title: &FONT_8X13_BOLD,
                small: &FONT_6X10,
                badge: &FONT_8X13_BOLD,
                banner: &FONT_10X20,
            }
        }
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

fn text_style(alignment: Alignment) -> TextStyle {
    TextStyleBuilder::new()
        .baseline(Baseline::Top)
        .alignment(alignment)
        .build()
}

/// Copies `s` into `out`, cut to `max_chars` characters with a trailing "..." if cut.
fn push_fitted<const N: usize>(out: &mut heapless::String<N>, s: &str, max_chars: usize) {
    let count = s.chars().count();
    if count <= max_chars {
        for c in s.chars() {
            if out.push(c).is_err() {
                return;
            }
        }
        return;
    }
    let keep = max_chars.saturating_sub(3);
    for c in s.chars().take(keep) {
        if out.push(c).is_err() {
            return;
        }
    }
    if max_chars >= 3 {
        let _ = out.push_str("...");
    }
}

/// Draws a badge (filled box with text) right-aligned at `right`, top at `y`; returns its
/// height.
fn draw_badge<D: Shade>(
    target: &mut D,
    right: i32,
    y: i32,
    label: &str,
    font: &'static MonoFont<'static>,
    bg: Rgb888,
    fg: Rgb888,
) -> Result<i32, D::Error> {
    let cw = font.character_size.width as i32;
    let ch = font.character_size.height as i32;
    let px = (cw / 2).max(3);
    let py = (ch / 5).max(2);
    let w = label.len() as i32 * cw + 2 * px;
    let h = ch + 2 * py;
    let r = Rectangle::new(Point::new(right - w, y), Size::new(w as u32, h as u32));
    r.into_styled(PrimitiveStyle::with_fill(bg)).draw(target)?;
    r.into_styled(PrimitiveStyle::with_stroke(colors::TEXT, 1))
        .draw(target)?;
    Text::with_text_style(
        label,
        Point::new(right - w + px, y + py),
        MonoTextStyle::new(font, fg),
        text_style(Alignment::Left),
    )
    .draw(target)?;
    Ok(h)
}

/// Draws a centred banner box with a big title and a small message.
#[allow(clippy::too_many_arguments)]
fn draw_banner<D: Shade>(
    target: &mut D,
    centre_y: i32,
    title: &str,
    message: &str,
    fonts: Fonts,
    bg: Rgb888,
    title_color: Rgb888,
    border: Rgb888,
) -> Result<(), D::Error> {
    let size = target.bounding_box().size;
    let bw = fonts.banner.character_size.width as i32;
    let bh = fonts.banner.character_size.height as i32;
    let sw = fonts.small.character_size.width as i32;
    let sh = fonts.small.character_size.height as i32;
    let pad = (bh / 2).max(4);
    let content_w = (title.len() as i32 * bw).max(message.len() as i32 * sw);
    let w = (content_w + 2 * pad).min(size.width as i32 - 8);
    let h = pad + bh + pad / 2 + sh + pad;
    let x = (size.width as i32 - w) / 2;
    let y = centre_y - h / 2;
    let r = Rectangle::new(Point::new(x, y), Size::new(w as u32, h as u32));
    r.into_styled(PrimitiveStyle::with_fill(bg)).draw(target)?;
    r.into_styled(PrimitiveStyle::with_stroke(border, 2))
        .draw(target)?;
    let cx = size.width as i32 / 2;
    Text::with_text_style(
        title,
        Point::new(cx, y + pad),
        MonoTextStyle::new(fonts.banner, title_color),
        text_style(Alignment::Center),
    )
    .draw(target)?;
    Text::with_text_style(
        message,
        Point::new(cx, y + pad + bh + pad / 2),
        MonoTextStyle::new(fonts.small, colors::TEXT),
        text_style(Alignment::Center),
    )
    .draw(target)?;
    Ok(())
}

/// The state actually shown: `Live` with a result below the threshold becomes
/// `LowConfidence`.
pub fn effective_state(info: &OverlayInfo<'_>) -> ScreenState {
    let low = match info.finding {
        Some(f) if f.class < f.probabilities.len() => {
            f.probabilities[f.class].clamp(0.0, 1.0) < info.low_confidence
        }
        _ => false,
    };
    match info.state {
        ScreenState::Live if low => ScreenState::LowConfidence,
        s => s,
    }
}

/// Draws the overlay.
pub fn draw_overlay<D: Shade>(target: &mut D, info: &OverlayInfo<'_>) -> Result<(), D::Error> {
    let size = target.bounding_box().size;
    let (sw_, sh_) = (size.width as i32, size.height as i32);
    let fonts = Fonts::for_width(size.width);
    let font = fonts.title;
    let small = fonts.small;
    let fh = font.character_size.height as i32;
    let fw = font.character_size.width as i32;
    let sh = small.character_size.height as i32;
    let pad = (fh / 4).max(3);
    let small_text = MonoTextStyle::new(small, colors::TEXT);
    let state = effective_state(info);

    if state == ScreenState::NoCamera {
        target.fill_solid(&Rectangle::new(Point::zero(), size), colors::NO_CAMERA_BG)?;
        draw_banner(
            target,
            sh_ / 2,
            "NO CAMERA",
            "Check the camera cable",
            fonts,
            colors::NO_CAMERA_BG,
            colors::LOW,
            colors::LOW,
        )?;
    } else {
        // Crop outline.
        let crop = Rectangle::new(
            Point::new(info.crop.x as i32, info.crop.y as i32),
            Size::new(info.crop.width, info.crop.height),
        );
        crop.into_styled(PrimitiveStyle::with_stroke(colors::CROP, 1))
            .draw(target)?;
    }

    // Top band: finding, its bar and the rates.
    let bar_h = (sh * 2 / 3).max(4);
    let band_h = pad + fh + pad + sh + pad;
    let band = Rectangle::new(Point::zero(), Size::new(size.width, band_h as u32));
    if state != ScreenState::NoCamera {
        target.shade_area(&band, colors::BAND, 170)?;
    }

    let mut line: heapless::String<160> = heapless::String::new();
    let mut rate: heapless::String<40> = heapless::String::new();
    let line2_y = pad + fh + pad;
    // Rates only mean something for a live stream (a still has none).
    if state != ScreenState::NoCamera && (info.fps > 0.0 || info.inference_fps > 0.0) {
        let _ = write!(
            rate,
            "{:.1} fps  model {:.1}/s",
            info.fps, info.inference_fps
        );
        Text::with_text_style(
            &rate,
            Point::new(sw_ - pad, line2_y),
            MonoTextStyle::new(small, colors::DIM_TEXT),
            text_style(Alignment::Right),
        )
        .draw(target)?;
    }

    let bar_w = (sw_ / 2).max(40);
    let bar = Rectangle::new(
        Point::new(pad, line2_y + (sh - bar_h) / 2),
        Size::new(bar_w as u32, bar_h as u32),
    );
    let finding = match info.finding {
        Some(f) if f.class < info.labels.len() && f.class < f.probabilities.len() => Some(f),
        _ => None,
    };
    // Lowest y free for badges.
    let mut badge_y = band_h + pad;
    match (state, finding) {
        (ScreenState::NoCamera, _) => {}
        (ScreenState::ModelError, _) => {
            Text::with_text_style(
                "MODEL ERROR - no result",
                Point::new(pad, pad),
                MonoTextStyle::new(font, Rgb888::new(255, 90, 90)),
                text_style(Alignment::Left),
            )
            .draw(target)?;
            draw_banner(
                target,
                sh_ / 2,
                "MODEL ERROR",
                "Analysis stopped - see the log",
                fonts,
                colors::ERROR,
                colors::TEXT,
                colors::TEXT,
            )?;
        }
        (_, Some(f)) => {
            let p = f.probabilities[f.class].clamp(0.0, 1.0);
            let low = p < info.low_confidence;
            let mut pct: heapless::String<8> = heapless::String::new();
            let _ = write!(pct, "  {:.0}%", p * 100.0);
            let max_chars = ((sw_ - 2 * pad) / fw).max(4) as usize - pct.len();
            push_fitted(&mut line, info.labels[f.class].name.as_str(), max_chars);
            let _ = line.push_str(&pct);
            let style = MonoTextStyle::new(font, if low { colors::LOW } else { colors::TEXT });
            Text::with_text_style(
                &line,
                Point::new(pad, pad),
                style,
                text_style(Alignment::Left),
            )
            .draw(target)?;
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
            draw_other_classes(target, info, f, fonts, band_h)?;
        }
        (_, None) => {
            Text::with_text_style(
                "Analysing...",
                Point::new(pad, pad),
                MonoTextStyle::new(font, colors::TEXT),
                text_style(Alignment::Left),
            )
            .draw(target)?;
        }
    }

    // Badges, stacked at the right under the top band.
    let right = sw_ - pad;
    let mut badge = |target: &mut D, label: &str, bg: Rgb888, fg: Rgb888| {
        draw_badge(target, right, badge_y, label, fonts.badge, bg, fg).map(|h| {
            badge_y += h + pad;
        })
    };
    match state {
        ScreenState::Frozen => badge(target, "FROZEN", colors::FROZEN, colors::TEXT)?,
        ScreenState::Saved => badge(target, "SAVED", colors::SAVED, colors::TEXT)?,
        _ => {}
    }
    let finding_low =
        finding.is_some_and(|f| f.probabilities[f.class].clamp(0.0, 1.0) < info.low_confidence);
    let low = match state {
        ScreenState::LowConfidence => true,
        ScreenState::Frozen
        | ScreenState::Saved
        | ScreenState::DiskFull
        | ScreenState::SaveFailed => finding_low,
        _ => false,
    };
    if low {
        badge(target, "LOW CONFIDENCE", colors::LOW, colors::DARK_TEXT)?;
    }
    // A record that was not saved: a red banner the user cannot miss.
    let not_saved = match state {
        ScreenState::DiskFull => Some(("DISK FULL", "Record NOT saved - free up space")),
        ScreenState::SaveFailed => Some(("NOT SAVED", "Record could not be written - see log")),
        _ => None,
    };
    if let Some((title, message)) = not_saved {
        draw_banner(
            target,
            sh_ / 2,
            title,
            message,
            fonts,
            colors::ERROR,
            colors::TEXT,
            colors::TEXT,
        )?;
    }

    // Bottom band: the permanent disclaimer.
    let bottom_h = sh + 2 * pad;
    let bottom = Rectangle::new(
        Point::new(0, sh_ - bottom_h),
        Size::new(size.width, bottom_h as u32),
    );
    target.shade_area(&bottom, colors::BAND, 200)?;
    Text::with_text_style(
        DISCLAIMER,
        Point::new(sw_ / 2, sh_ - bottom_h + pad),
        small_text,
        text_style(Alignment::Center),
    )
    .draw(target)?;
    Ok(())
}

/// The classes other than the shown one as small bars, most probable first, in a panel at
/// the bottom left above the disclaimer.
fn draw_other_classes<D: Shade>(
    target: &mut D,
    info: &OverlayInfo<'_>,
    f: Finding<'_>,
    fonts: Fonts,
    top_limit: i32,
) -> Result<(), D::Error> {
    let size = target.bounding_box().size;
    let small = fonts.small;
    let sw = small.character_size.width as i32;
    let sh = small.character_size.height as i32;
    let pad = (sh / 4).max(2);
    let n = info.labels.len().min(f.probabilities.len());
    let mut order: heapless::Vec<u16, MAX_RANKED> = heapless::Vec::new();
    for i in 0..n {
        if i != f.class && order.push(i as u16).is_err() {
            break;
        }
    }
    order.sort_unstable_by(|&a, &b| {
        f.probabilities[b as usize]
            .total_cmp(&f.probabilities[a as usize])
            .then(a.cmp(&b))
    });
    if order.is_empty() {
        return Ok(());
    }
    let id_chars = order
        .iter()
        .map(|&i| info.labels[i as usize].id.chars().count())
        .max()
        .unwrap_or(1)
        .clamp(1, 8) as i32;
    let bar_w = (size.width as i32 / 6).max(40);
    let row_h = sh + pad;
    let bottom_h = sh + 2 * (fonts.title.character_size.height as i32 / 4).max(3);
    let bottom = size.height as i32 - bottom_h - pad;
    let avail = bottom - top_limit - 2 * pad;
    let rows = (avail / row_h).clamp(0, order.len() as i32);
    if rows == 0 {
        return Ok(());
    }
    let panel_w = pad + id_chars * sw + pad + bar_w + pad + 4 * sw + pad;
    let panel_h = rows * row_h + pad;
    let panel_top = bottom - panel_h;
    let panel = Rectangle::new(
        Point::new(0, panel_top),
        Size::new(panel_w as u32, panel_h as u32),
    );
    target.shade_area(&panel, colors::BAND, 170)?;
    let left = text_style(Alignment::Left);
    let right = text_style(Alignment::Right);
    let bar_h = (sh / 2).max(3);
    for (row, &i) in order.iter().take(rows as usize).enumerate() {
        let y = panel_top + pad + row as i32 * row_h;
        let p = f.probabilities[i as usize].clamp(0.0, 1.0);
        let mut id: heapless::String<16> = heapless::String::new();
        push_fitted(
            &mut id,
            info.labels[i as usize].id.as_str(),
            id_chars as usize,
        );
        Text::with_text_style(
            &id,
            Point::new(pad, y),
            MonoTextStyle::new(small, colors::TEXT),
            left,
        )
        .draw(target)?;
        let bx = pad + id_chars * sw + pad;
        let bar = Rectangle::new(
            Point::new(bx, y + (sh - bar_h) / 2),
            Size::new(bar_w as u32, bar_h as u32),
        );
        bar.into_styled(PrimitiveStyle::with_fill(colors::BAR_BG))
            .draw(target)?;
        let filled = (bar_w as f32 * p).round() as u32;
        if filled > 0 {
            Rectangle::new(bar.top_left, Size::new(filled, bar_h as u32))
                .into_styled(PrimitiveStyle::with_fill(colors::OTHER))
                .draw(target)?;
        }
        let mut pct: heapless::String<8> = heapless::String::new();
        let _ = write!(pct, "{:.0}%", p * 100.0);
        Text::with_text_style(
            &pct,
            Point::new(panel_w - pad, y),
            MonoTextStyle::new(small, colors::DIM_TEXT),
            right,
        )
        .draw(target)?;
    }
    Ok(())
}
