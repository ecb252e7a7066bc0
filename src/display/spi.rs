//! SPI panels: ST7789 and ILI9341 controllers driven through [`mipidsi`] over
//! `linux-embedded-hal` (spidev for the bus, GPIO character-device lines for DC, RST and
//! the backlight).
//!
//! The driver ([`SpiPanel`]) is generic over the embedded-hal traits, so the tests drive the
//! exact code path a board runs with a recording mock SPI device and mock pins. [`open`]
//! builds it from `[display.spi]` on real hardware.
//!
//! The sink reports the panel's size after rotation ([`FrameSink::output_size`]), so the
//! composer draws at that size. Per frame, [`FrameSink::show`] converts the composed RGB888
//! frame into an RGB565 buffer sized at start-up, sets the window (CASET/RASET, with the
//! module's offsets for the configured rotation) and streams it after RAMWR, big-endian, in
//! writes of at most
//! [`MAX_TRANSFER`] bytes (spidev's default `bufsiz`; a larger `write(2)` fails with
//! `EMSGSIZE`). Nothing on that path allocates.
//!
//! # linux-embedded-hal and `TransferInPlace`
//!
//! linux-embedded-hal 0.4.0 built an aliasing `&[u8]` over the `&mut [u8]` of
//! `SpiOperation::TransferInPlace` with `unsafe` (undefined behaviour). 0.5.0, the version we
//! pin, fixes it: its changelog says "Fix UB (and remove unsafe block) in handling of
//! SpiOperation::TransferInPlace", and `SpidevDevice::transaction` now uses
//! `SpidevTransfer::read_write_in_place` (spidev 0.7.1), with no `unsafe`. We do not depend on
//! it either way: a panel is write-only, and [`WriteOnlySpi`] writes with plain `write(2)` and
//! refuses read and transfer operations. It also avoids `SpidevDevice::transaction`, which
//! allocates a `Vec` of transfers on every call (one per chunk, ~30 per frame).

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use embedded_graphics::pixelcolor::raw::RawU16;
use embedded_graphics::pixelcolor::Rgb565;
use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{self as hal_digital, OutputPin};
use embedded_hal::spi::{self as hal_spi, Operation, SpiDevice};
use linux_embedded_hal::gpio_cdev::{Chip, LineRequestFlags};
use linux_embedded_hal::spidev::{SpiModeFlags, Spidev, SpidevOptions};
use linux_embedded_hal::{CdevPin, Delay};
use mipidsi::interface::{Interface, InterfaceKind};
use mipidsi::models::{ILI9341Rgb565, ST7789};
use mipidsi::options::{ColorInversion, Orientation, Rotation};
use mipidsi::{Builder, Display, InitError};
use serde::Deserialize;

use super::{DisplayError, FrameSink};
use crate::frame::RgbFrame;
use crate::pipeline::Analysis;

/// The largest single SPI write: spidev's default `bufsiz` (a longer `write(2)` fails).
pub const MAX_TRANSFER: usize = 4096;

/// The smallest transfer size we accept (a few pixels per write).
const MIN_TRANSFER: usize = 64;

/// Both controllers address 240x320 pixels of display RAM in their native orientation.
pub const CONTROLLER_RAM: (u16, u16) = (240, 320);

/// DCS software reset, sent when no RST line is wired.
const SWRESET: u8 = 0x01;

// ---------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------

/// Display controller of an SPI panel.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Controller {
    /// Sitronix ST7789 (IPS modules: 240x240, 135x240, 240x320, 172x320...).
    St7789,
    /// Ilitek ILI9341 (240x320 TFT modules), driven in 16-bit colour.
    Ili9341,
}

impl Controller {
    fn name(self) -> &'static str {
        match self {
            Controller::St7789 => "ST7789",
            Controller::Ili9341 => "ILI9341",
        }
    }

    /// Usual colour inversion of this controller's modules: ST7789 IPS panels need it on.
    pub fn default_invert(self) -> bool {
        matches!(self, Controller::St7789)
    }

    /// Usual subpixel order of this controller's modules: ILI9341 modules are BGR.
    pub fn default_color_order(self) -> ColorOrder {
        match self {
            Controller::St7789 => ColorOrder::Rgb,
            Controller::Ili9341 => ColorOrder::Bgr,
        }
    }
}

/// Subpixel order of a panel (the MADCTL BGR bit; pixel data is always sent as RGB565).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ColorOrder {
    /// Red, green, blue.
    Rgb,
    /// Blue, green, red.
    Bgr,
}

/// A GPIO output line: a character device and a line offset on it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GpioLine {
    /// GPIO chip: `/dev/gpiochipN`, or just `gpiochipN`.
    pub chip: String,
    /// Line offset on that chip (the BCM number on a Raspberry Pi's main chip).
    pub line: u32,
}

impl GpioLine {
    /// The character device path (`gpiochip0` → `/dev/gpiochip0`).
    pub fn chip_path(&self) -> PathBuf {
        if self.chip.contains('/') {
            PathBuf::from(&self.chip)
        } else {
            Path::new("/dev").join(&self.chip)
        }
    }
}

/// `[display.spi]`: an SPI panel (used when `[display] kind = "spi"`).
///
/// `width`, `height` and the offsets are the module's visible pixels in the controller's
/// native (portrait) orientation, as module datasheets give them (a 1.14" ST7789 is
/// `width = 135, height = 240, offset_x = 52, offset_y = 40`); `rotation` turns the picture,
/// and the frames shown must have the rotated size (240x135 at rotation 90).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SpiSection {
    /// `"st7789"` or `"ili9341"`.
    pub controller: Controller,
    /// The spidev node (`/dev/spidev0.0`): bus 0, chip select 0.
    pub device: PathBuf,
    /// SPI clock in Hz.
    #[serde(default = "default_speed_hz")]
    pub speed_hz: u32,
    /// SPI mode 0..=3 (ST7789 modules without a CS pin usually need 3).
    #[serde(default)]
    pub mode: u8,
    /// Data/command line.
    pub dc: GpioLine,
    /// Reset line (active low); without it the panel gets a software reset.
    #[serde(default)]
    pub rst: Option<GpioLine>,
    /// Backlight line (driven high once the panel is initialised, low at the end).
    #[serde(default)]
    pub backlight: Option<GpioLine>,
    /// Visible width in the native orientation (1..=240).
    pub width: u16,
    /// Visible height in the native orientation (1..=320).
    pub height: u16,
    /// Rotation in degrees: 0, 90, 180 or 270.
    #[serde(default)]
    pub rotation: u16,
    /// Column of the visible area in controller RAM, native orientation.
    #[serde(default)]
    pub offset_x: u16,
    /// Row of the visible area in controller RAM, native orientation.
    #[serde(default)]
    pub offset_y: u16,
    /// Mirror the picture left to right (MADCTL MX).
    #[serde(default)]
    pub mirror: bool,
    /// Colour inversion (INVON); default: on for ST7789, off for ILI9341.
    #[serde(default)]
    pub invert_colors: Option<bool>,
    /// `"rgb"` or `"bgr"`; default: rgb for ST7789, bgr for ILI9341.
    #[serde(default)]
    pub color_order: Option<ColorOrder>,
}

fn default_speed_hz() -> u32 {
    32_000_000
}

impl SpiSection {
    /// Checks the values; on error, the dotted key and what is wrong.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.device.as_os_str().is_empty() {
            return Err(("display.spi.device", "is empty".into()));
        }
        if !(100_000..=100_000_000).contains(&self.speed_hz) {
            return Err((
                "display.spi.speed_hz",
                format!("is {}; must be within 100000..=100000000", self.speed_hz),
            ));
        }
        if self.mode > 3 {
            return Err((
                "display.spi.mode",
                format!("is {}; must be 0, 1, 2 or 3", self.mode),
            ));
        }
        let (ram_w, ram_h) = CONTROLLER_RAM;
        if !(1..=ram_w).contains(&self.width) {
            return Err((
                "display.spi.width",
                format!("is {}; must be within 1..={ram_w}", self.width),
            ));
        }
        if !(1..=ram_h).contains(&self.height) {
            return Err((
                "display.spi.height",
                format!("is {}; must be within 1..={ram_h}", self.height),
            ));
        }
        if u32::from(self.offset_x) + u32::from(self.width) > u32::from(ram_w) {
            return Err((
                "display.spi.offset_x",
                format!(
                    "is {}; offset_x + width ({}) must be at most {ram_w}",
                    self.offset_x, self.width
                ),
            ));
        }
        if u32::from(self.offset_y) + u32::from(self.height) > u32::from(ram_h) {
            return Err((
                "display.spi.offset_y",
                format!(
                    "is {}; offset_y + height ({}) must be at most {ram_h}",
                    self.offset_y, self.height
                ),
            ));
        }
        if self.rotation_option().is_none() {
            return Err((
                "display.spi.rotation",
                format!("is {}; must be 0, 90, 180 or 270", self.rotation),
            ));
        }
        let lines = [
            ("display.spi.dc", Some(&self.dc)),
            ("display.spi.rst", self.rst.as_ref()),
            ("display.spi.backlight", self.backlight.as_ref()),
        ];
        for (i, (key, line)) in lines.iter().enumerate() {
            let Some(line) = line else { continue };
            if line.chip.is_empty() {
                return Err((key, "has an empty chip".into()));
            }
            for (other_key, other) in &lines[..i] {
                if let Some(other) = other {
                    if other.chip_path() == line.chip_path() && other.line == line.line {
                        return Err((
                            key,
                            format!(
                                "is {} line {}, the same line as {other_key}",
                                line.chip, line.line
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn rotation_option(&self) -> Option<Rotation> {
        match self.rotation {
            0 => Some(Rotation::Deg0),
            90 => Some(Rotation::Deg90),
            180 => Some(Rotation::Deg180),
            270 => Some(Rotation::Deg270),
            _ => None,
        }
    }

    /// The size of the frames this panel shows: `width`x`height`, swapped at 90 and 270.
    pub fn frame_size(&self) -> (u32, u32) {
        let (w, h) = (u32::from(self.width), u32::from(self.height));
        if self.rotation % 180 == 90 {
            (h, w)
        } else {
            (w, h)
        }
    }

    /// Colour inversion in effect (configured, else the controller's default).
    pub fn inverted(&self) -> bool {
        self.invert_colors
            .unwrap_or_else(|| self.controller.default_invert())
    }

    /// Subpixel order in effect (configured, else the controller's default).
    pub fn order(&self) -> ColorOrder {
        self.color_order
            .unwrap_or_else(|| self.controller.default_color_order())
    }

    fn pin_label(&self, role: &'static str) -> String {
        let line = match role {
            "rst" => self.rst.as_ref(),
            "backlight" => self.backlight.as_ref(),
            _ => Some(&self.dc),
        };
        match line {
            Some(l) => format!("{} line {} ({role})", l.chip, l.line),
            None => format!("({role})"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// Errors of SPI panels. Every message names the device or pin and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum PanelError {
    /// A configuration value is missing or out of range.
    #[error("{key} {problem}")]
    Config {
        /// Dotted key.
        key: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// The spidev node could not be opened.
    #[error("{device}: cannot open: {reason}")]
    Open {
        /// The spidev path.
        device: String,
        /// Cause.
        reason: String,
    },
    /// The bus could not be set to the configured mode and speed.
    #[error("{device}: cannot set SPI mode {mode} at {speed_hz} Hz: {reason}")]
    Configure {
        /// The spidev path.
        device: String,
        /// SPI mode.
        mode: u8,
        /// Clock.
        speed_hz: u32,
        /// Cause.
        reason: String,
    },
    /// A GPIO line could not be requested or driven.
    #[error("{pin}: {problem}")]
    Pin {
        /// `chip line N (role)`.
        pin: String,
        /// What is wrong.
        problem: String,
    },
    /// The controller's initialisation failed.
    #[error("{device}: {controller} initialisation failed: {reason}")]
    Init {
        /// The spidev path.
        device: String,
        /// Controller name.
        controller: &'static str,
        /// Cause.
        reason: String,
    },
    /// The composed frame does not have the panel's size.
    #[error(
        "{device}: frame is {frame_width}x{frame_height} but the panel shows \
         {panel_width}x{panel_height} (rotation {rotation}); frames must be composed at the \
         panel's size"
    )]
    FrameSize {
        /// The spidev path.
        device: String,
        /// Frame width.
        frame_width: u32,
        /// Frame height.
        frame_height: u32,
        /// Panel width after rotation.
        panel_width: u32,
        /// Panel height after rotation.
        panel_height: u32,
        /// Rotation in degrees.
        rotation: u16,
    },
    /// Sending a frame failed.
    #[error("{device}: frame write failed: {reason}")]
    Write {
        /// The spidev path.
        device: String,
        /// Cause.
        reason: String,
    },
}

/// `"No such file or directory (os error 2)"` → `"No such file or directory"`.
fn reason(e: &dyn fmt::Display) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) if s.ends_with(')') => s[..i].to_string(),
        _ => s,
    }
}

// ---------------------------------------------------------------------------------------
// Bus: a write-only SpiDevice over io::Write (spidev), chunked
// ---------------------------------------------------------------------------------------

/// Errors of [`WriteOnlySpi`].
#[derive(Debug, thiserror::Error)]
pub enum SpiWriteError {
    /// `write(2)` failed.
    #[error("{}", reason(.0))]
    Io(#[from] io::Error),
    /// A read or full-duplex operation was requested; the panel link only writes.
    #[error("unsupported SPI operation {0} (the panel link only writes)")]
    Unsupported(&'static str),
}

impl hal_spi::Error for SpiWriteError {
    fn kind(&self) -> hal_spi::ErrorKind {
        hal_spi::ErrorKind::Other
    }
}

/// A write-only [`SpiDevice`] over any [`io::Write`] — on a board, [`Spidev`], whose `write(2)`
/// is one half-duplex message with chip select held. Each write is split into messages of at
/// most `max_transfer` bytes (chip select may toggle between them, which DC-framed panels
/// ignore). Read, transfer and transfer-in-place operations are refused, never emulated.
/// Makes no heap allocation (unlike `SpidevDevice::transaction`).
#[derive(Debug)]
pub struct WriteOnlySpi<W> {
    inner: W,
    max_transfer: usize,
}

impl<W: Write> WriteOnlySpi<W> {
    /// Wraps `inner`; `max_transfer` is clamped to 64..=[`MAX_TRANSFER`].
    pub fn new(inner: W, max_transfer: usize) -> Self {
        WriteOnlySpi {
            inner,
            max_transfer: max_transfer.clamp(MIN_TRANSFER, MAX_TRANSFER),
        }
    }

    /// The largest single write.
    pub fn max_transfer(&self) -> usize {
        self.max_transfer
    }

    /// The wrapped writer.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> hal_spi::ErrorType for WriteOnlySpi<W> {
    type Error = SpiWriteError;
}

impl<W: Write> SpiDevice for WriteOnlySpi<W> {
    fn transaction(&mut self, operations: &mut [Operation<'_, u8>]) -> Result<(), SpiWriteError> {
        // Refuse before sending anything, so a bad transaction is not half-done.
        for op in operations.iter() {
            match op {
                Operation::Write(_) | Operation::DelayNs(_) => {}
                Operation::Read(_) => return Err(SpiWriteError::Unsupported("read")),
                Operation::Transfer(_, _) => return Err(SpiWriteError::Unsupported("transfer")),
                Operation::TransferInPlace(_) => {
                    return Err(SpiWriteError::Unsupported("transfer-in-place"))
                }
            }
        }
        for op in operations.iter() {
            match op {
                Operation::Write(words) => {
                    for chunk in words.chunks(self.max_transfer) {
                        self.inner.write_all(chunk)?;
                    }
                }
                Operation::DelayNs(ns) => {
                    std::thread::sleep(std::time::Duration::from_nanos(u64::from(*ns)))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// mipidsi interface: DC-framed commands and pixel data, owned buffer
// ---------------------------------------------------------------------------------------

/// Errors of [`PanelBus`].
#[derive(Debug)]
pub enum BusError<S, D> {
    /// The SPI write failed.
    Spi(S),
    /// Driving the DC line failed.
    Dc(D),
}

impl<S: fmt::Display, D: fmt::Display> fmt::Display for BusError<S, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusError::Spi(e) => write!(f, "SPI write: {e}"),
            BusError::Dc(e) => write!(f, "DC line: {e}"),
        }
    }
}

/// mipidsi's 4-line serial interface (DC low: command byte; DC high: parameters and pixel
/// data) over an [`SpiDevice`], with a batching buffer it owns, sized at start-up. It does
/// what mipidsi's own `SpiInterface` does, minus the borrowed buffer (a sink lives for the
/// whole run) and the empty writes; every write is at most the buffer's length.
pub struct PanelBus<SPI, DC> {
    spi: SPI,
    dc: DC,
    buffer: Box<[u8]>,
}

impl<SPI: SpiDevice, DC: OutputPin> PanelBus<SPI, DC> {
    /// A bus whose writes are at most `max_transfer` bytes (clamped to 64..=4096).
    pub fn new(spi: SPI, dc: DC, max_transfer: usize) -> Self {
        PanelBus {
            spi,
            dc,
            buffer: vec![0u8; max_transfer.clamp(MIN_TRANSFER, MAX_TRANSFER)].into_boxed_slice(),
        }
    }

    fn write_data(&mut self, data: &[u8]) -> Result<(), BusError<SPI::Error, DC::Error>> {
        for chunk in data.chunks(self.buffer.len()) {
            self.spi.write(chunk).map_err(BusError::Spi)?;
        }
        Ok(())
    }

    fn flush(&mut self, filled: usize) -> Result<(), BusError<SPI::Error, DC::Error>> {
        match self.buffer.get(..filled) {
            Some(bytes) if !bytes.is_empty() => self.spi.write(bytes).map_err(BusError::Spi),
            _ => Ok(()),
        }
    }
}

impl<SPI: SpiDevice, DC: OutputPin> Interface for PanelBus<SPI, DC> {
    type Word = u8;
    type Error = BusError<SPI::Error, DC::Error>;

    const KIND: InterfaceKind = InterfaceKind::Serial4Line;

    fn send_command(&mut self, command: u8, args: &[u8]) -> Result<(), Self::Error> {
        self.dc.set_low().map_err(BusError::Dc)?;
        self.spi.write(&[command]).map_err(BusError::Spi)?;
        self.dc.set_high().map_err(BusError::Dc)?;
        self.write_data(args)
    }

    fn send_pixels<const N: usize>(
        &mut self,
        pixels: impl IntoIterator<Item = [u8; N]>,
    ) -> Result<(), Self::Error> {
        if N == 0 || N > self.buffer.len() {
            for px in pixels {
                self.write_data(&px)?;
            }
            return Ok(());
        }
        let capacity = self.buffer.len() - self.buffer.len() % N;
        let mut filled = 0;
        for px in pixels {
            if filled + N > capacity {
                self.flush(filled)?;
                filled = 0;
            }
            if let Some(dst) = self.buffer.get_mut(filled..filled + N) {
                dst.copy_from_slice(&px);
            }
            filled += N;
        }
        self.flush(filled)
    }

    fn send_repeated_pixel<const N: usize>(
        &mut self,
        pixel: [u8; N],
        count: u32,
    ) -> Result<(), Self::Error> {
        if N == 0 || N > self.buffer.len() {
            for _ in 0..count {
                self.write_data(&pixel)?;
            }
            return Ok(());
        }
        let per_write = self.buffer.len() / N;
        for dst in self.buffer.chunks_exact_mut(N) {
            dst.copy_from_slice(&pixel);
        }
        let mut left = count as usize;
        while left > 0 {
            let n = left.min(per_write);
            self.flush(n * N)?;
            left -= n;
        }
        Ok(())
    }
}

/// An optional output line: forwards to the pin, or does nothing without one.
pub struct OptionalPin<P>(pub Option<P>);

impl<P: OutputPin> hal_digital::ErrorType for OptionalPin<P> {
    type Error = P::Error;
}

impl<P: OutputPin> OutputPin for OptionalPin<P> {
    fn set_low(&mut self) -> Result<(), P::Error> {
        self.0.as_mut().map_or(Ok(()), OutputPin::set_low)
    }

    fn set_high(&mut self) -> Result<(), P::Error> {
        self.0.as_mut().map_or(Ok(()), OutputPin::set_high)
    }
}

// ---------------------------------------------------------------------------------------
// The panel
// ---------------------------------------------------------------------------------------

/// RGB888 → RGB565 (5-6-5 bits kept, low bits dropped).
#[inline]
pub fn rgb565(r: u8, g: u8, b: u8) -> u16 {
    (u16::from(r & 0xF8) << 8) | (u16::from(g & 0xFC) << 3) | (u16::from(b) >> 3)
}

enum Controlled<DI, RST>
where
    DI: Interface<Word = u8>,
    RST: OutputPin,
{
    St7789(Display<DI, ST7789, RST>),
    Ili9341(Display<DI, ILI9341Rgb565, RST>),
}

/// An ST7789 or ILI9341 panel as a [`FrameSink`], generic over the embedded-hal SPI device
/// and output pins. See the module documentation.
pub struct SpiPanel<SPI, DC, RST, BL>
where
    SPI: SpiDevice,
    DC: OutputPin,
    RST: OutputPin,
    BL: OutputPin,
{
    display: Controlled<PanelBus<SPI, DC>, OptionalPin<RST>>,
    backlight: Option<BL>,
    section: SpiSection,
    device: String,
    width: u32,
    height: u32,
    rgb565: Box<[u16]>,
}

impl<SPI, DC, RST, BL> SpiPanel<SPI, DC, RST, BL>
where
    SPI: SpiDevice,
    SPI::Error: fmt::Display,
    DC: OutputPin,
    DC::Error: fmt::Display,
    RST: OutputPin,
    RST::Error: fmt::Display,
    BL: OutputPin,
    BL::Error: fmt::Display,
{
    /// Resets and initialises the panel (hardware reset through `rst`, else a software
    /// reset), then turns the backlight on. Writes are at most `max_transfer` bytes.
    pub fn new(
        section: &SpiSection,
        spi: SPI,
        dc: DC,
        rst: Option<RST>,
        mut backlight: Option<BL>,
        delay: &mut impl DelayNs,
        max_transfer: usize,
    ) -> Result<Self, PanelError> {
        section
            .validate()
            .map_err(|(key, problem)| PanelError::Config { key, problem })?;
        let device = section.device.display().to_string();
        let pin_err = |role: &'static str, e: &dyn fmt::Display| PanelError::Pin {
            pin: section.pin_label(role),
            problem: reason(e),
        };
        if let Some(bl) = backlight.as_mut() {
            bl.set_low().map_err(|e| pin_err("backlight", &e))?;
        }
        let init_err = |reason: String| PanelError::Init {
            device: device.clone(),
            controller: section.controller.name(),
            reason,
        };
        let mut bus = PanelBus::new(spi, dc, max_transfer);
        if rst.is_none() {
            // What mipidsi does without a reset pin; we hand it a no-op pin instead so that
            // one type serves both wirings.
            bus.send_command(SWRESET, &[])
                .map_err(|e| init_err(format!("software reset: {e}")))?;
        }
        let rotation = section.rotation_option().unwrap_or(Rotation::Deg0);
        let mut orientation = Orientation::new().rotate(rotation);
        orientation.mirrored = section.mirror;
        let inversion = if section.inverted() {
            ColorInversion::Inverted
        } else {
            ColorInversion::Normal
        };
        let order = match section.order() {
            ColorOrder::Rgb => mipidsi::options::ColorOrder::Rgb,
            ColorOrder::Bgr => mipidsi::options::ColorOrder::Bgr,
        };
        let rst = OptionalPin(rst);
        macro_rules! build {
            ($model:expr) => {
                Builder::new($model, bus)
                    .reset_pin(rst)
                    .display_size(section.width, section.height)
                    .display_offset(section.offset_x, section.offset_y)
                    .orientation(orientation)
                    .invert_colors(inversion)
                    .color_order(order)
                    .init(delay)
            };
        }
        let map_init = |e: InitError<BusError<SPI::Error, DC::Error>, RST::Error>| match e {
            InitError::Interface(e) => init_err(e.to_string()),
            InitError::ResetPin(e) => pin_err("rst", &e),
            InitError::InvalidConfiguration(c) => init_err(format!("invalid configuration: {c:?}")),
        };
        let display = match section.controller {
            Controller::St7789 => Controlled::St7789(build!(ST7789).map_err(map_init)?),
            Controller::Ili9341 => Controlled::Ili9341(build!(ILI9341Rgb565).map_err(map_init)?),
        };
        if let Some(bl) = backlight.as_mut() {
            bl.set_high().map_err(|e| pin_err("backlight", &e))?;
        }
        let (width, height) = section.frame_size();
        Ok(SpiPanel {
            display,
            backlight,
            section: section.clone(),
            device,
            width,
            height,
            rgb565: vec![0u16; width as usize * height as usize].into_boxed_slice(),
        })
    }

    /// The size of the frames this panel takes (after rotation).
    pub fn frame_size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// Converts `frame` and writes it to the whole panel. No heap allocation unless it fails.
    pub fn write_frame(&mut self, frame: &RgbFrame) -> Result<(), PanelError> {
        if (frame.width(), frame.height()) != (self.width, self.height) {
            return Err(PanelError::FrameSize {
                device: self.device.clone(),
                frame_width: frame.width(),
                frame_height: frame.height(),
                panel_width: self.width,
                panel_height: self.height,
                rotation: self.section.rotation,
            });
        }
        for (dst, px) in self.rgb565.iter_mut().zip(frame.data().chunks_exact(3)) {
            *dst = rgb565(px[0], px[1], px[2]);
        }
        // Sizes were validated against the 240x320 controller RAM: they fit in u16 and are ≥ 1.
        let (ex, ey) = (self.width as u16 - 1, self.height as u16 - 1);
        let pixels = self.rgb565.iter().map(|&v| Rgb565::from(RawU16::new(v)));
        let sent = match &mut self.display {
            Controlled::St7789(d) => d.set_pixels(0, 0, ex, ey, pixels),
            Controlled::Ili9341(d) => d.set_pixels(0, 0, ex, ey, pixels),
        };
        sent.map_err(|e| PanelError::Write {
            device: self.device.clone(),
            reason: reason(&e),
        })
    }

    /// Turns the backlight off (if there is one).
    pub fn backlight_off(&mut self) -> Result<(), PanelError> {
        if let Some(bl) = self.backlight.as_mut() {
            bl.set_low().map_err(|e| PanelError::Pin {
                pin: self.section.pin_label("backlight"),
                problem: reason(&e),
            })?;
        }
        Ok(())
    }
}

impl<SPI, DC, RST, BL> FrameSink for SpiPanel<SPI, DC, RST, BL>
where
    SPI: SpiDevice + Send,
    SPI::Error: fmt::Display,
    DC: OutputPin + Send,
    DC::Error: fmt::Display,
    RST: OutputPin + Send,
    RST::Error: fmt::Display,
    BL: OutputPin + Send,
    BL::Error: fmt::Display,
{
    fn show(&mut self, frame: &RgbFrame, _: Option<&Analysis>, _: u64) -> Result<(), DisplayError> {
        Ok(self.write_frame(frame)?)
    }

    fn finish(&mut self) -> Result<(), DisplayError> {
        Ok(self.backlight_off()?)
    }

    fn output_size(&self) -> Option<(u32, u32)> {
        Some((self.width, self.height))
    }

    fn describe(&self) -> String {
        let s = &self.section;
        format!(
            "{} {}x{} SPI panel on {} ({} MHz, mode {}), rotation {}, offset ({}, {}){}{}, {}",
            s.controller.name(),
            self.width,
            self.height,
            self.device,
            f64::from(s.speed_hz) / 1e6,
            s.mode,
            s.rotation,
            s.offset_x,
            s.offset_y,
            if s.mirror { ", mirrored" } else { "" },
            if s.inverted() { ", inverted" } else { "" },
            match s.order() {
                ColorOrder::Rgb => "RGB",
                ColorOrder::Bgr => "BGR",
            }
        )
    }
}

// ---------------------------------------------------------------------------------------
// Hardware
// ---------------------------------------------------------------------------------------

/// An SPI panel on spidev and GPIO character-device lines.
pub type SpidevPanel = SpiPanel<WriteOnlySpi<Spidev>, CdevPin, CdevPin, CdevPin>;

/// spidev's `bufsiz` module parameter, when readable.
fn spidev_bufsiz() -> Option<usize> {
    std::fs::read_to_string("/sys/module/spidev/parameters/bufsiz")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Requests `line` as an output driven to `initial`, named `dermcam-<role>`.
fn request_output(
    section: &SpiSection,
    line: &GpioLine,
    role: &'static str,
    initial: u8,
) -> Result<CdevPin, PanelError> {
    let pin_err = |problem: String| PanelError::Pin {
        pin: section.pin_label(role),
        problem,
    };
    let path = line.chip_path();
    let mut chip = Chip::new(&path)
        .map_err(|e| pin_err(format!("cannot open {}: {}", path.display(), reason(&e))))?;
    if line.line >= chip.num_lines() {
        return Err(pin_err(format!(
            "no such line ({} has {} lines)",
            path.display(),
            chip.num_lines()
        )));
    }
    let gpio = chip.get_line(line.line).map_err(|e| pin_err(reason(&e)))?;
    let info = gpio.info().map_err(|e| pin_err(reason(&e)))?;
    if info.is_used() {
        return Err(pin_err(match info.consumer() {
            Some(c) if !c.is_empty() => format!("busy (used by {c:?})"),
            _ => "busy (used by the kernel)".to_string(),
        }));
    }
    let handle = gpio
        .request(
            LineRequestFlags::OUTPUT,
            initial,
            &format!("dermcam-{role}"),
        )
        .map_err(|e| pin_err(format!("cannot request as output: {}", reason(&e))))?;
    CdevPin::new(handle).map_err(|e| pin_err(reason(&e)))
}

/// Opens the panel of `[display.spi]`: the spidev node (mode, speed, 8-bit words), the DC,
/// RST and backlight lines, then resets and initialises it.
pub fn open(section: &SpiSection) -> Result<SpidevPanel, PanelError> {
    section
        .validate()
        .map_err(|(key, problem)| PanelError::Config { key, problem })?;
    let device = section.device.display().to_string();
    let mut spidev = Spidev::open(&section.device).map_err(|e| PanelError::Open {
        device: device.clone(),
        reason: reason(&e),
    })?;
    let mode = match section.mode {
        0 => SpiModeFlags::SPI_MODE_0,
        1 => SpiModeFlags::SPI_MODE_1,
        2 => SpiModeFlags::SPI_MODE_2,
        _ => SpiModeFlags::SPI_MODE_3,
    };
    let options = SpidevOptions::new()
        .bits_per_word(8)
        .max_speed_hz(section.speed_hz)
        .mode(mode)
        .build();
    spidev
        .configure(&options)
        .map_err(|e| PanelError::Configure {
            device: device.clone(),
            mode: section.mode,
            speed_hz: section.speed_hz,
            reason: reason(&e),
        })?;
    let max_transfer = spidev_bufsiz().map_or(MAX_TRANSFER, |b| b.min(MAX_TRANSFER));
    let dc = request_output(section, &section.dc, "dc", 0)?;
    let rst = match &section.rst {
        Some(l) => Some(request_output(section, l, "rst", 1)?),
        None => None,
    };
    let backlight = match &section.backlight {
        Some(l) => Some(request_output(section, l, "backlight", 0)?),
        None => None,
    };
    let spi = WriteOnlySpi::new(spidev, max_transfer);
    let max_transfer = spi.max_transfer();
    SpiPanel::new(section, spi, dc, rst, backlight, &mut Delay, max_transfer)
}
