//! Controls: the clinician's button(s) and the status LED.
//!
//! - [`Button`] is a debounced button as a pure state machine with time passed in:
//!   [`Button::update`] takes the raw level and `now` and returns at most one [`Action`]. On
//!   the main button a short press (released before `long_press`) is
//!   [`Action::ToggleFreeze`], a long press is [`Action::Save`] and fires while the button
//!   is still held; an optional second button saves on every press.
//! - [`LedMode`] says what the status LED shows (ready: steady on; working/saving: blink;
//!   error: fast blink) and [`StatusLed`] drives any output pin with it.
//! - [`PinControls`] ties pins to buttons and the LED behind
//!   `embedded_hal::digital::{InputPin, OutputPin}`, so tests use mock pins and a board uses
//!   [`linux_embedded_hal::CdevPin`] (the GPIO character device, opened with
//!   [`open_input`] / [`open_output`]).
//! - [`ControlBus`] carries the actions to the pipeline and the LED mode back, lock-free;
//!   [`run_controls`] polls the pins on a thread of its own, off the frame path, and
//!   [`spawn_stdin`] reads the same actions from standard input in development
//!   (`f` freeze/unfreeze, `s` save, `q` quit).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use embedded_hal::digital::{InputPin, OutputPin};

use crate::compose::ScreenState;

/// What a control asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Freeze the current frame and its analysis, or go live again.
    ToggleFreeze,
    /// Save a screening record of the frozen (or newest) frame.
    Save,
    /// Stop dermcam (development: `q` on standard input).
    Quit,
}

/// Errors of the controls' hardware.
#[derive(Debug, thiserror::Error)]
pub enum ControlsError {
    /// A GPIO line could not be opened, read or written.
    #[error("{pin}: {message}")]
    Pin {
        /// Which line (`/dev/gpiochip0 line 17 (button)`).
        pin: PinLabel,
        /// What went wrong.
        message: String,
    },
}

/// Names a GPIO line in messages: `/dev/gpiochip0 line 17 (button)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinLabel {
    /// GPIO chip device.
    pub chip: PathBuf,
    /// Line offset on the chip.
    pub line: u32,
    /// What the line is for (`button`, `save button`, `led`).
    pub role: &'static str,
}

impl fmt::Display for PinLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} line {} ({})",
            self.chip.display(),
            self.line,
            self.role
        )
    }
}

/// Debounce and long-press timing of a button.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ButtonTiming {
    /// A level must stay unchanged this long to count (contact bounce is shorter).
    pub debounce: Duration,
    /// A press held this long is a long press (fires while held).
    pub long_press: Duration,
}

impl Default for ButtonTiming {
    fn default() -> Self {
        ButtonTiming {
            debounce: Duration::from_millis(30),
            long_press: Duration::from_millis(1500),
        }
    }
}

/// What a button does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ButtonRole {
    /// Short press: [`Action::ToggleFreeze`] (on release); long press: [`Action::Save`]
    /// (while held).
    FreezeAndSave,
    /// Every press: [`Action::Save`] (on press).
    Save,
}

/// A debounced button: a pure state machine, time passed in.
///
/// The first sample only sets the level: a button held while dermcam starts does nothing
/// until it is released and pressed again.
#[derive(Debug, Clone)]
pub struct Button {
    role: ButtonRole,
    timing: ButtonTiming,
    /// Debounced level (`true` = pressed); `None` before the first sample.
    stable: Option<bool>,
    /// A different level seen since this instant, not yet stable.
    candidate: Option<(bool, Instant)>,
    /// When the current press began (its first edge), if it counts.
    pressed_at: Option<Instant>,
    /// The long press of the current press has fired.
    long_fired: bool,
}

impl Button {
    /// A released button.
    pub fn new(role: ButtonRole, timing: ButtonTiming) -> Self {
        Button {
            role,
            timing,
            stable: None,
            candidate: None,
            pressed_at: None,
            long_fired: false,
        }
    }

    /// The debounced level (`true` = pressed).
    pub fn is_pressed(&self) -> bool {
        self.stable == Some(true)
    }

    /// Feeds one sample of the raw level (`pressed` = the button is down, after any
    /// active-low inversion) taken at `now`; returns the action it completes, if any.
    pub fn update(&mut self, pressed: bool, now: Instant) -> Option<Action> {
        let Some(stable) = self.stable else {
            self.stable = Some(pressed);
            return None;
        };
        if pressed == stable {
            self.candidate = None;
        } else {
            let since = match self.candidate {
                Some((level, t)) if level == pressed => t,
                _ => {
                    self.candidate = Some((pressed, now));
                    now
                }
            };
            if now.saturating_duration_since(since) >= self.timing.debounce {
                self.stable = Some(pressed);
                self.candidate = None;
                if pressed {
                    self.pressed_at = Some(since);
                    self.long_fired = false;
                    if self.role == ButtonRole::Save {
                        return Some(Action::Save);
                    }
                } else {
                    let counted = self.pressed_at.take().is_some();
                    if self.role == ButtonRole::FreezeAndSave && counted && !self.long_fired {
                        return Some(Action::ToggleFreeze);
                    }
                    return None;
                }
            }
        }
        // A release being debounced is not held: it will be a short press.
        if self.role == ButtonRole::FreezeAndSave
            && self.is_pressed()
            && !self.long_fired
            && self.candidate.is_none()
        {
            if let Some(t0) = self.pressed_at {
                if now.saturating_duration_since(t0) >= self.timing.long_press {
                    self.long_fired = true;
                    return Some(Action::Save);
                }
            }
        }
        None
    }
}

/// What the status LED shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LedMode {
    /// Off (stopped).
    #[default]
    Off,
    /// Ready: steady on.
    Ready,
    /// Working (starting, frozen, saving): blinks at 2 Hz.
    Working,
    /// Error (no camera, model error, record not saved): blinks fast, at 6 Hz.
    Error,
}

impl LedMode {
    /// Half period of [`LedMode::Working`].
    pub const WORKING_HALF_PERIOD: Duration = Duration::from_millis(250);
    /// Half period of [`LedMode::Error`].
    pub const ERROR_HALF_PERIOD: Duration = Duration::from_millis(83);

    /// Whether the LED is lit `t` after the pattern's start.
    pub fn level(self, t: Duration) -> bool {
        let phase = |half: Duration| (t.as_millis() / half.as_millis()) % 2 == 0;
        match self {
            LedMode::Off => false,
            LedMode::Ready => true,
            LedMode::Working => phase(Self::WORKING_HALF_PERIOD),
            LedMode::Error => phase(Self::ERROR_HALF_PERIOD),
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            LedMode::Off => 0,
            LedMode::Ready => 1,
            LedMode::Working => 2,
            LedMode::Error => 3,
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => LedMode::Ready,
            2 => LedMode::Working,
            3 => LedMode::Error,
            _ => LedMode::Off,
        }
    }
}

/// Drives an output pin with a [`LedMode`]; writes the pin only when its level changes.
#[derive(Debug)]
pub struct StatusLed<P> {
    pin: P,
    label: PinLabel,
    mode: LedMode,
    since: Option<Instant>,
    lit: Option<bool>,
}

impl<P: OutputPin> StatusLed<P> {
    /// An LED on `pin`, named `label` in errors.
    pub fn new(pin: P, label: PinLabel) -> Self {
        StatusLed {
            pin,
            label,
            mode: LedMode::Off,
            since: None,
            lit: None,
        }
    }

    /// Shows `mode` at `now` (a new mode starts its pattern lit).
    pub fn drive(&mut self, mode: LedMode, now: Instant) -> Result<(), ControlsError> {
        if mode != self.mode || self.since.is_none() {
            self.mode = mode;
            self.since = Some(now);
        }
        let t = now.saturating_duration_since(self.since.unwrap_or(now));
        let lit = mode.level(t);
        if self.lit != Some(lit) {
            let r = if lit {
                self.pin.set_high()
            } else {
                self.pin.set_low()
            };
            r.map_err(|e| ControlsError::Pin {
                pin: self.label.clone(),
                message: format!("cannot set the level: {e:?}"),
            })?;
            self.lit = Some(lit);
        }
        Ok(())
    }

    /// The pin (tests inspect mock pins through it).
    pub fn pin(&self) -> &P {
        &self.pin
    }
}

/// One input pin and its button.
#[derive(Debug)]
pub struct ButtonInput<I> {
    pin: I,
    label: PinLabel,
    button: Button,
}

impl<I: InputPin> ButtonInput<I> {
    /// A button on `pin` (high = pressed; active-low lines are inverted when requested).
    pub fn new(pin: I, label: PinLabel, role: ButtonRole, timing: ButtonTiming) -> Self {
        ButtonInput {
            pin,
            label,
            button: Button::new(role, timing),
        }
    }

    /// Samples the pin at `now`.
    pub fn poll(&mut self, now: Instant) -> Result<Option<Action>, ControlsError> {
        let pressed = self.pin.is_high().map_err(|e| ControlsError::Pin {
            pin: self.label.clone(),
            message: format!("cannot read the level: {e:?}"),
        })?;
        Ok(self.button.update(pressed, now))
    }
}

/// The controls of a board: the main button, an optional save button and an optional LED.
#[derive(Debug)]
pub struct PinControls<I, O> {
    /// The main button (short: freeze, long: save).
    pub button: Option<ButtonInput<I>>,
    /// The save button.
    pub save: Option<ButtonInput<I>>,
    /// The status LED.
    pub led: Option<StatusLed<O>>,
}

impl<I: InputPin, O: OutputPin> PinControls<I, O> {
    /// Samples the buttons at `now` and sends their actions to `bus`; drives the LED with
    /// the bus's mode. Returns the first error (the other pins are still served).
    pub fn poll(&mut self, bus: &ControlBus, now: Instant) -> Result<(), ControlsError> {
        let mut first_error = None;
        for input in [self.button.as_mut(), self.save.as_mut()]
            .into_iter()
            .flatten()
        {
            match input.poll(now) {
                Ok(Some(action)) => bus.send(action),
                Ok(None) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(led) = self.led.as_mut() {
            if let Err(e) = led.drive(bus.led_mode(), now) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Polls `controls` every `period` until `stop` is set, then turns the LED off. Pin errors
/// are logged (the first, then every 1000th) and do not stop the loop.
pub fn run_controls<I: InputPin, O: OutputPin>(
    mut controls: PinControls<I, O>,
    bus: &ControlBus,
    stop: &AtomicBool,
    period: Duration,
) {
    let mut errors = 0u64;
    while !stop.load(Ordering::Relaxed) && !bus.quit_requested() {
        if let Err(e) = controls.poll(bus, Instant::now()) {
            errors += 1;
            if errors == 1 || errors % 1000 == 0 {
                log::error!("controls: {e} ({errors} error(s) so far)");
            }
        }
        std::thread::sleep(period);
    }
    if let Some(led) = controls.led.as_mut() {
        if let Err(e) = led.drive(LedMode::Off, Instant::now()) {
            log::warn!("controls: {e}");
        }
    }
}

/// Actions from the controls to the pipeline, and back what the pipeline shows (the LED
/// mode and the screen state), lock-free.
///
/// Freeze and save requests are counters, so none is lost between two reads; the pipeline
/// compares them with the counts it has handled.
#[derive(Debug, Default)]
pub struct ControlBus {
    toggles: AtomicU64,
    saves: AtomicU64,
    quit: AtomicBool,
    led: AtomicU8,
    screen: AtomicU8,
}

impl ControlBus {
    /// A bus with no requests and the LED off.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends an action.
    pub fn send(&self, action: Action) {
        match action {
            Action::ToggleFreeze => {
                self.toggles.fetch_add(1, Ordering::AcqRel);
            }
            Action::Save => {
                self.saves.fetch_add(1, Ordering::AcqRel);
            }
            Action::Quit => self.quit.store(true, Ordering::Release),
        }
    }

    /// Freeze/unfreeze requests so far.
    pub fn toggles(&self) -> u64 {
        self.toggles.load(Ordering::Acquire)
    }

    /// Save requests so far.
    pub fn saves(&self) -> u64 {
        self.saves.load(Ordering::Acquire)
    }

    /// Whether a quit was asked for.
    pub fn quit_requested(&self) -> bool {
        self.quit.load(Ordering::Acquire)
    }

    /// Sets what the LED shows (the pipeline calls this).
    pub fn set_led_mode(&self, mode: LedMode) {
        self.led.store(mode.to_u8(), Ordering::Relaxed);
    }

    /// What the LED shows.
    pub fn led_mode(&self) -> LedMode {
        LedMode::from_u8(self.led.load(Ordering::Relaxed))
    }

    /// Records the state of the screen being shown (the pipeline sets it just before it
    /// hands each composed frame to the display).
    pub fn set_screen_state(&self, state: ScreenState) {
        let i = ScreenState::ALL
            .iter()
            .position(|s| *s == state)
            .unwrap_or(0);
        self.screen.store(i as u8, Ordering::Release);
    }

    /// The state of the screen last shown (`Live` before the first frame).
    pub fn screen_state(&self) -> ScreenState {
        ScreenState::ALL
            .get(self.screen.load(Ordering::Acquire) as usize)
            .copied()
            .unwrap_or_default()
    }
}

/// Parses a development command line: `f` (freeze/unfreeze), `s` (save), `q` (quit);
/// whole words (`freeze`, `save`, `quit`) work too. Anything else is `None`.
pub fn parse_command(line: &str) -> Option<Action> {
    match line.trim().to_ascii_lowercase().as_str() {
        "f" | "freeze" | "unfreeze" => Some(Action::ToggleFreeze),
        "s" | "save" => Some(Action::Save),
        "q" | "quit" => Some(Action::Quit),
        _ => None,
    }
}

/// Reads commands from standard input on a detached thread (it may block in `read` until
/// the process exits) and sends them to `bus`. End of input ends the thread, not dermcam.
pub fn spawn_stdin(bus: Arc<ControlBus>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("dermcam-stdin".into())
        .spawn(move || {
            let stdin = std::io::stdin();
            let mut line = String::new();
            loop {
                line.clear();
                match stdin.read_line(&mut line) {
                    Ok(0) => return,
                    Ok(_) => match parse_command(&line) {
                        Some(action) => {
                            log::info!("controls (stdin): {action:?}");
                            bus.send(action);
                        }
                        None if line.trim().is_empty() => {}
                        None => log::warn!(
                            "controls (stdin): {:?} is not a command; use f (freeze/unfreeze), s (save), q (quit)",
                            line.trim()
                        ),
                    },
                    Err(e) => {
                        log::warn!("controls (stdin): {e}; no more commands from standard input");
                        return;
                    }
                }
            }
        })
        .map(drop)
}

/// The GPIO character device's consumer name for dermcam's lines.
pub const CONSUMER: &str = "dermcam";

fn request(
    label: &PinLabel,
    flags: linux_embedded_hal::gpio_cdev::LineRequestFlags,
    default: u8,
) -> Result<linux_embedded_hal::CdevPin, ControlsError> {
    let err = |what: &str, e: &dyn fmt::Display| ControlsError::Pin {
        pin: label.clone(),
        message: format!("{what}: {e}"),
    };
    let mut chip = linux_embedded_hal::gpio_cdev::Chip::new(&label.chip)
        .map_err(|e| err("cannot open the GPIO chip", &e))?;
    let line = chip
        .get_line(label.line)
        .map_err(|e| err("no such line", &e))?;
    let handle = line
        .request(flags, default, CONSUMER)
        .map_err(|e| err("cannot request the line", &e))?;
    linux_embedded_hal::CdevPin::new(handle).map_err(|e| err("cannot read the line's info", &e))
}

/// A button line on the GPIO character device; `is_high` means pressed.
///
/// An active-low line is requested *without* the kernel's `ACTIVE_LOW` flag and inverted
/// here: linux-embedded-hal's `CdevPin::is_high` inverts the value of a line requested
/// active-low once more (the kernel already returns the logical value), so with the flag it
/// reports the physical level and a released button would read as pressed (found in the
/// gpio-sim HIL test, `tests/hil/gpio.sh`).
pub struct ButtonPin {
    pin: linux_embedded_hal::CdevPin,
    active_low: bool,
}

impl fmt::Debug for ButtonPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ButtonPin")
            .field("active_low", &self.active_low)
            .finish_non_exhaustive()
    }
}

impl embedded_hal::digital::ErrorType for ButtonPin {
    type Error = linux_embedded_hal::CdevPinError;
}

impl InputPin for ButtonPin {
    fn is_high(&mut self) -> Result<bool, Self::Error> {
        Ok(self.pin.is_high()? != self.active_low)
    }

    fn is_low(&mut self) -> Result<bool, Self::Error> {
        self.is_high().map(|pressed| !pressed)
    }
}

/// Opens a button line as an input (`active_low`: the line reads low when pressed); the
/// pin's `is_high` means pressed.
pub fn open_input(
    chip: &Path,
    line: u32,
    active_low: bool,
    role: &'static str,
) -> Result<ButtonPin, ControlsError> {
    use linux_embedded_hal::gpio_cdev::LineRequestFlags;
    let label = PinLabel {
        chip: chip.to_path_buf(),
        line,
        role,
    };
    let pin = request(&label, LineRequestFlags::INPUT, 0)?;
    Ok(ButtonPin { pin, active_low })
}

/// Opens an LED line as an output, initially off.
pub fn open_output(
    chip: &Path,
    line: u32,
    role: &'static str,
) -> Result<linux_embedded_hal::CdevPin, ControlsError> {
    use linux_embedded_hal::gpio_cdev::LineRequestFlags;
    let label = PinLabel {
        chip: chip.to_path_buf(),
        line,
        role,
    };
    request(&label, LineRequestFlags::OUTPUT, 0)
}
