//! A fault-injecting wrapper around any frame source, in the spirit of smoltcp's
//! `FaultInjector`: drops, corrupts, truncates and delays frames, and times out or loses the
//! device, at configured rates, from a seeded deterministic PRNG, so a test can inject
//! exactly the faults a field camera has and then check that the counters say so.
//!
//! One random draw per poll decides a device-level event (disconnect, timeout, delay), and
//! one draw per frame decides what happens to it (drop, corrupt, truncate, or nothing); polls
//! that only wait for a pending delay or a reconnect draw nothing. The sequence of faults is
//! therefore a function of the seed and of the frames, not of timing. Corrupted and truncated
//! frames are written into a buffer allocated at construction: nothing is allocated per
//! frame.

use std::io;
use std::time::{Duration, Instant};

use super::v4l2::Reconnect;
use super::{CaptureError, FrameFormat, FrameSource, Poll, RawFrame};

/// Fault rates (probabilities in `0..=1`) and shapes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultConfig {
    /// PRNG seed.
    pub seed: u64,
    /// Per poll: the device is lost (`CaptureError::Disconnected`, `ENODEV` or `EIO`).
    pub disconnect: f64,
    /// After a disconnect, how many further polls or reconnect attempts fail before the
    /// device comes back.
    pub disconnect_polls: u32,
    /// Per poll: no frame arrives in time (`CaptureError::Timeout`).
    pub timeout: f64,
    /// Per poll: the next frame is late by `delay_for` (the poll returns `Poll::Wait`).
    pub delay: f64,
    /// How late a delayed frame is.
    pub delay_for: Duration,
    /// Per frame: the frame is lost (never lent).
    pub drop: f64,
    /// Per frame: `flip_bits` random bits are flipped.
    pub corrupt: f64,
    /// Bits flipped in a corrupted frame.
    pub flip_bits: u32,
    /// Whether corrupted frames carry the driver's error flag (as V4L2 drivers flag frames
    /// with lost packets); without it the corruption is silent.
    pub flag_corrupt: bool,
    /// Per frame: the frame is cut short at a random length.
    pub truncate: f64,
}

impl Default for FaultConfig {
    /// No faults.
    fn default() -> Self {
        FaultConfig {
            seed: 1,
            disconnect: 0.0,
            disconnect_polls: 3,
            timeout: 0.0,
            delay: 0.0,
            delay_for: Duration::from_millis(5),
            drop: 0.0,
            corrupt: 0.0,
            flip_bits: 8,
            flag_corrupt: true,
            truncate: 0.0,
        }
    }
}

/// What the injector did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct FaultStats {
    /// Frames received from the wrapped source.
    pub frames_in: u64,
    /// Frames lent on (intact, corrupted or truncated).
    pub lent: u64,
    /// Frames dropped.
    pub dropped: u64,
    /// Frames dropped since the last frame lent (a gap becomes visible only at the next
    /// frame).
    pub dropped_since_lent: u64,
    /// Frames with flipped bits.
    pub corrupted: u64,
    /// Frames with flipped bits lent with the error flag.
    pub flagged: u64,
    /// Frames cut short.
    pub truncated: u64,
    /// Delays injected.
    pub delays: u64,
    /// Timeouts injected.
    pub timeouts: u64,
    /// Disconnects injected.
    pub disconnects: u64,
    /// Polls and reconnect attempts refused while disconnected.
    pub refused: u64,
}

/// SplitMix64: small, fast, and good enough to pick faults.
#[derive(Debug, Clone, Copy)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
}

/// Wraps a source and injects faults (see the module docs).
#[derive(Debug)]
pub struct FaultInjector<S> {
    inner: S,
    config: FaultConfig,
    rng: SplitMix64,
    scratch: Vec<u8>,
    stats: FaultStats,
    delayed_until: Option<Instant>,
    down: u32,
}

impl<S: FrameSource> FaultInjector<S> {
    /// Wraps `inner`; the corruption buffer is sized from `inner.max_frame_len()`.
    pub fn new(inner: S, config: FaultConfig) -> Self {
        FaultInjector {
            scratch: vec![0u8; inner.max_frame_len()],
            rng: SplitMix64(config.seed),
            inner,
            config,
            stats: FaultStats::default(),
            delayed_until: None,
            down: 0,
        }
    }

    /// What was injected so far.
    pub fn stats(&self) -> FaultStats {
        self.stats
    }

    /// The wrapped source.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The wrapped source, mutably.
    pub fn inner_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    fn lost(&mut self) -> CaptureError {
        let errno = if self.rng.next_u64() & 1 == 0 {
            libc::ENODEV
        } else {
            libc::EIO
        };
        CaptureError::Disconnected {
            op: "VIDIOC_DQBUF (injected)",
            source: io::Error::from_raw_os_error(errno),
        }
    }
}

impl<S: FrameSource> FrameSource for FaultInjector<S> {
    fn format(&self) -> FrameFormat {
        self.inner.format()
    }

    fn max_frame_len(&self) -> usize {
        self.inner.max_frame_len()
    }

    fn poll_frame(
        &mut self,
        now: Instant,
        consume: &mut dyn FnMut(RawFrame<'_>),
    ) -> Result<Poll, CaptureError> {
        if self.down > 0 {
            self.down -= 1;
            self.stats.refused += 1;
            return Err(CaptureError::Disconnected {
                op: "VIDIOC_DQBUF (injected)",
                source: io::Error::from_raw_os_error(libc::ENODEV),
            });
        }
        match self.delayed_until {
            Some(until) if now < until => return Ok(Poll::Wait(until)),
            Some(_) => self.delayed_until = None,
            None => {
                let c = self.config;
                let u = self.rng.unit();
                if u < c.disconnect {
                    self.stats.disconnects += 1;
                    self.down = c.disconnect_polls;
                    return Err(self.lost());
                }
                if u < c.disconnect + c.timeout {
                    self.stats.timeouts += 1;
                    return Err(CaptureError::Timeout {
                        waited: Duration::ZERO,
                    });
                }
                if u < c.disconnect + c.timeout + c.delay {
                    self.stats.delays += 1;
                    let until = now + c.delay_for;
                    self.delayed_until = Some(until);
                    return Ok(Poll::Wait(until));
                }
            }
        }
        let FaultInjector {
            inner,
            config,
            rng,
            scratch,
            stats,
            ..
        } = self;
        let c = *config;
        let mut dropped = false;
        let poll = inner.poll_frame(now, &mut |raw: RawFrame<'_>| {
            stats.frames_in += 1;
            let v = rng.unit();
            if v < c.drop {
                stats.dropped += 1;
                stats.dropped_since_lent += 1;
                dropped = true;
                return;
            }
            stats.lent += 1;
            stats.dropped_since_lent = 0;
            let len = raw.data.len();
            if v < c.drop + c.corrupt && len > 0 && len <= scratch.len() {
                stats.corrupted += 1;
                let buf = &mut scratch[..len];
                buf.copy_from_slice(raw.data);
                for _ in 0..c.flip_bits {
                    let at = rng.below(len);
                    let bit = rng.below(8);
                    buf[at] ^= 1 << bit;
                }
                if c.flag_corrupt {
                    stats.flagged += 1;
                }
                consume(RawFrame {
                    error_flag: raw.error_flag || c.flag_corrupt,
                    data: buf,
                    ..raw
                });
            } else if v < c.drop + c.corrupt + c.truncate && len > 0 {
                stats.truncated += 1;
                let cut = rng.below(len);
                consume(RawFrame {
                    data: &raw.data[..cut],
                    ..raw
                });
            } else {
                consume(raw);
            }
        })?;
        Ok(match poll {
            // A dropped frame was not lent: ask to be polled again at once.
            Poll::Frame if dropped => Poll::Wait(now),
            other => other,
        })
    }

    fn describe(&self) -> &str {
        self.inner.describe()
    }

    fn capture_status(&self) -> super::v4l2::CaptureStatus {
        self.inner.capture_status()
    }
}

impl<S: Reconnect> Reconnect for FaultInjector<S> {
    fn disconnect(&mut self) {
        self.inner.disconnect();
    }

    fn reconnect(&mut self) -> Result<(), CaptureError> {
        if self.down > 0 {
            self.down -= 1;
            self.stats.refused += 1;
            return Err(CaptureError::Disconnected {
                op: "open (injected)",
                source: io::Error::from_raw_os_error(libc::ENODEV),
            });
        }
        self.delayed_until = None;
        self.inner.reconnect()
    }

    fn restart(&mut self) -> Result<(), CaptureError> {
        self.inner.restart()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prng_is_deterministic_and_uniform_enough() {
        let mut a = SplitMix64(42);
        let mut b = SplitMix64(42);
        let xs: Vec<u64> = (0..100).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..100).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        let mut r = SplitMix64(7);
        let n = 100_000;
        let hits = (0..n).filter(|_| r.unit() < 0.1).count();
        assert!((9_000..11_000).contains(&hits), "{hits}");
        assert!((0..1000).all(|_| r.below(5) < 5));
    }
}
