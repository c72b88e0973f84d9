//! Rust SDK for the wasmpod native guest ABI v1 (see `guest-sdk/ABI.md`).
//!
//! Linking this crate into a `cdylib` built for `wasm32-wasi` (`wasm32-wasip1` on newer
//! toolchains) exports `memory`, `wasmpod_abi_version`, `wasmpod_buffer` and `_initialize`. A
//! plugin adds one export per role and lifecycle hook with the macros of this crate, each used
//! once at the crate root:
//!
//! ```ignore
//! wasmpod::leaf!(sum);
//!
//! fn sum(input: &[u8]) -> wasmpod::Result<Vec<u8>> {
//!     let s: u64 = input.iter().map(|&b| u64::from(b)).sum();
//!     Ok(s.to_le_bytes().to_vec())
//! }
//! ```
//!
//! Roles: [`handle!`], [`leaf!`], [`merge!`], [`http!`], [`stage!`]. Lifecycle hooks:
//! [`start!`], [`stop!`], [`health!`], [`tick!`], [`snapshot!`], [`restore!`]. A hook that is
//! not registered is not exported, and the host applies the ABI default: start, stop and tick
//! succeed, health reports healthy, there is no state to snapshot.
//!
//! Handlers get their input as a slice of the SDK buffer, which the host overwrites on the next
//! call (copy what you keep), and return anything that converts into `Vec<u8>` (`Vec<u8>`,
//! `String`, `&str`, `&[u8]`, `[u8; N]`), which the SDK keeps alive until the next call. An
//! [`Error`] fails the call: its code is returned to the host (as `-code`) and its message
//! attached with the `error` import. A panic traps (wasm32 aborts on panic): the message is
//! attached to the call and logged at error level, and the host replaces the instance.
//!
//! Compiled for a target other than wasm32 (for `cargo test` of plugin logic), the host imports
//! are replaced by the in-process stand-in of the [`testing`] module.

use std::cell::RefCell;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The guest ABI version this SDK speaks.
pub const ABI_VERSION: i32 = 1;

/// The result type of handlers and hooks.
pub type Result<T, E = Error> = std::result::Result<T, E>;

// ---- Errors ---------------------------------------------------------------------------------

/// A call failure: an application error code (at least 1) and a message for the host.
#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    code: i32,
    message: String,
}

impl Error {
    /// An error with application code `code` (made positive; 0 becomes 1).
    pub fn new(code: i32, message: impl Into<String>) -> Error {
        let code = code.checked_abs().unwrap_or(i32::MAX).max(1);
        Error { code, message: message.into() }
    }

    /// An error with code 1.
    pub fn msg(message: impl Into<String>) -> Error {
        Error::new(1, message)
    }

    /// The application error code (>= 1).
    pub fn code(&self) -> i32 {
        self.code
    }

    /// The message attached to the failed call.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl<E: std::error::Error> From<E> for Error {
    fn from(e: E) -> Error {
        Error::msg(e.to_string())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error(code {}: {:?})", self.code, self.message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {})", self.message, self.code)
    }
}

/// Builds an [`Error`] with a code and a formatted message: `err!(2, "bad key {}", k)`.
#[macro_export]
macro_rules! err {
    ($code:expr, $($arg:tt)+) => {
        $crate::Error::new($code, ::std::format!($($arg)+))
    };
}

// ---- Host imports -----------------------------------------------------------------------------

#[cfg(target_arch = "wasm32")]
mod sys {
    #[link(wasm_import_module = "wasmpod")]
    extern "C" {
        #[link_name = "log"]
        fn host_log(level: i32, ptr: *const u8, len: i32);
        #[link_name = "error"]
        fn host_error(ptr: *const u8, len: i32);
        #[link_name = "config_get"]
        fn host_config_get(key_ptr: *const u8, key_len: i32, buf_ptr: *mut u8, buf_cap: i32)
            -> i32;
        #[link_name = "metric_define"]
        fn host_metric_define(
            kind: i32,
            name_ptr: *const u8,
            name_len: i32,
            help_ptr: *const u8,
            help_len: i32,
        ) -> i32;
        #[link_name = "metric_record"]
        fn host_metric_record(id: i32, value: f64);
        #[link_name = "scale"]
        fn host_scale(delta: i32) -> i32;
    }

    fn len32(b: &[u8]) -> i32 {
        b.len().min(i32::MAX as usize) as i32
    }

    pub fn log(level: i32, msg: &[u8]) {
        unsafe { host_log(level, msg.as_ptr(), len32(msg)) }
    }

    pub fn error(msg: &[u8]) {
        unsafe { host_error(msg.as_ptr(), len32(msg)) }
    }

    pub fn config_get(key: &[u8], buf: &mut [u8]) -> i32 {
        unsafe { host_config_get(key.as_ptr(), len32(key), buf.as_mut_ptr(), len32(buf)) }
    }

    pub fn metric_define(kind: i32, name: &[u8], help: &[u8]) -> i32 {
        unsafe { host_metric_define(kind, name.as_ptr(), len32(name), help.as_ptr(), len32(help)) }
    }

    pub fn metric_record(id: i32, value: f64) {
        unsafe { host_metric_record(id, value) }
    }

    pub fn scale(delta: i32) -> i32 {
        unsafe { host_scale(delta) }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod sys {
    use super::testing::HOST;

    pub fn log(level: i32, msg: &[u8]) {
        let line = String::from_utf8_lossy(msg).into_owned();
        HOST.with(|h| h.borrow_mut().logs.push((level, line)));
    }

    pub fn error(msg: &[u8]) {
        let msg = String::from_utf8_lossy(msg).into_owned();
        HOST.with(|h| h.borrow_mut().last_error = Some(msg));
    }

    pub fn config_get(key: &[u8], buf: &mut [u8]) -> i32 {
        HOST.with(|h| {
            let h = h.borrow();
            match h.config.iter().find(|(k, _)| k.as_bytes() == key) {
                None => -1,
                Some((_, v)) => {
                    if v.len() <= buf.len() {
                        buf[..v.len()].copy_from_slice(v.as_bytes());
                    }
                    v.len() as i32
                }
            }
        })
    }

    pub fn metric_define(kind: i32, name: &[u8], _help: &[u8]) -> i32 {
        let name = String::from_utf8_lossy(name).into_owned();
        HOST.with(|h| {
            let mut h = h.borrow_mut();
            if let Some(i) = h.metrics.iter().position(|m| m.0 == name) {
                return if h.metrics[i].1 == kind { i as i32 } else { -2 };
            }
            h.metrics.push((name, kind, Vec::new()));
            (h.metrics.len() - 1) as i32
        })
    }

    pub fn metric_record(id: i32, value: f64) {
        HOST.with(|h| {
            if let Some(m) = h.borrow_mut().metrics.get_mut(id as usize) {
                m.2.push(value);
            }
        })
    }

    pub fn scale(delta: i32) -> i32 {
        HOST.with(|h| {
            let mut h = h.borrow_mut();
            match h.pool.as_mut() {
                None => -1,
                Some(n) => {
                    *n = (i64::from(*n) + i64::from(delta)).clamp(0, i64::from(i32::MAX)) as i32;
                    *n
                }
            }
        })
    }
}

/// The in-process stand-in for the host used when the crate is compiled for a target other than
/// wasm32, so that plugin logic can be unit-tested natively. State is per thread.
#[cfg(not(target_arch = "wasm32"))]
pub mod testing {
    use std::cell::RefCell;

    #[derive(Default)]
    pub(crate) struct Host {
        pub(crate) config: Vec<(String, String)>,
        pub(crate) logs: Vec<(i32, String)>,
        pub(crate) last_error: Option<String>,
        pub(crate) metrics: Vec<(String, i32, Vec<f64>)>,
        pub(crate) pool: Option<i32>,
    }

    thread_local! {
        pub(crate) static HOST: RefCell<Host> = RefCell::new(Host::default());
    }

    /// Sets a config key (`None` removes it).
    pub fn set_config(key: &str, value: Option<&str>) {
        HOST.with(|h| {
            let mut h = h.borrow_mut();
            h.config.retain(|(k, _)| k != key);
            if let Some(v) = value {
                h.config.push((key.to_string(), v.to_string()));
            }
        })
    }

    /// Returns and clears the log lines written so far, as (level, line).
    pub fn take_logs() -> Vec<(i32, String)> {
        HOST.with(|h| std::mem::take(&mut h.borrow_mut().logs))
    }

    /// Returns and clears the last message passed to the `error` import.
    pub fn take_error() -> Option<String> {
        HOST.with(|h| h.borrow_mut().last_error.take())
    }

    /// The values recorded for the metric called `name`.
    pub fn metric_values(name: &str) -> Vec<f64> {
        HOST.with(|h| {
            h.borrow().metrics.iter().find(|m| m.0 == name).map(|m| m.2.clone()).unwrap_or_default()
        })
    }

    /// Allows scaling with an initial target pool size (`None`: scaling is not allowed).
    pub fn set_pool(size: Option<i32>) {
        HOST.with(|h| h.borrow_mut().pool = size)
    }

    /// Plays the host: writes `input` to the buffer (growing it as the host would) and returns
    /// the length to pass to an export generated by the macros.
    pub fn write_input(input: &[u8]) -> i32 {
        let n = input.len().min(i32::MAX as usize);
        super::wasmpod_buffer(n as i32);
        super::BUFFER.with(|b| b.borrow_mut()[..n].copy_from_slice(&input[..n]));
        n as i32
    }

    /// Decodes the `i64` result of an export generated by the macros: the output bytes (which
    /// the SDK keeps until the next call), or the error code.
    pub fn output(r: i64) -> Result<Vec<u8>, i32> {
        if r < 0 {
            return Err(i32::try_from(-r).unwrap_or(i32::MAX));
        }
        if r == 0 {
            return Ok(Vec::new());
        }
        Ok(super::OUTPUT.with(|o| o.borrow().clone()))
    }
}

// ---- Logging, config, metrics, scaling -----------------------------------------------------

/// A log level of the `log` import.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Level {
    /// Debug.
    Debug = 0,
    /// Info.
    Info = 1,
    /// Warning.
    Warn = 2,
    /// Error.
    Error = 3,
}

/// Writes one line to the module's log sink.
pub fn log(level: Level, msg: &str) {
    sys::log(level as i32, msg.as_bytes())
}

/// Logs a formatted line at a level: `wasmpod::log!(wasmpod::Level::Info, "n={}", n)`.
#[macro_export]
macro_rules! log {
    ($level:expr, $($arg:tt)+) => {
        $crate::log($level, &::std::format!($($arg)+))
    };
}

/// Logs a formatted line at debug level.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::log!($crate::Level::Debug, $($arg)+) };
}

/// Logs a formatted line at info level.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::log!($crate::Level::Info, $($arg)+) };
}

/// Logs a formatted line at warn level.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::log!($crate::Level::Warn, $($arg)+) };
}

/// Logs a formatted line at error level.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::log!($crate::Level::Error, $($arg)+) };
}

/// The raw value of a config key, or `None` if the module's config has no such key.
pub fn config_bytes(key: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    loop {
        let n = sys::config_get(key.as_bytes(), &mut buf);
        if n < 0 {
            return None;
        }
        let n = n as usize;
        if n <= buf.len() {
            buf.truncate(n);
            return Some(buf);
        }
        buf.resize(n, 0);
    }
}

/// The value of a config key (invalid UTF-8 replaced), or `None` if there is no such key.
pub fn config(key: &str) -> Option<String> {
    config_bytes(key).map(|v| match String::from_utf8(v) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// A metric kind of the `metric_define` import.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum MetricKind {
    /// A counter: records add to it.
    Counter = 0,
    /// A gauge: records set it.
    Gauge = 1,
    /// A histogram: records are observations.
    Histogram = 2,
}

/// A metric defined with the host. Define it once (e.g. in the start hook) and keep it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metric(i32);

impl Metric {
    /// Defines (or finds) a metric. `name` follows Prometheus rules.
    pub fn define(kind: MetricKind, name: &str, help: &str) -> Result<Metric> {
        let id = sys::metric_define(kind as i32, name.as_bytes(), help.as_bytes());
        match id {
            id if id >= 0 => Ok(Metric(id)),
            -1 => Err(err!(1, "metric {:?}: invalid name", name)),
            -2 => Err(err!(1, "metric {:?}: the name exists with another kind", name)),
            -3 => Err(err!(1, "metric {:?}: too many metrics", name)),
            -4 => Err(err!(1, "metric {:?}: bad kind", name)),
            e => Err(err!(1, "metric {:?}: error {}", name, e)),
        }
    }

    /// Defines a counter.
    pub fn counter(name: &str, help: &str) -> Result<Metric> {
        Metric::define(MetricKind::Counter, name, help)
    }

    /// Defines a gauge.
    pub fn gauge(name: &str, help: &str) -> Result<Metric> {
        Metric::define(MetricKind::Gauge, name, help)
    }

    /// Defines a histogram.
    pub fn histogram(name: &str, help: &str) -> Result<Metric> {
        Metric::define(MetricKind::Histogram, name, help)
    }

    /// Counter: adds `value`; gauge: sets it; histogram: observes it.
    pub fn record(&self, value: f64) {
        sys::metric_record(self.0, value)
    }

    /// The host's id of the metric.
    pub fn id(&self) -> i32 {
        self.0
    }
}

/// Asks the host to grow (`delta > 0`) or shrink its warm instance pool. Returns the new target
/// size, or `None` if scaling is not allowed for this module.
pub fn scale(delta: i32) -> Option<u32> {
    let n = sys::scale(delta);
    if n < 0 {
        None
    } else {
        Some(n as u32)
    }
}

// ---- Buffer and results -----------------------------------------------------------------------

const BUFFER_ROUND: usize = 64 << 10;

thread_local! {
    static BUFFER: RefCell<Vec<u8>> = RefCell::new(Vec::new());
    static OUTPUT: RefCell<Vec<u8>> = RefCell::new(Vec::new());
}

/// `wasmpod_abi_version` export: the ABI version this module speaks.
#[no_mangle]
pub extern "C" fn wasmpod_abi_version() -> i32 {
    ABI_VERSION
}

/// `wasmpod_buffer` export: a buffer of at least `size` bytes, or 0. A failed request keeps the
/// previous buffer.
#[no_mangle]
pub extern "C" fn wasmpod_buffer(size: i32) -> i32 {
    if size < 0 {
        return 0;
    }
    let size = size as usize;
    BUFFER.with(|b| {
        let mut b = b.borrow_mut();
        if b.is_empty() || size > b.len() {
            let n = size.max(1).checked_add(BUFFER_ROUND - 1).map(|n| n / BUFFER_ROUND * BUFFER_ROUND);
            let n = match n {
                Some(n) => n,
                None => return 0,
            };
            let mut v: Vec<u8> = Vec::new();
            if v.try_reserve_exact(n).is_err() {
                return 0;
            }
            v.resize(n, 0);
            *b = v;
        }
        b.as_mut_ptr() as usize as i32
    })
}

/// `_initialize` export: runs static constructors once before anything else (the host calls it
/// first; this makes the module a WASI reactor) and routes panic messages to the host.
#[cfg(target_arch = "wasm32")]
#[no_mangle]
pub extern "C" fn _initialize() {
    extern "C" {
        fn __wasm_call_ctors();
    }
    unsafe { __wasm_call_ctors() };
    std::panic::set_hook(Box::new(|info| {
        let msg = info.to_string();
        sys::log(Level::Error as i32, msg.as_bytes());
        sys::error(cut(&msg));
    }));
}

/// `msg` cut to the 4 KiB of an error message the host keeps, at a character boundary.
fn cut(msg: &str) -> &[u8] {
    let mut end = msg.len().min(4096);
    while !msg.is_char_boundary(end) {
        end -= 1;
    }
    &msg.as_bytes()[..end]
}

fn fail(e: &Error) -> i64 {
    if !e.message.is_empty() {
        sys::error(cut(&e.message));
    }
    -i64::from(e.code)
}

fn status(r: Result<()>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => (-fail(&e)) as i32,
    }
}

/// Runs `f` on the input of a call (`len` bytes of the buffer).
fn with_input<R>(len: i32, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
    BUFFER.with(|b| {
        let b = b.borrow();
        if len < 0 || len as usize > b.len() {
            return Err(err!(1, "wasmpod: input length {} exceeds the {}-byte buffer", len as u32, b.len()));
        }
        Ok(f(&b[..len as usize]))
    })
}

/// Keeps `out` alive until the next call and packs its location as an ABI result.
fn keep<T: Into<Vec<u8>>>(out: T) -> i64 {
    let out: Vec<u8> = out.into();
    OUTPUT.with(|o| {
        let mut o = o.borrow_mut();
        *o = out;
        if o.is_empty() {
            0
        } else {
            ((o.len() as u64) << 32 | u64::from(o.as_ptr() as usize as u32)) as i64
        }
    })
}

fn result<T: Into<Vec<u8>>>(r: Result<T>) -> i64 {
    match r {
        Ok(out) => keep(out),
        Err(e) => fail(&e),
    }
}

/// Support for the macros; not part of the API.
#[doc(hidden)]
pub mod __rt {
    use super::*;

    pub fn call<T, F>(len: i32, f: F) -> i64
    where
        T: Into<Vec<u8>>,
        F: FnOnce(&[u8]) -> Result<T>,
    {
        result(with_input(len, f).and_then(|r| r))
    }

    pub fn call_merge<T, F>(len: i32, f: F) -> i64
    where
        T: Into<Vec<u8>>,
        F: FnOnce(Parts<'_>) -> Result<T>,
    {
        result(with_input(len, |input| Parts::parse(input).and_then(f)).and_then(|r| r))
    }

    pub fn start<F: FnOnce() -> Result<()>>(f: F) -> i32 {
        status(f())
    }

    pub fn stop<F: FnOnce(Duration) -> Result<()>>(grace_ms: i64, f: F) -> i32 {
        status(f(Duration::from_millis(grace_ms.max(0) as u64)))
    }

    pub fn health<F: FnOnce() -> Health>(f: F) -> i32 {
        f() as i32
    }

    pub fn tick<F: FnOnce(SystemTime) -> Result<()>>(now_unix_ms: i64, f: F) -> i32 {
        let now = if now_unix_ms >= 0 {
            UNIX_EPOCH + Duration::from_millis(now_unix_ms as u64)
        } else {
            UNIX_EPOCH - Duration::from_millis(now_unix_ms.unsigned_abs())
        };
        status(f(now))
    }

    pub fn snapshot<T: Into<Vec<u8>>, F: FnOnce() -> Result<T>>(f: F) -> i64 {
        result(f())
    }

    pub fn restore<F: FnOnce(&[u8]) -> Result<()>>(len: i32, f: F) -> i32 {
        status(with_input(len, f).and_then(|r| r))
    }
}

// ---- Merge framing ----------------------------------------------------------------------------

const MISSING: u32 = u32::MAX;

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// The parts of a merge input (ABI 2.1), validated. A part is `None` when it is missing (its
/// shard failed or missed the deadline).
#[derive(Clone, Copy, Debug)]
pub struct Parts<'a> {
    data: &'a [u8],
    count: usize,
    missing: usize,
}

impl<'a> Parts<'a> {
    /// Validates framed merge input.
    pub fn parse(input: &'a [u8]) -> Result<Parts<'a>> {
        let bad = || err!(1, "wasmpod: malformed merge input ({} bytes)", input.len());
        let count = u32_at(input, 0).ok_or_else(bad)? as usize;
        let (mut at, mut missing) = (4usize, 0usize);
        for _ in 0..count {
            let n = u32_at(input, at).ok_or_else(bad)?;
            at += 4;
            if n == MISSING {
                missing += 1;
            } else if input.len() - at < n as usize {
                return Err(bad());
            } else {
                at += n as usize;
            }
        }
        if at != input.len() {
            return Err(bad());
        }
        Ok(Parts { data: input, count, missing })
    }

    /// The number of parts, present and missing.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are no parts at all.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The number of missing parts.
    pub fn missing(&self) -> usize {
        self.missing
    }

    /// All parts in order; `None` for a missing one.
    pub fn iter(&self) -> PartsIter<'a> {
        PartsIter { data: self.data, at: 4, left: self.count }
    }

    /// The parts that arrived, in order.
    pub fn present(&self) -> impl Iterator<Item = &'a [u8]> {
        self.iter().flatten()
    }
}

impl<'a> IntoIterator for Parts<'a> {
    type Item = Option<&'a [u8]>;
    type IntoIter = PartsIter<'a>;
    fn into_iter(self) -> PartsIter<'a> {
        self.iter()
    }
}

/// Iterator over [`Parts`].
#[derive(Clone, Debug)]
pub struct PartsIter<'a> {
    data: &'a [u8],
    at: usize,
    left: usize,
}

impl<'a> Iterator for PartsIter<'a> {
    type Item = Option<&'a [u8]>;

    fn next(&mut self) -> Option<Option<&'a [u8]>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let n = u32_at(self.data, self.at)?;
        self.at += 4;
        if n == MISSING {
            return Some(None);
        }
        let part = &self.data[self.at..self.at + n as usize];
        self.at += n as usize;
        Some(Some(part))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

/// Frames parts as the host does for a merge (`None`: a missing part). For tests.
pub fn encode_parts<'a, I: IntoIterator<Item = Option<&'a [u8]>>>(parts: I) -> Vec<u8> {
    let mut out = vec![0u8; 4];
    let mut count = 0u32;
    for p in parts {
        count += 1;
        match p {
            None => out.extend_from_slice(&MISSING.to_le_bytes()),
            Some(b) => {
                out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                out.extend_from_slice(b);
            }
        }
    }
    out[..4].copy_from_slice(&count.to_le_bytes());
    out
}

// ---- Lifecycle ---------------------------------------------------------------------------------

/// What a health probe reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Health {
    /// Alive and ready.
    Healthy = 0,
    /// Alive, but send no traffic.
    NotReady = 1,
    /// Restart the instance.
    Unhealthy = 2,
}

// ---- Registration macros ------------------------------------------------------------------------

#[doc(hidden)]
#[macro_export]
macro_rules! __handler_export {
    ($export:ident, $f:expr) => {
        #[no_mangle]
        pub extern "C" fn $export(len: i32) -> i64 {
            $crate::__rt::call(len, $f)
        }
    };
}

/// Exports `wasmpod_handle` (request handler: main, sidecar, ambassador, adapter) running `f`, a
/// `fn(&[u8]) -> wasmpod::Result<impl Into<Vec<u8>>>` or a closure of that type.
#[macro_export]
macro_rules! handle {
    ($f:expr) => {
        $crate::__handler_export!(wasmpod_handle, $f);
    };
}

/// Exports `wasmpod_leaf` (scatter/gather leaf) running `f`, as for [`handle!`].
#[macro_export]
macro_rules! leaf {
    ($f:expr) => {
        $crate::__handler_export!(wasmpod_leaf, $f);
    };
}

/// Exports `wasmpod_http` running `f` on the framed request of ABI 2.2; `f` returns the framed
/// response.
#[macro_export]
macro_rules! http {
    ($f:expr) => {
        $crate::__handler_export!(wasmpod_http, $f);
    };
}

/// Exports `wasmpod_stage` (work-queue stage: input file contents to output file contents)
/// running `f`, as for [`handle!`].
#[macro_export]
macro_rules! stage {
    ($f:expr) => {
        $crate::__handler_export!(wasmpod_stage, $f);
    };
}

/// Exports `wasmpod_merge` running `f`, a `fn(wasmpod::Parts) -> wasmpod::Result<impl
/// Into<Vec<u8>>>`. Malformed framing fails the call before `f` runs.
#[macro_export]
macro_rules! merge {
    ($f:expr) => {
        #[no_mangle]
        pub extern "C" fn wasmpod_merge(len: i32) -> i64 {
            $crate::__rt::call_merge(len, $f)
        }
    };
}

/// Exports `wasmpod_start` running `f: fn() -> wasmpod::Result<()>` once per instance before it
/// serves. An error fails the instance.
#[macro_export]
macro_rules! start {
    ($f:expr) => {
        #[no_mangle]
        pub extern "C" fn wasmpod_start() -> i32 {
            $crate::__rt::start($f)
        }
    };
}

/// Exports `wasmpod_stop` running `f: fn(std::time::Duration) -> wasmpod::Result<()>` once per
/// instance when the module stops; the duration is what is left of the grace period.
#[macro_export]
macro_rules! stop {
    ($f:expr) => {
        #[no_mangle]
        pub extern "C" fn wasmpod_stop(grace_ms: i64) -> i32 {
            $crate::__rt::stop(grace_ms, $f)
        }
    };
}

/// Exports `wasmpod_health` running `f: fn() -> wasmpod::Health` for probes.
#[macro_export]
macro_rules! health {
    ($f:expr) => {
        #[no_mangle]
        pub extern "C" fn wasmpod_health() -> i32 {
            $crate::__rt::health($f)
        }
    };
}

/// Exports `wasmpod_tick` running `f: fn(std::time::SystemTime) -> wasmpod::Result<()>` every
/// tick interval. An error counts as a failed tick.
#[macro_export]
macro_rules! tick {
    ($f:expr) => {
        #[no_mangle]
        pub extern "C" fn wasmpod_tick(now_unix_ms: i64) -> i32 {
            $crate::__rt::tick(now_unix_ms, $f)
        }
    };
}

/// Exports `wasmpod_snapshot` running `f: fn() -> wasmpod::Result<impl Into<Vec<u8>>>`: the
/// state saved when the module stops.
#[macro_export]
macro_rules! snapshot {
    ($f:expr) => {
        #[no_mangle]
        pub extern "C" fn wasmpod_snapshot() -> i64 {
            $crate::__rt::snapshot($f)
        }
    };
}

/// Exports `wasmpod_restore` running `f: fn(&[u8]) -> wasmpod::Result<()>` with a saved state
/// when an instance starts with one. An error fails the start.
#[macro_export]
macro_rules! restore {
    ($f:expr) => {
        #[no_mangle]
        pub extern "C" fn wasmpod_restore(len: i32) -> i32 {
            $crate::__rt::restore(len, $f)
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_roundtrip() {
        let framed = encode_parts(vec![Some(&b"a"[..]), None, Some(&b""[..])]);
        let p = Parts::parse(&framed).unwrap();
        assert_eq!((p.len(), p.missing()), (3, 1));
        let got: Vec<Option<&[u8]>> = p.iter().collect();
        assert_eq!(got, vec![Some(&b"a"[..]), None, Some(&b""[..])]);
        assert!(Parts::parse(&framed[..framed.len() - 1]).is_err());
        assert!(Parts::parse(&[1, 0, 0, 0, 5, 0, 0, 0]).is_err());
        assert!(Parts::parse(&[]).is_err());
    }

    #[test]
    fn buffer_and_results() {
        let p = wasmpod_buffer(10);
        assert_ne!(p, 0);
        assert_eq!(wasmpod_buffer(65536), p);
        let n = testing::write_input(b"hello");
        let r = __rt::call(n, |input: &[u8]| Ok(input.to_ascii_uppercase()));
        assert_eq!(testing::output(r), Ok(b"HELLO".to_vec()));
        let r = __rt::call(n, |_: &[u8]| -> Result<Vec<u8>> { Err(err!(7, "no {}", 7)) });
        assert_eq!(r, -7);
        assert_eq!(testing::take_error().as_deref(), Some("no 7"));
        assert_eq!(__rt::call(n, |_: &[u8]| Ok("")), 0);
    }

    #[test]
    fn long_error_cut_at_char_boundary() {
        // The host keeps 4 KiB of a message: the SDK cuts it there without splitting a
        // character (a split one reached the caller as U+FFFD).
        let n = testing::write_input(b"x");
        for (msg, want) in [("a".repeat(5000), 4096), ("\u{e9}".repeat(3000), 4096), (format!("ab{}", "\u{20ac}".repeat(2000)), 4094)] {
            let r = __rt::call(n, |_: &[u8]| -> Result<Vec<u8>> { Err(Error::msg(msg.clone())) });
            assert_eq!(r, -1);
            let got = testing::take_error().unwrap();
            assert_eq!(got.len(), want);
            assert!(msg.starts_with(&got));
        }
    }

    #[test]
    fn config_and_metrics() {
        testing::set_config("k", Some(&"v".repeat(300)));
        assert_eq!(config("k").map(|v| v.len()), Some(300));
        assert_eq!(config("absent"), None);
        let m = Metric::counter("calls_total", "calls").unwrap();
        m.record(2.0);
        assert_eq!(testing::metric_values("calls_total"), vec![2.0]);
        assert!(Metric::gauge("calls_total", "").is_err());
        assert_eq!(scale(1), None);
        testing::set_pool(Some(2));
        assert_eq!(scale(1), Some(3));
    }
}
