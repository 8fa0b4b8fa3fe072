//! The access log: one line per request (`log.access`, `log.format`), cheap enough to leave on.
//!
//! A general-purpose subscriber on the request path (field visitors, a formatter per event, a
//! locked write to stderr per line) cost a third of the throughput. Here a worker formats its
//! line straight into *its own* shard (one per worker thread, so never contended but by the
//! writer), and a full buffer stays there, behind the one being filled, while a wake-up tells
//! the one writer thread to take it. The writer takes a shard's full buffers and its partial
//! one together, so each worker's lines are written in the order it logged them. It also
//! collects every 100 ms, and on request at shutdown, so nothing logged is lost on `SIGTERM`.
//! A worker never waits on a slow disk or a full pipe: when the writer is `QUEUE` buffers
//! behind, a full buffer's lines are dropped and counted (`signpost_access_log_dropped_total`).
//! A file target is reopened on `SIGUSR1`, after logrotate has moved it.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::IntCounter;

use super::slot::{self, SLOTS};
use crate::config::{AccessFormat, AccessLogSettings, AccessTarget};
use crate::protocol::date::unix_time;
use crate::protocol::forward::address_text;

/// A worker's buffer goes to the writer once it holds this much. Each hand-over wakes the
/// writer, which on a busy core preempts a worker: the writer took 4.5 % of a saturated core's
/// time at 32 KiB, 2 % at 256 KiB (docs/performance.md).
const FLUSH_AT: usize = 256 * 1024;
/// Full buffers waiting for the writer: beyond this, lines are dropped (4 MiB in all).
const QUEUE: usize = 16;
/// Written buffers kept for the workers' next lines.
const SPARES: usize = 4;
/// How often the writer collects what the workers have not handed over yet.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

thread_local! {
    /// This thread's formatted time: (Unix second, `2026-12-02T11:35:07`, `02/Dec/2026:11:35:07 +0000`).
    static CLOCK: std::cell::RefCell<(u64, String, String)> = const {
        std::cell::RefCell::new((0, String::new(), String::new()))
    };
}

/// One request as the access log shows it.
pub struct Line<'a> {
    pub client: Option<std::net::IpAddr>,
    pub method: &'a str,
    pub path: &'a str,
    /// `HTTP/1.1`, `HTTP/2.0`…
    pub version: &'a str,
    /// `0` when no response was written.
    pub status: &'a str,
    pub bytes: u64,
    pub duration: Duration,
    pub tenant: &'a str,
    pub kind: &'a str,
    pub rule: &'a str,
    pub action: &'a str,
    pub client_id: &'a str,
    pub user_agent: &'a str,
    pub referer: &'a str,
    pub error: &'a str,
}

enum Msg {
    /// A worker has a full buffer.
    Wake,
    /// Write everything logged so far, then answer.
    Flush(SyncSender<()>),
}

/// One worker's lines: full buffers in the order they filled, then the one being filled.
#[derive(Default)]
struct Shard {
    full: Vec<Vec<u8>>,
    filling: Vec<u8>,
}

/// What the workers and the writer share.
#[derive(Default)]
struct Shared {
    shards: Vec<Mutex<Shard>>,
    /// Full buffers in all shards, not yet taken by the writer.
    waiting: AtomicUsize,
    spares: Spares,
    reopen: AtomicBool,
}

pub struct AccessLog {
    format: AccessFormat,
    /// `None` when the access log is off.
    wake: Option<SyncSender<Msg>>,
    shared: Arc<Shared>,
    dropped: IntCounter,
}

impl AccessLog {
    /// Opens the target (a file that cannot be opened is an error naming it) and starts the
    /// writer thread.
    pub fn start(settings: &AccessLogSettings, dropped: IntCounter) -> Result<Self, String> {
        let shared = Arc::new(Shared {
            shards: (0..SLOTS).map(|_| Mutex::default()).collect(),
            ..Shared::default()
        });
        let sink = match &settings.target {
            AccessTarget::Off => None,
            AccessTarget::Stderr => Some(Sink::Stderr),
            AccessTarget::File(path) => Some(Sink::File(open(path)?, path.clone())),
        };
        let wake = sink.map(|sink| {
            // One wake-up waiting is enough: the writer takes every full buffer when it wakes.
            let (tx, rx) = sync_channel(1);
            let writer = Writer {
                sink,
                shared: shared.clone(),
            };
            std::thread::Builder::new()
                .name("access-log".into())
                .spawn(move || writer.run(rx))
                .expect("a thread for the access log");
            tx
        });
        Ok(AccessLog {
            format: settings.format,
            wake,
            shared,
            dropped,
        })
    }

    pub fn enabled(&self) -> bool {
        self.wake.is_some()
    }

    /// Appends one line to this worker's buffer; hands the buffer over when it is full.
    pub fn log(&self, line: &Line<'_>) {
        let Some(wake) = &self.wake else {
            return;
        };
        let Ok(mut shard) = self.shared.shards[slot::mine()].lock() else {
            return;
        };
        let buf = &mut shard.filling;
        match self.format {
            AccessFormat::Json => json(buf, line),
            AccessFormat::Combined => combined(buf, line),
        }
        if buf.len() < FLUSH_AT {
            return;
        }
        let full = std::mem::replace(buf, self.shared.spares.take());
        if self.shared.waiting.fetch_add(1, Ordering::Relaxed) >= QUEUE {
            self.shared.waiting.fetch_sub(1, Ordering::Relaxed);
            drop(shard);
            self.dropped
                .inc_by(full.iter().filter(|&&b| b == b'\n').count() as u64);
            self.shared.spares.give(full);
            return;
        }
        shard.full.push(full);
        drop(shard);
        // A wake-up already waiting will do: the writer has not taken the shards yet.
        let _ = wake.try_send(Msg::Wake);
    }

    /// Reopens the file at its path before the next write (`SIGUSR1`).
    pub fn reopen(&self) {
        self.shared.reopen.store(true, Ordering::Relaxed);
    }

    /// Writes everything logged so far; waits at most `limit` (the end of a shutdown).
    pub fn flush(&self, limit: Duration) {
        let Some(wake) = &self.wake else {
            return;
        };
        let (tx, rx) = sync_channel(1);
        if wake.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.recv_timeout(limit);
        }
    }
}

/// Buffers the writer has emptied, for the workers to fill again: a new one each time would
/// be fresh pages to fault in.
#[derive(Default)]
struct Spares(Mutex<Vec<Vec<u8>>>);

impl Spares {
    /// An empty buffer with room for `FLUSH_AT` and the line that crosses it.
    fn take(&self) -> Vec<u8> {
        let spare = self.0.lock().ok().and_then(|mut spares| spares.pop());
        spare.unwrap_or_else(|| Vec::with_capacity(FLUSH_AT + 1024))
    }

    fn give(&self, mut buf: Vec<u8>) {
        buf.clear();
        if let Ok(mut spares) = self.0.lock() {
            if spares.len() < SPARES && buf.capacity() > FLUSH_AT {
                spares.push(buf);
            }
        }
    }
}

enum Sink {
    Stderr,
    File(File, PathBuf),
}

fn open(path: &PathBuf) -> Result<File, String> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("access log {}: {e}", path.display()))
}

struct Writer {
    sink: Sink,
    shared: Arc<Shared>,
}

impl Writer {
    fn run(mut self, wake: Receiver<Msg>) {
        loop {
            match wake.recv_timeout(FLUSH_EVERY) {
                Ok(Msg::Wake) => self.collect(false),
                Ok(Msg::Flush(done)) => {
                    self.collect(true);
                    let _ = done.send(());
                }
                Err(RecvTimeoutError::Timeout) => self.collect(true),
                Err(RecvTimeoutError::Disconnected) => {
                    self.collect(true);
                    return;
                }
            }
        }
    }

    /// Writes each shard's full buffers and, with `partial`, the one being filled: taken
    /// together, so a worker's lines keep their order.
    fn collect(&mut self, partial: bool) {
        let shared = self.shared.clone();
        for shard in &shared.shards {
            let (full, filling) = match shard.lock() {
                Ok(mut shard) => {
                    let full = std::mem::take(&mut shard.full);
                    // A worker's next lines go into a buffer of full size: one that grew from
                    // empty would copy itself over and over on the way to `FLUSH_AT`.
                    let filling = (partial && !shard.filling.is_empty())
                        .then(|| std::mem::replace(&mut shard.filling, shared.spares.take()));
                    (full, filling)
                }
                Err(_) => continue,
            };
            shared.waiting.fetch_sub(full.len(), Ordering::Relaxed);
            for lines in full.into_iter().chain(filling) {
                self.write(lines);
            }
        }
    }

    fn write(&mut self, lines: Vec<u8>) {
        if self.shared.reopen.swap(false, Ordering::Relaxed) {
            if let Sink::File(file, path) = &mut self.sink {
                match open(path) {
                    Ok(new) => *file = new,
                    Err(e) => tracing::error!(
                        "cannot reopen the access log, writing to the old file: {e}"
                    ),
                }
            }
        }
        let written = match &mut self.sink {
            Sink::Stderr => std::io::stderr().lock().write_all(&lines),
            Sink::File(file, _) => file.write_all(&lines),
        };
        if let Err(e) = written {
            tracing::warn!("access log not written: {e}");
        }
        self.shared.spares.give(lines);
    }
}

/// The current time (the coarse clock's: a line's time is when it was written, to a tick) in
/// this thread's cache, formatted once per second.
fn with_clock<R>(f: impl FnOnce(&str, &str, u32) -> R) -> R {
    let now = unix_time();
    CLOCK.with(|clock| {
        let mut clock = clock.borrow_mut();
        if clock.0 != now.as_secs() || clock.1.is_empty() {
            let at = jiff::Timestamp::from_second(now.as_secs() as i64).unwrap_or_default();
            clock.0 = now.as_secs();
            clock.1 = at.strftime("%Y-%m-%dT%H:%M:%S").to_string();
            clock.2 = at.strftime("%d/%b/%Y:%H:%M:%S +0000").to_string();
        }
        f(&clock.1, &clock.2, now.subsec_millis())
    })
}

/// `{"time":"…","client":"…",…}` with every string escaped as JSON. Written byte by byte,
/// not through `write!`: the formatting machinery was a third of a line's cost. Each key is a
/// literal written together with the quotes around it, so that the compiler turns it into a
/// few stores rather than a call to `memcpy`.
fn json(out: &mut Vec<u8>, l: &Line<'_>) {
    // Room for the line at once: the writes below then never grow the buffer.
    out.reserve(320 + l.path.len() + l.user_agent.len() + l.referer.len() + l.error.len());
    with_clock(|iso, _, ms| {
        out.extend_from_slice(b"{\"time\":\"");
        out.extend_from_slice(iso.as_bytes());
        out.push(b'.');
        three_digits(out, ms);
        out.extend_from_slice(b"Z\",\"client\":");
    });
    match l.client {
        Some(ip) => {
            out.push(b'"');
            address(out, ip);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    // The method (a token: `http` refuses any other), the version, the action and the client
    // id (hex) cannot hold a byte to escape.
    raw(out, b",\"method\":\"", l.method);
    field(out, b"\",\"path\":\"", l.path);
    raw(out, b"\",\"version\":\"", l.version);
    out.extend_from_slice(b"\",\"status\":");
    out.extend_from_slice(l.status.as_bytes());
    out.extend_from_slice(b",\"bytes\":");
    number(out, l.bytes);
    out.extend_from_slice(b",\"duration_ms\":");
    millis(out, l.duration);
    field(out, b",\"tenant\":\"", l.tenant);
    field(out, b"\",\"kind\":\"", l.kind);
    if !l.rule.is_empty() {
        field(out, b"\",\"rule\":\"", l.rule);
    }
    raw(out, b"\",\"action\":\"", l.action);
    if !l.client_id.is_empty() {
        raw(out, b"\",\"client_id\":\"", l.client_id);
    }
    if !l.user_agent.is_empty() {
        field(out, b"\",\"user_agent\":\"", l.user_agent);
    }
    if !l.referer.is_empty() {
        field(out, b"\",\"referer\":\"", l.referer);
    }
    if !l.error.is_empty() {
        field(out, b"\",\"error\":\"", l.error);
    }
    out.extend_from_slice(b"\"}\n");
}

fn number(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `0` to `999`, as three digits.
fn three_digits(out: &mut Vec<u8>, n: u32) {
    let n = n.min(999);
    out.extend_from_slice(&[n / 100, n / 10 % 10, n % 10].map(|d| b'0' + d as u8));
}

/// Milliseconds with three decimals: `12.345`. In 64 bits: `as_micros` is a `u128`, and
/// dividing one is a library call.
fn millis(out: &mut Vec<u8>, d: Duration) {
    number(out, d.as_secs() * 1000 + u64::from(d.subsec_millis()));
    out.push(b'.');
    three_digits(out, d.subsec_micros() % 1000);
}

fn address(out: &mut Vec<u8>, ip: std::net::IpAddr) {
    out.extend_from_slice(address_text(ip, &mut [0; 45]));
}

/// The key (which carries the quotes around it) and the value escaped as the inside of a
/// JSON string. Inlined so that each call's key has a length known where it is written.
#[inline(always)]
fn field(out: &mut Vec<u8>, key: &'static [u8], value: &str) {
    out.extend_from_slice(key);
    escaped(out, value);
}

/// The key and a value that holds nothing to escape.
#[inline(always)]
fn raw(out: &mut Vec<u8>, key: &'static [u8], value: &str) {
    out.extend_from_slice(key);
    out.extend_from_slice(value.as_bytes());
}

/// Nearly every value needs no escape: checked eight bytes at a time, then copied whole.
/// The rare one goes through serde_json, without the quotes it adds (the keys carry them).
fn escaped(out: &mut Vec<u8>, value: &str) {
    if !needs_escape(value.as_bytes(), Plain::Json) {
        out.extend_from_slice(value.as_bytes());
        return;
    }
    let start = out.len();
    if serde_json::to_writer(&mut *out, value).is_ok() {
        out.pop();
        out.remove(start);
    }
}

/// What a format writes as it is: a JSON string holds any byte but a control character, `"`
/// and `\`; nginx's quoted field, only printable ASCII but `"` and `\`.
#[derive(Clone, Copy, PartialEq)]
enum Plain {
    Json,
    Nginx,
}

impl Plain {
    /// Whether the format escapes the byte `b`.
    #[inline(always)]
    fn escapes(self, b: u8) -> bool {
        b < 0x20 || b == b'"' || b == b'\\' || (self == Plain::Nginx && b >= 0x7f)
    }
}

/// Whether any byte of `value` is one that `plain` escapes. Eight bytes at a time by the
/// classic "has a byte less than n" bit trick, whose answer (not its bit positions) is exact.
#[inline(always)]
fn needs_escape(value: &[u8], plain: Plain) -> bool {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES * 0x80;
    let less_than = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH;
    let has = |x: u64, b: u8| less_than(x ^ (ONES * u64::from(b)), 1);
    let bad = |word: &[u8]| {
        let x = u64::from_le_bytes(word.try_into().unwrap_or_default());
        let mut found = less_than(x, 0x20) | has(x, b'"') | has(x, b'\\');
        if plain == Plain::Nginx {
            found |= x & HIGH | has(x, 0x7f);
        }
        found != 0
    };
    if value.len() < 8 {
        return value.iter().any(|&b| plain.escapes(b));
    }
    // The last word overlaps the one before it rather than leaving a tail to check byte by byte.
    value.chunks_exact(8).any(bad) || bad(&value[value.len() - 8..])
}

/// nginx's "combined" plus `tenant= kind= rule= action= client_id= duration_ms=`: GoAccess and
/// log shippers read the first part as they read nginx's.
fn combined(out: &mut Vec<u8>, l: &Line<'_>) {
    // Room for the line at once, as the JSON line makes it.
    out.reserve(256 + l.path.len() + l.user_agent.len() + l.referer.len());
    match l.client {
        Some(ip) => address(out, ip),
        None => out.push(b'-'),
    }
    with_clock(|_, clf, _| {
        out.extend_from_slice(b" - - [");
        out.extend_from_slice(clf.as_bytes());
        out.extend_from_slice(b"] \"");
    });
    quoted(out, l.method);
    out.push(b' ');
    quoted(out, l.path);
    out.push(b' ');
    quoted(out, l.version);
    out.extend_from_slice(b"\" ");
    out.extend_from_slice(l.status.as_bytes());
    out.push(b' ');
    number(out, l.bytes);
    out.extend_from_slice(b" \"");
    quoted(out, dash(l.referer));
    out.extend_from_slice(b"\" \"");
    quoted(out, dash(l.user_agent));
    out.push(b'"');
    for (name, value) in [
        (&b" tenant="[..], l.tenant),
        (b" kind=", l.kind),
        (b" rule=", l.rule),
        (b" action=", l.action),
        (b" client_id=", l.client_id),
    ] {
        out.extend_from_slice(name);
        out.extend_from_slice(dash(value).as_bytes());
    }
    out.extend_from_slice(b" duration_ms=");
    millis(out, l.duration);
    out.push(b'\n');
}

fn dash(v: &str) -> &str {
    if v.is_empty() {
        "-"
    } else {
        v
    }
}

/// As nginx escapes a quoted field: `"`, `\` and bytes outside printable ASCII as `\xHH`.
/// Nearly every value has none: checked eight bytes at a time, then copied whole.
fn quoted(out: &mut Vec<u8>, value: &str) {
    if !needs_escape(value.as_bytes(), Plain::Nginx) {
        out.extend_from_slice(value.as_bytes());
        return;
    }
    for b in value.bytes() {
        if !Plain::Nginx.escapes(b) {
            out.push(b);
        } else {
            let _ = write!(out, "\\x{b:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(user_agent: &'a str, path: &'a str) -> Line<'a> {
        Line {
            client: Some("192.0.2.7".parse().unwrap()),
            method: "GET",
            path,
            version: "HTTP/1.1",
            status: "307",
            bytes: 120,
            duration: Duration::from_micros(1500),
            tenant: "acme",
            kind: "timeclock",
            rule: "timeclock-clock",
            action: "redirect",
            client_id: "3f2a9c1e0b7d",
            user_agent,
            referer: "",
            error: "",
        }
    }

    /// Several full buffers from two workers wait in their shards and come back as spares,
    /// while collections take what the workers hold. Every line arrives once, whole, and each
    /// worker's lines in the order it logged them.
    #[test]
    fn lines_past_many_hand_overs_arrive_whole_and_in_each_workers_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let settings = AccessLogSettings {
            target: AccessTarget::File(path.clone()),
            format: AccessFormat::Json,
        };
        let dropped = IntCounter::new("dropped", "dropped").unwrap();
        let log = AccessLog::start(&settings, dropped.clone()).unwrap();
        // About 8.5 hand-overs a worker, so that spares are taken and given back, while a
        // third thread has the writer collect over and over, as its timer does.
        let per_worker = 8 * FLUSH_AT / 280 + FLUSH_AT / 560;
        let logging = AtomicBool::new(true);
        std::thread::scope(|s| {
            let workers: Vec<_> = ["w0", "w1"]
                .into_iter()
                .map(|worker| {
                    let log = &log;
                    s.spawn(move || {
                        for i in 0..per_worker {
                            log.log(&line(worker, &format!("/Timeclock/{i}")));
                        }
                    })
                })
                .collect();
            s.spawn(|| {
                while logging.load(Ordering::Relaxed) {
                    log.flush(Duration::from_secs(10));
                }
            });
            workers.into_iter().for_each(|w| w.join().unwrap());
            logging.store(false, Ordering::Relaxed);
        });
        log.flush(Duration::from_secs(10));
        assert_eq!(dropped.get(), 0);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut next = std::collections::HashMap::new();
        for l in text.lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let worker = v["user_agent"].as_str().unwrap().to_owned();
            let i: usize = v["path"].as_str().unwrap()["/Timeclock/".len()..]
                .parse()
                .unwrap();
            let expected = next.entry(worker).or_insert(0);
            assert_eq!(i, *expected, "{l}");
            *expected += 1;
        }
        assert_eq!(next.len(), 2);
        assert!(next.values().all(|&n| n == per_worker), "{next:?}");
    }

    /// The line writes the method unescaped: it relies on `http` refusing any method that
    /// is not a token, on both doors (HTTP/1 parses with `Method::from_bytes`, h2 likewise).
    #[test]
    fn a_method_cannot_hold_a_byte_the_json_line_would_need_to_escape() {
        for bad in (0..0x20).chain([b'"', b'\\']) {
            assert!(
                http::Method::from_bytes(&[b'G', bad, b'T']).is_err(),
                "{bad:#x}"
            );
        }
        assert!(http::Method::from_bytes(b"PROPFIND").is_ok());
    }

    #[test]
    fn json_lines_parse_and_escape_what_clients_send() {
        let mut out = Vec::new();
        json(&mut out, &line("Evil\"Agent\n{x}", "/Timeclock/a\"b"));
        assert_eq!(out.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["user_agent"], "Evil\"Agent\n{x}");
        assert_eq!(v["path"], "/Timeclock/a\"b");
        assert_eq!(
            (v["status"].as_u64(), v["bytes"].as_u64()),
            (Some(307), Some(120))
        );
        assert_eq!(v["duration_ms"].as_f64(), Some(1.5));
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
        assert!(v.get("referer").is_none() && v.get("error").is_none());
    }

    proptest::proptest! {
        /// Whatever a client sends (control bytes, quotes, backslashes, any Unicode), in
        /// whichever field and at whichever offset of the eight-byte check, the line parses
        /// back to what was sent, and it is one line.
        #[test]
        fn any_value_reads_back_from_a_json_line(
            agent in "\\PC*|[\\x00-\\x7f]{0,40}",
            path in "[\"\\\\/a-z\\x00-\\x1f]{0,24}",
            tenant in "\\PC{0,12}",
        ) {
            let mut l = line(&agent, &path);
            l.tenant = &tenant;
            l.error = &agent;
            let mut out = Vec::new();
            json(&mut out, &l);
            proptest::prop_assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            if !agent.is_empty() {
                proptest::prop_assert_eq!(v["user_agent"].as_str(), Some(&*agent));
                proptest::prop_assert_eq!(v["error"].as_str(), Some(&*agent));
            }
            proptest::prop_assert_eq!(v["path"].as_str(), Some(&*path));
            proptest::prop_assert_eq!(v["tenant"].as_str(), Some(&*tenant));
        }
    }

    #[test]
    fn the_eight_byte_check_finds_every_byte_that_needs_an_escape() {
        for plain in [Plain::Json, Plain::Nginx] {
            let escaped =
                |b: u8| b < 0x20 || b == b'"' || b == b'\\' || (plain == Plain::Nginx && b >= 0x7f);
            for len in 0..20 {
                for at in 0..len {
                    for bad in (0..=0xff).filter(|&b| escaped(b)) {
                        let mut v = vec![b'a'; len];
                        v[at] = bad;
                        assert!(needs_escape(&v, plain), "{bad:#x} at {at} of {len}");
                    }
                }
                let fine: Vec<u8> = (0..=0xff)
                    .filter(|&b| !escaped(b))
                    .cycle()
                    .take(len * 13)
                    .collect();
                assert!(!needs_escape(&fine, plain), "{len}");
            }
        }
    }

    #[test]
    fn combined_lines_read_like_nginx_and_cannot_be_forged() {
        let mut out = Vec::new();
        combined(&mut out, &line("curl/8.5.0\" 200 9 \"x", "/Timeclock"));
        let text = String::from_utf8(out).unwrap();
        let re = regex_lite(&text);
        assert!(re, "{text}");
        assert!(
            text.contains(
                "\"GET /Timeclock HTTP/1.1\" 307 120 \"-\" \"curl/8.5.0\\x22 200 9 \\x22x\""
            ),
            "{text}"
        );
        assert!(text.ends_with(" tenant=acme kind=timeclock rule=timeclock-clock action=redirect client_id=3f2a9c1e0b7d duration_ms=1.500\n"), "{text}");
        assert_eq!(text.matches('\n').count(), 1);
        // Past ASCII, and DEL, as nginx writes them: `\xHH`.
        let mut out = Vec::new();
        combined(
            &mut out,
            &line("Agent\u{7f}", "/caf\u{e9}/longer-than-eight"),
        );
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("\"GET /caf\\xC3\\xA9/longer-than-eight HTTP/1.1\"")
                && text.contains("\"Agent\\x7F\""),
            "{text}"
        );
    }

    #[test]
    fn numbers_and_addresses_read_as_display_writes_them() {
        for ip in [
            "192.0.2.7",
            "0.0.0.0",
            "255.255.255.255",
            "10.0.100.9",
            "2001:db8::7",
            "::1",
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            let mut out = Vec::new();
            address(&mut out, ip);
            assert_eq!(String::from_utf8(out).unwrap(), ip.to_string());
        }
        for o in 0..=255u8 {
            let ip = std::net::IpAddr::from([o, 255 - o, o / 3, 7]);
            let mut out = Vec::new();
            address(&mut out, ip);
            assert_eq!(String::from_utf8(out).unwrap(), ip.to_string());
        }
        for us in [0, 7, 999, 1000, 1500, 60_000_042, u64::from(u32::MAX) * 3] {
            let mut out = Vec::new();
            millis(&mut out, Duration::from_micros(us));
            assert_eq!(
                String::from_utf8(out).unwrap(),
                format!("{}.{:03}", us / 1000, us % 1000)
            );
        }
    }

    /// `IP - - [dd/Mon/yyyy:HH:MM:SS +0000] "…"`: the shape log readers expect.
    fn regex_lite(text: &str) -> bool {
        let Some((ip, rest)) = text.split_once(" - - [") else {
            return false;
        };
        let Some((time, _)) = rest.split_once("] \"") else {
            return false;
        };
        ip == "192.0.2.7" && time.len() == 26 && time.ends_with(" +0000")
    }
}
