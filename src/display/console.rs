//! The Linux text console over a framebuffer or DRM display: fbcon draws its text (and a
//! blinking cursor) over whatever dermcam shows unless the tty is in graphics mode.
//!
//! [`ConsoleGuard`] opens the tty (default `/dev/tty0`), sets `KD_GRAPHICS` and restores
//! `KD_TEXT` when dropped. Because a panic that aborts, or one on a thread that never unwinds
//! through the guard, would leave the console dark, a panic hook installed once also restores
//! `KD_TEXT` on every tty a live guard holds. [`install_stop_signals`] turns SIGINT/SIGTERM into
//! a clean stop (the loop ends, the sinks drop, the console comes back). A missing tty (a
//! container, a serial-only board) is a logged warning, never a failure.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Once;

/// `KDSETMODE` from `<linux/kd.h>` (same value on every architecture).
const KDSETMODE: libc::c_ulong = 0x4B3A;
/// `KD_TEXT`.
const KD_TEXT: libc::c_ulong = 0x00;
/// `KD_GRAPHICS`.
const KD_GRAPHICS: libc::c_ulong = 0x01;

/// Ttys a live guard holds in graphics mode (file descriptors, -1 = free slot), read by the
/// panic hook.
static HELD: [AtomicI32; 4] = [
    AtomicI32::new(-1),
    AtomicI32::new(-1),
    AtomicI32::new(-1),
    AtomicI32::new(-1),
];
static HOOK: Once = Once::new();

/// Sets `mode` on the tty `fd`; false on failure.
fn set_mode(fd: libc::c_int, mode: libc::c_ulong) -> bool {
    // SAFETY: KDSETMODE takes its argument by value (an int), no pointer is passed; an
    // invalid or non-tty fd makes the kernel return an error, nothing else.
    unsafe { libc::ioctl(fd, KDSETMODE as _, mode) == 0 }
}

/// Restores `KD_TEXT` on every tty a guard holds (panic hook; async-signal-safe).
pub fn restore_all() {
    for slot in &HELD {
        let fd = slot.load(Ordering::Acquire);
        if fd >= 0 {
            set_mode(fd, KD_TEXT);
        }
    }
}

fn install_panic_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_all();
            previous(info);
        }));
    });
}

/// Holds a tty in graphics mode; restores text mode on drop.
#[derive(Debug)]
pub struct ConsoleGuard {
    tty: OwnedFd,
    path: String,
    slot: Option<usize>,
}

impl ConsoleGuard {
    /// Puts `path` (e.g. `/dev/tty0`) in `KD_GRAPHICS`. `None` (with a logged warning) if the
    /// tty cannot be opened or switched; an empty path or `"none"` leaves the console alone.
    pub fn acquire(path: &str) -> Option<ConsoleGuard> {
        if path.is_empty() || path == "none" {
            return None;
        }
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
        {
            Ok(f) => f,
            Err(e) => {
                log::warn!(
                    "{path}: cannot open the console ({e}); the text console may draw over the display"
                );
                return None;
            }
        };
        let tty: OwnedFd = file.into();
        install_panic_hook();
        if !set_mode(tty.as_raw_fd(), KD_GRAPHICS) {
            log::warn!(
                "{path}: cannot set KD_GRAPHICS ({}); the text console may draw over the display",
                std::io::Error::last_os_error()
            );
            return None;
        }
        let fd = tty.as_raw_fd();
        let slot = HELD.iter().position(|s| {
            s.compare_exchange(-1, fd, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        });
        log::info!("{path}: console in graphics mode (text mode restored at exit)");
        Some(ConsoleGuard {
            tty,
            path: path.to_string(),
            slot,
        })
    }

    /// The tty's path.
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl Drop for ConsoleGuard {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            HELD[i].store(-1, Ordering::Release);
        }
        if !set_mode(self.tty.as_raw_fd(), KD_TEXT) {
            log::warn!(
                "{}: cannot restore KD_TEXT: {}",
                self.path,
                std::io::Error::last_os_error()
            );
        }
    }
}

static STOP_SIGNAL: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP_SIGNAL.store(true, Ordering::Release);
}

/// Makes SIGINT and SIGTERM set a flag ([`stop_signalled`]) instead of killing the process,
/// so the loop can stop cleanly and every display restores its console and CRTC.
pub fn install_stop_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction is valid (empty mask, no flags); the handler only stores
        // to an atomic, which is async-signal-safe, and has the C ABI `sa_handler` expects.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_stop_signal as extern "C" fn(libc::c_int) as usize;
            // A second signal kills as usual (the handler is reset after the first).
            sa.sa_flags = libc::SA_RESTART | libc::SA_RESETHAND;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                log::warn!(
                    "cannot install the handler of signal {sig}: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
    }
}

/// Whether SIGINT or SIGTERM arrived since [`install_stop_signals`].
pub fn stop_signalled() -> bool {
    STOP_SIGNAL.load(Ordering::Acquire)
}

/// Sets `stop` when a stop signal arrives; returns when it did or when `finished` is set
/// (polled every 50 ms: run it on a thread beside the loop).
pub fn forward_stop_signal(stop: &AtomicBool, finished: &AtomicBool) {
    while !finished.load(Ordering::Acquire) {
        if stop_signalled() {
            log::info!("stop signal received: stopping");
            stop.store(true, Ordering::Release);
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_disabled_tty_is_not_an_error() {
        assert!(ConsoleGuard::acquire("/nonexistent/tty9").is_none());
        assert!(ConsoleGuard::acquire("none").is_none());
        assert!(ConsoleGuard::acquire("").is_none());
        // A file that is not a tty: opened, but KD_GRAPHICS fails -> None, slot not taken.
        let f = tempfile::NamedTempFile::new().expect("temp");
        assert!(ConsoleGuard::acquire(&f.path().display().to_string()).is_none());
        assert!(HELD.iter().all(|s| s.load(Ordering::Acquire) == -1));
    }
}
