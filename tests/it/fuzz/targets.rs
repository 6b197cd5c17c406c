//! The fuzz targets: a proptest strategy and a property for every parser
//! that meets the network or the operator. Shared, by `#[path]`, between
//! the short CI run (`tests/it/fuzz.rs`) and the hour-scale
//! `cargo bench --bench fuzz` (`benches/fuzz.rs`), so both judge the same
//! properties.
//!
//! The properties, for every target: nothing panics; an error is clean (a
//! message, the right shape, nothing half-done); a round trip gives back
//! what went in where one exists; a decimal string comes out byte for byte
//! as it went in. Inputs are structured (the shapes the parser expects,
//! with values drawn to be valid, odd or wrong) and then sometimes mangled
//! (cut short, bytes spliced in) or replaced by arbitrary text.
//!
//! Nothing here knows the harness: a target that needs a running daemon
//! gets its address in [`Ctx`].

use std::cmp::Ordering;
use std::collections::HashSet;
use std::fmt::Debug;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestError, TestRunner};
use serde_json::{Map, Value, json};
use tablo::config::{Config, ConfigError, FeedConfig, FeedFormat, JsonPointers, Overrides};
use tablo::event::{Body, Incoming, Tick};
use tablo::feed::{DecodeError, Decoder};
use tablo::fuzzing::{self, Decimal};
use tablo::protocol::{self, ErrorCode, Op, Sub, Subscriptions};

/// Property checks run so far, over every target (a shrinking step counts
/// as one): what the bench prints as "cases".
pub static CASES: AtomicU64 = AtomicU64::new(0);

/// What a target may need from its runner.
pub struct Ctx {
    /// A running daemon, for the HTTP target.
    pub daemon: Option<SocketAddr>,
    /// A scratch directory, for the config target's files.
    pub dir: PathBuf,
}

/// One fuzz target.
pub struct Target {
    /// Its name, as the bench prints it.
    pub name: &'static str,
    /// Whether it needs [`Ctx::daemon`].
    pub needs_daemon: bool,
    /// Runs the runner's cases; the error is the smallest failing input and
    /// why it failed.
    pub run: fn(&Ctx, &mut TestRunner) -> Result<(), String>,
}

/// Every target.
pub const TARGETS: &[Target] = &[
    Target {
        name: "decimal",
        needs_daemon: false,
        run: decimal_target,
    },
    Target {
        name: "protocol",
        needs_daemon: false,
        run: protocol_target,
    },
    Target {
        name: "subscriptions",
        needs_daemon: false,
        run: subscriptions_target,
    },
    Target {
        name: "feed-binance",
        needs_daemon: false,
        run: binance_target,
    },
    Target {
        name: "feed-coinbase",
        needs_daemon: false,
        run: coinbase_target,
    },
    Target {
        name: "feed-json",
        needs_daemon: false,
        run: json_target,
    },
    Target {
        name: "feed-tablo",
        needs_daemon: false,
        run: tablo_target,
    },
    Target {
        name: "http-query",
        needs_daemon: false,
        run: query_target,
    },
    Target {
        name: "http-head",
        needs_daemon: true,
        run: head_target,
    },
    Target {
        name: "config-text",
        needs_daemon: false,
        run: config_text_target,
    },
    Target {
        name: "config-valid",
        needs_daemon: false,
        run: config_valid_target,
    },
];

/// Runs `f` on a thread with a large stack: proptest's strategy trees for
/// the bigger tuples take more than a test thread's 2 MiB in a debug build.
pub fn on_big_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    /// Enough for the deepest strategy tree here, with room to spare.
    const STACK_BYTES: usize = 64 << 20;
    std::thread::Builder::new()
        .stack_size(STACK_BYTES)
        .spawn(f)
        .expect("spawn a fuzz thread")
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// A runner of `cases` cases from `seed`: the one way both the CI test and
/// the bench seed proptest, so a seed the bench prints reproduces its
/// failure in `cargo test`.
pub fn runner(seed: u64, cases: u32) -> TestRunner {
    use proptest::test_runner::{Config, RngAlgorithm, TestRng};
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
}

/// The target called `name`.
pub fn target(name: &str) -> &'static Target {
    TARGETS
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no fuzz target {name}"))
}

/// Runs `property` on `strategy` and turns a failure into its message.
fn check<S: Strategy>(
    runner: &mut TestRunner,
    strategy: S,
    property: impl Fn(S::Value) -> Result<(), String>,
) -> Result<(), String>
where
    S::Value: Debug,
{
    let result = runner.run(&strategy, |input| {
        CASES.fetch_add(1, AtomicOrdering::Relaxed);
        property(input).map_err(TestCaseError::fail)
    });
    match result {
        Ok(()) => Ok(()),
        Err(TestError::Fail(why, input)) => Err(format!("{why}\n  smallest input: {input:?}")),
        Err(TestError::Abort(why)) => Err(format!("aborted: {why}")),
    }
}

/// `Err(message)` unless `ok`.
macro_rules! ensure {
    ($ok:expr, $($message:tt)+) => {
        if !$ok {
            return Err(format!($($message)+));
        }
    };
}

// ---------------------------------------------------------------------------
// Shared strategies: text, JSON values, decimals, mangling.
// ---------------------------------------------------------------------------

/// Strings that look like decimals, almost do, or do not at all.
fn decimal_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "-?[0-9]{1,22}(\\.[0-9]{1,22})?",
        3 => "-?(0|[1-9][0-9]{0,17})(\\.[0-9]{1,18})?",
        1 => "[-+0-9.eE ,x_]{0,44}",
        1 => "[0-9]{36,41}",
        1 => "0\\.[0-9]{37,40}",
        1 => any::<String>(),
    ]
}

/// Plain decimals that fit any parser: canonical, at most 30 digits.
fn valid_decimal() -> impl Strategy<Value = String> {
    "-?(0|[1-9][0-9]{0,14})(\\.[0-9]{1,14})?"
}

/// A JSON number whose exact text serde_json keeps (arbitrary_precision).
fn number(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// Arbitrary JSON values, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        "-?[0-9]{1,30}(\\.[0-9]{1,20})?([eE][-+]?[0-9]{1,3})?".prop_map(|t| number(&t)),
        "[a-z0-9. -]{0,12}".prop_map(Value::String),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z]{0,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A value for a price field: mostly a decimal string, sometimes a JSON
/// number, an odd string, or anything.
fn price_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => valid_decimal().prop_map(Value::String),
        2 => valid_decimal().prop_map(|t| number(&t)),
        1 => decimal_text().prop_map(Value::String),
        1 => json_value(),
    ]
}

/// How a text is mangled before it is parsed.
#[derive(Clone, Debug)]
enum Mangle {
    /// Left as it is.
    Keep,
    /// Cut after this fraction of its bytes (per mille).
    Cut(u16),
    /// These bytes spliced in at this fraction (per mille).
    Splice(u16, Vec<u8>),
    /// Replaced by this.
    Replace(String),
}

fn mangle() -> impl Strategy<Value = Mangle> {
    prop_oneof![
        8 => Just(Mangle::Keep),
        1 => (0u16..1000).prop_map(Mangle::Cut),
        1 => (0u16..1000, proptest::collection::vec(any::<u8>(), 1..6))
            .prop_map(|(at, bytes)| Mangle::Splice(at, bytes)),
        1 => any::<String>().prop_map(Mangle::Replace),
    ]
}

/// `text` mangled; `None` when it was kept as it is.
fn mangled(text: &str, how: &Mangle) -> Option<String> {
    let at = |per_mille: u16| text.len() * usize::from(per_mille) / 1000;
    let text = match how {
        Mangle::Keep => return None,
        Mangle::Cut(p) => String::from_utf8_lossy(&text.as_bytes()[..at(*p)]).into_owned(),
        Mangle::Splice(p, bytes) => {
            let mut out = text.as_bytes().to_vec();
            let at = at(*p);
            out.splice(at..at, bytes.iter().copied());
            String::from_utf8_lossy(&out).into_owned()
        }
        Mangle::Replace(text) => text.clone(),
    };
    Some(text)
}

/// A JSON object from `(key, value)` pairs, leaving out `None`s.
fn object(fields: Vec<(&str, Option<Value>)>) -> Value {
    let mut obj = Map::new();
    for (key, value) in fields {
        if let Some(value) = value {
            obj.insert(key.to_owned(), value);
        }
    }
    Value::Object(obj)
}

// ---------------------------------------------------------------------------
// decimal
// ---------------------------------------------------------------------------

/// The grammar of docs/protocol.md §6 written out again, by hand: an
/// optional `-`, digits, optionally `.` and digits; at most 40 bytes and
/// 38 digits.
fn model_is_decimal(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() > fuzzing::DECIMAL_MAX_LEN {
        return false;
    }
    let mut i = usize::from(b.first() == Some(&b'-'));
    let run = |mut i: usize| {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        (i, i - start)
    };
    let (next, int_digits) = run(i);
    i = next;
    if int_digits == 0 {
        return false;
    }
    let mut frac_digits = 0;
    if i < b.len() {
        if b[i] != b'.' {
            return false;
        }
        let (next, n) = run(i + 1);
        if n == 0 || next != b.len() {
            return false;
        }
        frac_digits = n;
    }
    int_digits + frac_digits <= 38
}

/// Sign, integer digits and fraction digits of a decimal the model accepts.
fn model_parts(s: &str) -> (bool, &str, &str) {
    let (negative, rest) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = rest.split_once('.').unwrap_or((rest, ""));
    (negative, int, frac)
}

/// What `Decimal::parse(s).to_string()` must print: no leading zeros, the
/// same decimals, no sign on zero.
fn canonical(s: &str) -> String {
    let (negative, int, frac) = model_parts(s);
    let int = match int.trim_start_matches('0') {
        "" => "0",
        int => int,
    };
    let zero = int == "0" && frac.bytes().all(|b| b == b'0');
    let sign = if negative && !zero { "-" } else { "" };
    if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

/// Numeric order of two decimals the model accepts, as big integers: both
/// scaled to the same number of decimals, then compared as digit strings.
fn model_compare(a: &str, b: &str) -> Ordering {
    let (a_neg, a_int, a_frac) = model_parts(a);
    let (b_neg, b_int, b_frac) = model_parts(b);
    let scale = a_frac.len().max(b_frac.len());
    let magnitude = |int: &str, frac: &str| {
        let digits = format!("{int}{frac:0<scale$}");
        digits.trim_start_matches('0').to_owned()
    };
    let (a_mag, b_mag) = (magnitude(a_int, a_frac), magnitude(b_int, b_frac));
    let by_magnitude = a_mag.len().cmp(&b_mag.len()).then(a_mag.cmp(&b_mag));
    let (a_neg, b_neg) = (a_neg && !a_mag.is_empty(), b_neg && !b_mag.is_empty());
    match (a_neg, b_neg) {
        (false, false) => by_magnitude,
        (true, true) => by_magnitude.reverse(),
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
    }
}

/// `s` without JSON's insignificant whitespace around it.
fn json_trim(s: &str) -> &str {
    s.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r'))
}

fn decimal_one(s: &str) -> Result<(), String> {
    let accepted = fuzzing::is_decimal(s);
    ensure!(
        accepted == model_is_decimal(s),
        "is_decimal({s:?}) = {accepted}, the grammar says {}",
        !accepted
    );
    let parsed = Decimal::parse(s);
    ensure!(
        parsed.is_some() == accepted,
        "is_decimal({s:?}) = {accepted} but parse gives {parsed:?}"
    );
    if let Some(d) = parsed {
        let shown = d.to_string();
        ensure!(
            shown == canonical(s),
            "parse({s:?}) prints {shown:?}, expected {:?}",
            canonical(s)
        );
        ensure!(
            Decimal::parse(&shown) == Some(d),
            "{shown:?} does not parse back to {d:?}"
        );
        ensure!(
            fuzzing::compare(s, &shown) == Some(Ordering::Equal),
            "{s:?} and its canonical form {shown:?} do not compare equal"
        );
    }
    // Decimal strings survive exactly, as strings and as JSON numbers.
    let as_string = fuzzing::from_json(&Value::String(s.to_owned()));
    ensure!(
        as_string.as_deref() == accepted.then_some(s),
        "from_json of the string {s:?} gives {as_string:?}"
    );
    if let Ok(value @ Value::Number(_)) = serde_json::from_str::<Value>(s) {
        let text = json_trim(s);
        let got = fuzzing::from_json(&value);
        let expected = model_is_decimal(text).then_some(text);
        ensure!(
            got.as_deref() == expected,
            "from_json of the number {s:?} gives {got:?}, expected {expected:?}"
        );
    }
    Ok(())
}

/// The change against an open, checked against round-half-away-from-zero
/// computed another way, where the numbers are small enough for `i128`.
fn change_pct_pair(price: &str, open: &str) -> Result<(), String> {
    let got = fuzzing::change_pct(price, open);
    let (Some(p), Some(o)) = (Decimal::parse(price), Decimal::parse(open)) else {
        ensure!(
            got.is_none(),
            "change_pct({price:?}, {open:?}) = {got:?} from a non-decimal"
        );
        return Ok(());
    };
    if o.mantissa == 0 {
        ensure!(
            got.is_none(),
            "change_pct({price:?}, {open:?}) = {got:?} for a zero open"
        );
        return Ok(());
    }
    if let Some(text) = &got {
        let r = Decimal::parse(text);
        ensure!(
            r.is_some_and(|r| r.scale == 2),
            "change_pct({price:?}, {open:?}) = {text:?}, not a decimal with two places"
        );
    }
    let small = |d: Decimal| d.scale <= 12 && d.mantissa.unsigned_abs() < 1_000_000_000_000_000;
    if !(small(p) && small(o)) {
        return Ok(());
    }
    let scale = p.scale.max(o.scale);
    let at = |d: Decimal| d.mantissa * 10_i128.pow(scale - d.scale);
    let (pm, om) = (at(p), at(o));
    let n = (pm - om) * 10_000;
    // floor(|n| / |o| + 1/2), with the sign of n / o.
    let magnitude = (2 * n.unsigned_abs() + om.unsigned_abs()) / (2 * om.unsigned_abs());
    let magnitude = i128::try_from(magnitude).map_err(|e| e.to_string())?;
    let expected = if (n < 0) != (om < 0) {
        -magnitude
    } else {
        magnitude
    };
    let expected = Decimal::new(expected, 2).to_string();
    ensure!(
        got.as_deref() == Some(expected.as_str()),
        "change_pct({price:?}, {open:?}) = {got:?}, expected {expected:?}"
    );
    Ok(())
}

fn decimal_pair(a: &str, b: &str) -> Result<(), String> {
    let got = fuzzing::compare(a, b);
    let both = model_is_decimal(a) && model_is_decimal(b);
    let expected = both.then(|| model_compare(a, b));
    ensure!(
        got == expected,
        "compare({a:?}, {b:?}) = {got:?}, expected {expected:?}"
    );
    ensure!(
        fuzzing::compare(b, a) == got.map(Ordering::reverse),
        "compare is not antisymmetric on {a:?}, {b:?}"
    );
    if let (Some(x), Some(y)) = (Decimal::parse(a), Decimal::parse(b)) {
        if x.scale == y.scale {
            ensure!(
                got == Some(x.mantissa.cmp(&y.mantissa)),
                "compare({a:?}, {b:?}) = {got:?} disagrees with the mantissas at one scale"
            );
        }
        let (xy, yx) = (x.checked_add(y), y.checked_add(x));
        ensure!(xy == yx, "{a} + {b} = {xy:?} but {b} + {a} = {yx:?}");
        // A sum may have more digits than a price string may (39 of them):
        // fine for the board's change text, but then not comparable here.
        if let Some(sum) = xy.filter(|sum| fuzzing::is_decimal(&sum.to_string())) {
            // a + b against a has the sign of b.
            let order = fuzzing::compare(&sum.to_string(), &x.to_string());
            let sign = fuzzing::compare(&y.to_string(), "0");
            ensure!(
                order == sign,
                "{a} + {b} = {sum} compares {order:?} with {a}, but {b} is {sign:?} than 0"
            );
        }
    }
    change_pct_pair(a, b)
}

fn decimal_target(_: &Ctx, runner: &mut TestRunner) -> Result<(), String> {
    check(runner, (decimal_text(), decimal_text()), |(a, b)| {
        decimal_one(&a)?;
        decimal_one(&b)?;
        decimal_pair(&a, &b)?;
        decimal_pair(&a, &a)
    })
}

// ---------------------------------------------------------------------------
// protocol: client requests and publish
// ---------------------------------------------------------------------------

/// Channel names, valid and not.
fn channel_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop_oneof![
            Just("*"), Just("prices"), Just("news"), Just("alerts"), Just("status")
        ].prop_map(str::to_owned),
        3 => "prices\\.[A-Z0-9-]{1,10}",
        1 => "prices\\..{0,70}",
        1 => "(Prices|NEWS|price|prices\\.| prices|\\*\\*)",
        1 => any::<String>(),
    ]
}

/// A value for a field that should hold `good`, or something else.
fn maybe<S: Strategy<Value = Value> + 'static>(good: S) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        2 => Just(None),
        6 => good.prop_map(Some),
        1 => json_value().prop_map(Some),
    ]
}

/// The `data` of a publish: tick, news or alert fields, or anything.
fn publish_data() -> impl Strategy<Value = Value> {
    let tick = (
        maybe("[A-Z]{3,8}".prop_map(Value::String)),
        maybe(price_value()),
        maybe(price_value()),
        maybe(price_value()),
    )
        .prop_map(|(symbol, price, open, bid)| {
            object(vec![
                ("symbol", symbol),
                ("price", price),
                ("open", open),
                ("bid", bid),
            ])
        });
    let alert = (
        maybe(
            prop_oneof![
                Just("info"),
                Just("warning"),
                Just("critical"),
                Just("Critical")
            ]
            .prop_map(Value::from),
        ),
        maybe(".{0,20}".prop_map(Value::String)),
    )
        .prop_map(|(level, text)| object(vec![("level", level), ("text", text)]));
    let news = (
        maybe(".{0,20}".prop_map(Value::String)),
        maybe("https://[a-z]{1,8}\\.example/[a-z]{0,5}".prop_map(Value::String)),
    )
        .prop_map(|(title, url)| object(vec![("title", title), ("url", url)]));
    prop_oneof![tick, alert, news, json_value()]
}

/// A client frame as a JSON value: an op with its fields, valid or not.
fn request_value() -> impl Strategy<Value = Value> {
    let op = prop_oneof![
        8 => prop_oneof![
            Just("subscribe"), Just("unsubscribe"), Just("snapshot"),
            Just("stats"), Just("ping"), Just("publish")
        ].prop_map(Value::from),
        1 => "[a-zA-Z]{0,10}".prop_map(Value::String),
        1 => json_value(),
    ];
    let channels = prop_oneof![
        8 => proptest::collection::vec(channel_name().prop_map(Value::String), 0..5)
            .prop_map(Value::Array),
        1 => (250usize..262).prop_map(|n| {
            Value::Array((0..n).map(|i| Value::String(format!("prices.S{i}"))).collect())
        }),
        1 => json_value(),
    ];
    let since = prop_oneof![
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "-?[0-9]{1,25}(\\.[0-9]{1,3})?".prop_map(|t| number(&t)),
        json_value(),
    ];
    let publish_channel = prop_oneof![channel_name().prop_map(Value::String), json_value(),];
    (
        maybe(op),
        maybe(channels),
        maybe(since),
        maybe("[a-z0-9]{0,12}".prop_map(Value::String)),
        maybe(json_value()),
        maybe(publish_channel),
        maybe(publish_data()),
        proptest::collection::btree_map("[a-z]{1,6}", json_value(), 0..3),
    )
        .prop_map(|(op, channels, since, epoch, id, channel, data, extra)| {
            let mut obj: Map<String, Value> = extra.into_iter().collect();
            for (key, value) in [
                ("op", op),
                ("channels", channels),
                ("since", since),
                ("epoch", epoch),
                ("id", id),
                ("channel", channel),
                ("data", data),
            ] {
                match value {
                    Some(value) => obj.insert(key.to_owned(), value),
                    None => obj.remove(key),
                };
            }
            Value::Object(obj)
        })
}

/// The wire names of the error codes.
const ERROR_CODES: &[&str] = &[
    "bad_request",
    "unknown_op",
    "unknown_channel",
    "unauthorized",
    "too_large",
    "rate_limited",
];

fn protocol_one(text: &str, sent: Option<&Value>) -> Result<(), String> {
    // What the frame is as JSON, read the way the server reads it.
    let parsed: Option<Map<String, Value>> = match serde_json::from_str(text) {
        Ok(Value::Object(obj)) => Some(obj),
        _ => None,
    };
    if let (Some(sent), Some(parsed)) = (sent, &parsed) {
        ensure!(
            Value::Object(parsed.clone()) == *sent,
            "the frame did not survive serde: {text}"
        );
    }
    match protocol::parse_request(text) {
        Err(e) => {
            ensure!(
                !e.message.is_empty(),
                "an error without a message for {text}"
            );
            let frame: Value = serde_json::from_str(&e.to_json())
                .map_err(|why| format!("the error frame is not JSON ({why}): {}", e.to_json()))?;
            ensure!(
                frame["type"] == "error"
                    && frame["code"]
                        .as_str()
                        .is_some_and(|c| ERROR_CODES.contains(&c))
                    && frame["message"] == e.message.as_str(),
                "a malformed error frame {frame} for {text}"
            );
            if let Some(obj) = &parsed {
                ensure!(
                    e.id.as_ref() == obj.get("id"),
                    "the error {e} does not echo the id of {text}"
                );
                ensure!(
                    frame.get("id") == obj.get("id"),
                    "the error frame {frame} does not echo the id of {text}"
                );
            } else {
                ensure!(
                    e.code == ErrorCode::BadRequest && e.id.is_none(),
                    "{text} is not a JSON object, yet the error is {e} with id {:?}",
                    e.id
                );
            }
        }
        Ok(request) => {
            let Some(obj) = parsed else {
                return Err(format!("accepted {text}, which is not a JSON object"));
            };
            ensure!(
                request.id.as_ref() == obj.get("id"),
                "the request's id {:?} is not the frame's: {text}",
                request.id
            );
            let op = obj.get("op").and_then(Value::as_str).unwrap_or_default();
            let names = |key: &str| -> Vec<String> {
                obj.get(key)
                    .and_then(Value::as_array)
                    .map(|list| {
                        list.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let subs_match = |channels: &[Sub], names: &[String]| {
                channels.len() == names.len()
                    && channels.len() <= protocol::MAX_CHANNELS
                    && channels
                        .iter()
                        .zip(names)
                        .all(|(sub, name)| Sub::parse(name).as_ref() == Some(sub))
            };
            match &request.op {
                Op::Subscribe {
                    channels,
                    names: got,
                    since,
                    epoch,
                } => {
                    ensure!(op == "subscribe", "{text} parsed as a subscribe");
                    ensure!(
                        *got == names("channels") && !got.is_empty() && subs_match(channels, got),
                        "the channels of {text} came out as {got:?} / {channels:?}"
                    );
                    ensure!(
                        *since == obj.get("since").and_then(Value::as_u64),
                        "since of {text} came out as {since:?}"
                    );
                    ensure!(
                        epoch.as_deref() == obj.get("epoch").and_then(Value::as_str),
                        "epoch of {text} came out as {epoch:?}"
                    );
                }
                Op::Unsubscribe {
                    channels,
                    names: got,
                } => {
                    ensure!(op == "unsubscribe", "{text} parsed as an unsubscribe");
                    ensure!(
                        *got == names("channels") && subs_match(channels, got),
                        "the channels of {text} came out as {got:?}"
                    );
                }
                Op::Snapshot { channels } => {
                    ensure!(op == "snapshot", "{text} parsed as a snapshot");
                    ensure!(
                        subs_match(channels, &names("channels")),
                        "the channels of {text} came out as {channels:?}"
                    );
                }
                Op::Stats => ensure!(op == "stats", "{text} parsed as stats"),
                Op::Ping => ensure!(op == "ping", "{text} parsed as a ping"),
                Op::Publish { channel, data, key } => {
                    ensure!(op == "publish", "{text} parsed as a publish");
                    ensure!(
                        Some(channel.as_str()) == obj.get("channel").and_then(Value::as_str)
                            && Some(data) == obj.get("data").and_then(Value::as_object)
                            && key.as_deref() == obj.get("key").and_then(Value::as_str),
                        "the publish of {text} came out as {channel:?} {data:?}"
                    );
                    publish_one(channel, data)?;
                }
                Op::Refresh { token } => {
                    ensure!(op == "refresh", "{text} parsed as a refresh");
                    ensure!(
                        Some(token.as_str()) == obj.get("token").and_then(Value::as_str),
                        "the token of {text} came out as {token:?}"
                    );
                }
            }
        }
    }
    Ok(())
}

fn publish_one(channel: &str, data: &Map<String, Value>) -> Result<(), String> {
    match fuzzing::publish_body(channel, data.clone()) {
        Err((code, message)) => {
            ensure!(
                ERROR_CODES.contains(&code) && !message.is_empty(),
                "publish to {channel:?} refused with {code:?} {message:?}"
            );
        }
        Ok(body) => {
            let kind = match &body {
                Body::Tick(t) => {
                    check_tick_fields(t, |field, value| {
                        data.get(field).and_then(Value::as_str) == Some(value)
                    })?;
                    ensure!(
                        channel == "prices" || channel == format!("prices.{}", t.symbol),
                        "a publish to {channel:?} became a tick for {:?}",
                        t.symbol
                    );
                    "tick"
                }
                Body::News(n) => {
                    ensure!(
                        data.get("title").and_then(Value::as_str) == Some(n.title.as_str()),
                        "a news title changed on the way: {n:?}"
                    );
                    "news"
                }
                Body::Alert(a) => {
                    ensure!(
                        data.get("text").and_then(Value::as_str) == Some(a.text.as_str()),
                        "an alert text changed on the way: {a:?}"
                    );
                    "alert"
                }
                Body::Status(_) | Body::Clock(_) => {
                    return Err(format!("a publish to {channel:?} made {body:?}"));
                }
            };
            let expected = match channel {
                "prices" => "tick",
                "news" => "news",
                "alerts" => "alert",
                _ => "tick",
            };
            ensure!(kind == expected, "a publish to {channel:?} became a {kind}");
        }
    }
    Ok(())
}

/// The tick's price fields are decimals, and each is the input's own text:
/// `came_from(field, value)` says whether `value` is what the input had.
fn check_tick_fields(t: &Tick, came_from: impl Fn(&str, &str) -> bool) -> Result<(), String> {
    ensure!(!t.symbol.is_empty(), "a tick without a symbol: {t:?}");
    ensure!(
        fuzzing::is_decimal(&t.price) && came_from("price", &t.price),
        "the price of {t:?} is not the input's decimal"
    );
    for (field, value) in [
        ("open", &t.open),
        ("bid", &t.bid),
        ("ask", &t.ask),
        ("volume", &t.volume),
    ] {
        if let Some(value) = value {
            ensure!(
                fuzzing::is_decimal(value) && came_from(field, value),
                "the {field} of {t:?} is not the input's decimal"
            );
        }
    }
    if let Some(pct) = &t.change_pct {
        ensure!(
            fuzzing::is_decimal(pct),
            "the change of {t:?} is not a decimal"
        );
    }
    Ok(())
}

/// A valid request, built from its parts, and what it must parse to.
fn valid_request() -> impl Strategy<Value = (Value, Op)> {
    let names = proptest::collection::vec(
        prop_oneof![
            Just("*".to_owned()),
            Just("prices".to_owned()),
            Just("news".to_owned()),
            "prices\\.[A-Z0-9]{1,10}",
        ],
        1..6,
    );
    let subscribe = (
        names.clone(),
        proptest::option::of(any::<u64>()),
        proptest::option::of("[a-f0-9]{16}"),
    )
        .prop_map(|(names, since, epoch)| {
            let value = object(vec![
                ("op", Some(json!("subscribe"))),
                ("channels", Some(json!(names))),
                ("since", since.map(Value::from)),
                ("epoch", epoch.clone().map(Value::from)),
            ]);
            let channels = names.iter().filter_map(|n| Sub::parse(n)).collect();
            (
                value,
                Op::Subscribe {
                    channels,
                    names,
                    since,
                    epoch,
                },
            )
        });
    let unsubscribe = names.clone().prop_map(|names| {
        let channels = names.iter().filter_map(|n| Sub::parse(n)).collect();
        (
            json!({"op": "unsubscribe", "channels": names}),
            Op::Unsubscribe { channels, names },
        )
    });
    let snapshot = names.prop_map(|names| {
        let channels = names.iter().filter_map(|n| Sub::parse(n)).collect();
        (
            json!({"op": "snapshot", "channels": names}),
            Op::Snapshot { channels },
        )
    });
    let simple = prop_oneof![
        Just((json!({"op": "stats"}), Op::Stats)),
        Just((json!({"op": "ping"}), Op::Ping)),
    ];
    let publish = ("[a-z.A-Z]{1,12}", publish_data()).prop_map(|(channel, data)| {
        let data = match data {
            Value::Object(data) => data,
            _ => Map::new(),
        };
        (
            json!({"op": "publish", "channel": channel, "data": data}),
            Op::Publish {
                channel,
                data,
                key: None,
            },
        )
    });
    (
        prop_oneof![subscribe, unsubscribe, snapshot, simple, publish],
        json_value(),
    )
        .prop_map(|((mut value, op), id)| {
            value["id"] = id;
            (value, op)
        })
}

fn protocol_target(_: &Ctx, runner: &mut TestRunner) -> Result<(), String> {
    let fuzzed = (request_value(), mangle()).prop_map(|(value, how)| {
        let text = value.to_string();
        match mangled(&text, &how) {
            Some(text) => (text, None),
            None => (text, Some(value)),
        }
    });
    let cases = prop_oneof![
        4 => fuzzed.prop_map(|(text, value)| (text, value, None)),
        1 => valid_request().prop_map(|(value, op)| (value.to_string(), Some(value), Some(op))),
    ];
    check(runner, cases, |(text, value, op)| {
        protocol_one(&text, value.as_ref())?;
        if let Some(op) = op {
            let request = protocol::parse_request(&text)
                .map_err(|e| format!("a valid request was refused: {e}: {text}"))?;
            ensure!(
                request.op == op,
                "{text} parsed as {:?}, expected {op:?}",
                request.op
            );
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// Subscriptions, against a set
// ---------------------------------------------------------------------------

fn subscriptions_target(_: &Ctx, runner: &mut TestRunner) -> Result<(), String> {
    let sub = prop_oneof![
        Just(Sub::All),
        Just(Sub::parse("prices").unwrap_or(Sub::All)),
        Just(Sub::parse("news").unwrap_or(Sub::All)),
        (0u16..300).prop_map(|i| Sub::Symbol(format!("S{i}").into())),
    ];
    let step = (any::<bool>(), proptest::collection::vec(sub, 0..30));
    check(runner, proptest::collection::vec(step, 0..20), |steps| {
        let mut subs = Subscriptions::default();
        let mut model: HashSet<Sub> = HashSet::new();
        for (add, channels) in steps {
            if add {
                let total = model.union(&channels.iter().cloned().collect()).count();
                let result = subs.add(&channels);
                if total > protocol::MAX_SUBSCRIPTIONS {
                    ensure!(result == Err(total), "adding past the cap gave {result:?}");
                } else {
                    ensure!(result == Ok(()), "adding {total} in all gave {result:?}");
                    model.extend(channels);
                }
            } else {
                subs.remove(&channels);
                for c in &channels {
                    model.remove(c);
                }
            }
            ensure!(
                subs.len() == model.len(),
                "{} subscribed, the model has {}",
                subs.len(),
                model.len()
            );
            for symbol in ["S1", "S299", "X"] {
                let tick = Body::Tick(Tick {
                    symbol: symbol.into(),
                    price: "1".into(),
                    ..Tick::default()
                });
                let expected = model.iter().any(|s| s.matches(&tick));
                ensure!(
                    subs.matches(&tick) == expected,
                    "a tick for {symbol} matched wrongly"
                );
            }
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// Feed decoders
// ---------------------------------------------------------------------------

/// The receive time the decoders are given.
const NOW: u64 = 1_700_000_000_000;

/// A feed config for `format`.
fn feed_config(format: FeedFormat, symbols: Vec<String>, pointers: JsonPointers) -> FeedConfig {
    FeedConfig {
        name: format!("fuzz-{}", format.name()),
        format,
        url: "ws://127.0.0.1:9/ws".into(),
        symbols,
        subscribe: Vec::new(),
        channels: Vec::new(),
        pointers,
        mqtt: Default::default(),
    }
}

/// Whether `text` is somewhere in `value` as a string or a number's text.
fn appears(value: &Value, text: &str) -> bool {
    match value {
        Value::String(s) => s == text,
        Value::Number(n) => n.to_string() == text,
        Value::Array(items) => items.iter().any(|v| appears(v, text)),
        Value::Object(obj) => obj.values().any(|v| appears(v, text)),
        _ => false,
    }
}

/// One decoder run: never a panic; an error leaves `out` as it was and
/// says something; every event is well formed and its prices are the
/// message's own decimal text. Returns the events.
fn decode_one(
    decoder: &mut Decoder,
    feed: &FeedConfig,
    text: &str,
) -> Result<Vec<Incoming>, String> {
    let sentinel = Incoming {
        ts: 1,
        body: Body::Tick(Tick {
            symbol: "SENTINEL".into(),
            price: "1".into(),
            ..Tick::default()
        }),
    };
    let mut out = vec![sentinel.clone()];
    let result = decoder.decode(text, NOW, &mut out);
    ensure!(
        out.first() == Some(&sentinel),
        "the decoder changed what was in `out`"
    );
    let events = out.split_off(1);
    if let Err(e) = result {
        ensure!(
            events.is_empty(),
            "an error ({e}) left {} events in `out`",
            events.len()
        );
        let shown = e.to_string();
        let why = match &e {
            DecodeError::NotJson(why) | DecodeError::Unexpected(why) => why,
            DecodeError::Upstream(why) => why,
        };
        ensure!(
            !why.is_empty() && !shown.is_empty(),
            "an empty error for {text:?}"
        );
        return Ok(events);
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|e| format!("decoded {text:?}, which is not JSON: {e}"))?;
    for event in &events {
        if feed.format != FeedFormat::Tablo {
            ensure!(
                event.ts == NOW,
                "{event:?} is not stamped with the receive time"
            );
        }
        match &event.body {
            Body::Tick(t) => {
                if feed.format != FeedFormat::Tablo {
                    ensure!(t.source == feed.name, "{t:?} is not from {}", feed.name);
                }
                check_tick_fields(t, |_, v| appears(&value, v))?;
                if !feed.symbols.is_empty() && feed.format == FeedFormat::Json {
                    ensure!(
                        feed.symbols.contains(&t.symbol),
                        "{t:?} is not one of the feed's symbols"
                    );
                }
            }
            Body::News(n) => ensure!(!n.title.is_empty(), "news without a title: {n:?}"),
            Body::Alert(a) => ensure!(!a.text.is_empty(), "an alert without text: {a:?}"),
            Body::Status(_) | Body::Clock(_) => {
                return Err(format!("a decoder made {:?}", event.body));
            }
        }
    }
    Ok(events)
}

/// A fuzz case for a decoder: the text, and the ticks it must give when
/// the case was built valid and left unmangled.
type FeedCase = (String, Option<Vec<Tick>>);

/// `message` mangled by `how`; the expectation survives only unmangled.
fn feed_case(message: Value, expect: Option<Vec<Tick>>, how: Mangle) -> FeedCase {
    let text = message.to_string();
    match mangled(&text, &how) {
        Some(text) => (text, None),
        None => (text, expect),
    }
}

/// Runs a decoder target: each case through a fresh decoder for `feed`.
fn run_feed(
    runner: &mut TestRunner,
    feed: FeedConfig,
    cases: impl Strategy<Value = FeedCase>,
) -> Result<(), String> {
    check(runner, cases, |(text, expect)| {
        let mut decoder = Decoder::new(&feed).ok_or("no decoder")?;
        let events = decode_one(&mut decoder, &feed, &text)?;
        if let Some(expect) = expect {
            let got: Vec<&Tick> = events
                .iter()
                .filter_map(|e| match &e.body {
                    Body::Tick(t) => Some(t),
                    _ => None,
                })
                .collect();
            let expect: Vec<&Tick> = expect.iter().collect();
            ensure!(
                got == expect,
                "{text} decoded to {got:?}, expected {expect:?}"
            );
        }
        Ok(())
    })
}

/// The change percent a decoder computes when the feed sends none.
fn computed(price: &str, open: &Option<String>) -> Option<String> {
    fuzzing::change_pct(price, open.as_deref()?)
}

/// Symbols, mostly exchange-like.
fn symbol_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        8 => "[A-Z]{2,6}(USDT|-USD)?".prop_map(Value::String),
        1 => any::<String>().prop_map(Value::String),
        1 => json_value(),
    ]
}

fn binance_target(_: &Ctx, runner: &mut TestRunner) -> Result<(), String> {
    let feed = feed_config(FeedFormat::Binance, Vec::new(), JsonPointers::default());
    let source = feed.name.clone();
    let event_type = prop_oneof![
        6 => prop_oneof![
            Just("24hrTicker"), Just("1hTicker"), Just("24hrMiniTicker"),
            Just("trade"), Just("aggTrade"), Just("depthUpdate"), Just("kline")
        ].prop_map(Value::from),
        1 => "[a-zA-Z0-9]{0,12}".prop_map(Value::String),
        1 => json_value(),
    ];
    let payload = (
        maybe(event_type),
        maybe(symbol_value()),
        [
            maybe(price_value()),
            maybe(price_value()),
            maybe(price_value()),
        ],
        [
            maybe(price_value()),
            maybe(price_value()),
            maybe(price_value()),
        ],
    )
        .prop_map(|(e, s, [c, o, p_pct], [b, a, v])| {
            object(vec![
                ("e", e),
                ("s", s),
                ("c", c.clone()),
                ("p", c),
                ("o", o),
                ("P", p_pct),
                ("b", b),
                ("a", a),
                ("v", v),
            ])
        });
    // How payloads are wrapped: raw, in an array, in an envelope.
    let message = (
        proptest::collection::vec(payload, 1..4),
        0u8..5,
        json_value(),
    )
        .prop_map(|(payloads, wrap, other)| match wrap {
            0 => payloads[0].clone(),
            1 => Value::Array(payloads),
            2 => json!({"stream": "btcusdt@ticker", "data": payloads[0]}),
            3 => json!({"stream": "!ticker@arr", "data": payloads}),
            _ => reply_or(&other),
        });
    let fuzzed = (message, mangle()).prop_map(|(m, how)| feed_case(m, None, how));
    // A valid 24hrTicker and exactly the tick it must give.
    let valid = (
        "[A-Z]{2,8}",
        valid_decimal(),
        [
            proptest::option::of(valid_decimal()),
            proptest::option::of(valid_decimal()),
            proptest::option::of(valid_decimal()),
            proptest::option::of(valid_decimal()),
            proptest::option::of(valid_decimal()),
        ],
        any::<bool>(),
    )
        .prop_map(
            move |(symbol, price, [open, pct, bid, ask, volume], as_number)| {
                let text = |v: &Option<String>| {
                    v.as_ref().map(|v| {
                        if as_number {
                            number(v)
                        } else {
                            Value::String(v.clone())
                        }
                    })
                };
                let message = object(vec![
                    ("e", Some(json!("24hrTicker"))),
                    ("s", Some(json!(symbol))),
                    ("c", text(&Some(price.clone()))),
                    ("o", text(&open)),
                    ("P", text(&pct)),
                    ("b", text(&bid)),
                    ("a", text(&ask)),
                    ("v", text(&volume)),
                ]);
                let tick = Tick {
                    change_pct: pct.or_else(|| computed(&price, &open)),
                    symbol,
                    price,
                    open,
                    bid,
                    ask,
                    volume,
                    source: source.clone(),
                };
                (message.to_string(), Some(vec![tick]))
            },
        );
    run_feed(runner, feed, prop_oneof![4 => fuzzed, 1 => valid])
}

/// A reply to `SUBSCRIBE` or an error reply (for `true` and `false`), or
/// `other` itself: what a Binance feed may send instead of data.
fn reply_or(other: &Value) -> Value {
    match other {
        Value::Bool(true) => json!({"result": null, "id": 1}),
        Value::Bool(false) => json!({"code": -1121, "msg": "Invalid symbol."}),
        other => other.clone(),
    }
}

fn coinbase_target(_: &Ctx, runner: &mut TestRunner) -> Result<(), String> {
    let feed = feed_config(
        FeedFormat::Coinbase,
        vec!["BTC-USD".into()],
        JsonPointers::default(),
    );
    let source = feed.name.clone();
    let kind = prop_oneof![
        6 => prop_oneof![
            Just("ticker"), Just("ticker_batch"), Just("heartbeat"),
            Just("subscriptions"), Just("error"), Just("match")
        ].prop_map(Value::from),
        1 => "[a-z_]{0,12}".prop_map(Value::String),
        1 => json_value(),
    ];
    let message = (
        maybe(kind),
        maybe(symbol_value()),
        [
            maybe(price_value()),
            maybe(price_value()),
            maybe(price_value()),
        ],
        [maybe(price_value()), maybe(price_value())],
        maybe(".{0,12}".prop_map(Value::String)),
    )
        .prop_map(|(kind, product, [price, open, vol], [bid, ask], message)| {
            object(vec![
                ("type", kind),
                ("product_id", product),
                ("price", price),
                ("open_24h", open),
                ("volume_24h", vol),
                ("best_bid", bid),
                ("best_ask", ask),
                ("message", message),
            ])
        });
    let fuzzed = (prop_oneof![4 => message, 1 => json_value()], mangle())
        .prop_map(|(m, how)| feed_case(m, None, how));
    let valid = (
        "[A-Z]{2,5}-[A-Z]{3}",
        valid_decimal(),
        [
            proptest::option::of(valid_decimal()),
            proptest::option::of(valid_decimal()),
            proptest::option::of(valid_decimal()),
            proptest::option::of(valid_decimal()),
        ],
    )
        .prop_map(move |(symbol, price, [open, bid, ask, volume])| {
            let message = object(vec![
                ("type", Some(json!("ticker"))),
                ("product_id", Some(json!(symbol))),
                ("price", Some(json!(price))),
                ("open_24h", open.clone().map(Value::from)),
                ("best_bid", bid.clone().map(Value::from)),
                ("best_ask", ask.clone().map(Value::from)),
                ("volume_24h", volume.clone().map(Value::from)),
                ("time", Some(json!("2024-05-01T12:00:00.123456Z"))),
            ]);
            let tick = Tick {
                change_pct: computed(&price, &open),
                symbol,
                price,
                open,
                bid,
                ask,
                volume,
                source: source.clone(),
            };
            (message.to_string(), Some(vec![tick]))
        });
    run_feed(runner, feed, prop_oneof![4 => fuzzed, 1 => valid])
}

/// JSON pointer segments, escapes and odd ones included.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-z]{1,6}",
        1 => Just("~0".to_owned()),
        1 => Just("~1x".to_owned()),
        1 => Just(String::new()),
        1 => "[0-9]{1,2}",
        1 => any::<String>(),
    ]
}

/// A pointer of 1 to 3 segments, as configured text.
fn pointer() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(segment(), 1..4)
}

/// The configured text of a pointer made of `segments`.
fn pointer_text(segments: &[String]) -> String {
    segments.iter().map(|s| format!("/{s}")).collect()
}

/// Puts `value` at the place `segments` points to inside `doc` (objects
/// all the way down; an escape is unescaped as RFC 6901 says). False when
/// the place is taken by something that is not an object.
fn put(doc: &mut Value, segments: &[String], value: Value) -> bool {
    let Some((first, rest)) = segments.split_first() else {
        *doc = value;
        return true;
    };
    if doc.is_null() {
        *doc = Value::Object(Map::new());
    }
    let Value::Object(obj) = doc else {
        return false;
    };
    let key = first.replace("~1", "/").replace("~0", "~");
    put(obj.entry(key).or_insert(Value::Null), rest, value)
}

fn json_target(_: &Ctx, runner: &mut TestRunner) -> Result<(), String> {
    // Each case picks its own pointers, so each case has its own feed.
    let pointers = (
        proptest::option::of(pointer()),
        pointer(),
        pointer(),
        proptest::option::of(pointer()),
        proptest::option::of(pointer()),
    );
    let case = (
        pointers,
        proptest::collection::vec(
            (
                "[A-Z]{2,6}",
                price_value(),
                proptest::option::of(price_value()),
            ),
            0..4,
        ),
        json_value(),
        mangle(),
        proptest::option::of("[A-Z]{2,6}"),
    );
    check(
        runner,
        case,
        |((items, symbol, price, open, bid), records, noise, how, only)| {
            let p = JsonPointers {
                items: items.as_deref().map(pointer_text),
                symbol: Some(pointer_text(&symbol)),
                price: Some(pointer_text(&price)),
                open: open.as_deref().map(pointer_text),
                bid: bid.as_deref().map(pointer_text),
                ..JsonPointers::default()
            };
            let symbols = only.map(|s| vec![s]).unwrap_or_default();
            let feed = feed_config(FeedFormat::Json, symbols.clone(), p.clone());
            let mut decoder = Decoder::new(&feed).ok_or("no decoder")?;
            // Records built at the configured places; the expected ticks when
            // every place could be built and every value is a plain decimal.
            let mut built = Vec::new();
            let mut expect = Some(Vec::new());
            for (sym, price_v, open_v) in records {
                let mut record = Value::Null;
                let mut ok = put(&mut record, &symbol, Value::String(sym.clone()));
                ok &= put(&mut record, &price, price_v.clone());
                if let (Some(open), Some(v)) = (&open, &open_v) {
                    ok &= put(&mut record, open, v.clone());
                }
                let read = |v: &Value| fuzzing::from_json(v);
                // A later field may overwrite an earlier one at the same place.
                let at = |ptr: &[String]| record.pointer(&pointer_text(ptr)).cloned();
                let price_text = at(&price).as_ref().and_then(read);
                let (open_ok, open_text) = match open.as_ref().and_then(|o| at(o)) {
                    None | Some(Value::Null) => (true, None),
                    Some(v) => (read(&v).is_some(), read(&v)),
                };
                let sym_back = at(&symbol);
                match (ok, price_text, sym_back, &mut expect) {
                    (true, Some(price_text), Some(Value::String(s)), Some(list))
                        if open_ok && !s.is_empty() && bid.is_none() =>
                    {
                        if symbols.is_empty() || symbols.contains(&s) {
                            list.push(Tick {
                                change_pct: computed(&price_text, &open_text),
                                symbol: s,
                                price: price_text,
                                open: open_text,
                                source: feed.name.clone(),
                                ..Tick::default()
                            });
                        }
                    }
                    _ => expect = None,
                }
                built.push(record);
            }
            let mut message = Value::Null;
            let placed = match &items {
                Some(items) => put(&mut message, items, Value::Array(built.clone())),
                None => {
                    message = Value::Array(built.clone());
                    true
                }
            };
            if !placed || built.is_empty() {
                expect = None;
            }
            if let Some(items) = &items {
                // The message must still have the array where `items` points.
                if message.pointer(&pointer_text(items)) != Some(&Value::Array(built)) {
                    expect = None;
                }
            }
            if noise.is_boolean() {
                // Now and then the message is noise instead.
                message = noise;
                expect = None;
            }
            let (text, expect) = feed_case(message, expect, how);
            let events = decode_one(&mut decoder, &feed, &text)?;
            if let Some(expect) = expect {
                let got: Vec<Tick> = events
                    .into_iter()
                    .filter_map(|e| match e.body {
                        Body::Tick(t) => Some(t),
                        _ => None,
                    })
                    .collect();
                ensure!(
                    got == expect,
                    "{text} decoded to {got:?}, expected {expect:?}"
                );
            }
            Ok(())
        },
    )
}

fn tablo_target(_: &Ctx, runner: &mut TestRunner) -> Result<(), String> {
    let feed = feed_config(FeedFormat::Tablo, Vec::new(), JsonPointers::default());
    let kind = prop_oneof![
        6 => prop_oneof![
            Just("tick"), Just("news"), Just("alert"), Just("status"), Just("hello"),
            Just("snapshot"), Just("gap"), Just("reset"), Just("error"), Just("ack")
        ].prop_map(Value::from),
        1 => "[a-z]{0,8}".prop_map(Value::String),
        1 => json_value(),
    ];
    let event = (
        maybe(kind),
        maybe(any::<u64>().prop_map(Value::from)),
        maybe(any::<u64>().prop_map(Value::from)),
        maybe(symbol_value()),
        [
            maybe(price_value()),
            maybe(price_value()),
            maybe(price_value()),
        ],
        [
            maybe(".{0,16}".prop_map(Value::String)),
            maybe(".{0,16}".prop_map(Value::String)),
        ],
        maybe(prop_oneof![Just("info"), Just("critical"), Just("loud")].prop_map(Value::from)),
        maybe("[a-c]{1,2}".prop_map(Value::String)),
    )
        .prop_map(
            |(kind, seq, ts, symbol, [price, open, bid], [title, text], level, epoch)| {
                object(vec![
                    ("type", kind),
                    ("seq", seq),
                    ("ts", ts),
                    ("symbol", symbol),
                    ("price", price),
                    ("open", open),
                    ("bid", bid),
                    ("title", title),
                    ("text", text.clone()),
                    ("level", level),
                    ("source", text),
                    ("epoch", epoch),
                ])
            },
        );
    let message = (proptest::collection::vec(event, 1..4), any::<bool>()).prop_map(
        |(mut events, snapshot)| {
            if snapshot {
                json!({"type": "snapshot", "seq": 10, "events": events})
            } else {
                events.swap_remove(0)
            }
        },
    );
    // Several messages through one decoder: its resume position only rises
    // (or is forgotten on `reset` and a new epoch).
    let stream = proptest::collection::vec((message, mangle()), 1..4);
    check(runner, stream, |messages| {
        let mut decoder = Decoder::new(&feed).ok_or("no decoder")?;
        for (message, how) in messages {
            let text = message.to_string();
            let text = mangled(&text, &how).unwrap_or(text);
            let before = decoder.position();
            decode_one(&mut decoder, &feed, &text)?;
            let after = decoder.position();
            let kind = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_owned));
            if let (Some(before), Some(after)) = (&before, &after)
                && before.epoch == after.epoch
                && kind.as_deref() != Some("reset")
            {
                ensure!(
                    after.since >= before.since,
                    "the resume position went back from {} to {} on {text}",
                    before.since,
                    after.since
                );
            }
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// HTTP: query strings (pure) and whole request heads (a real daemon)
// ---------------------------------------------------------------------------

/// Percent-decoding as a form decoder does it: `+` is a space, `%` and two
/// hex digits is that byte, anything else stays as it is; bytes that are
/// not UTF-8 become U+FFFD.
fn model_percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A query value: numbers, escapes, odd bytes.
fn query_value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[0-9]{1,7}",
        1 => "[0-9]{18,21}",
        2 => "(%[0-9a-fA-F+ -]{0,2}|[0-9+ ]){0,6}",
        1 => "%2[Bb][0-9]{1,3}",
        1 => "[-+.eE0-9a-z%]{0,8}",
        1 => any::<String>(),
    ]
}

/// A query string of `name=value` pairs.
fn query() -> impl Strategy<Value = Vec<(String, Option<String>)>> {
    let name = prop_oneof![
        4 => prop_oneof![Just("since"), Just("limit"), Just("tail"), Just("token"), Just("client")]
            .prop_map(str::to_owned),
        1 => "[a-z]{0,5}",
    ];
    proptest::collection::vec((name, proptest::option::of(query_value())), 0..4)
}

/// `a=b&c` from pairs.
fn query_text(pairs: &[(String, Option<String>)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| match value {
            Some(value) => format!("{name}={value}"),
            None => name.clone(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// What `/journal/export?{query}` must answer, from docs/protocol.md: the
/// range, `Err(Ok(n))` for a tail, or `Err(Err(()))` for a 400.
fn model_export(query: &str) -> Result<(u64, usize), Result<usize, ()>> {
    let (mut since, mut limit, mut tail) = (None, None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = model_percent_decode(value);
        let number = |min: u64, max: u64| -> Result<u64, Result<usize, ()>> {
            let ok = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
            let n = if ok { value.parse::<u64>().ok() } else { None };
            n.filter(|n| (min..=max).contains(n)).ok_or(Err(()))
        };
        match name {
            "since" => since = Some(number(0, u64::MAX)?),
            "limit" => limit = Some(number(1, 100_000)? as usize),
            "tail" => tail = Some(number(0, 10_000)? as usize),
            _ => {}
        }
    }
    match (tail, since, limit) {
        (Some(n), None, None) => Err(Ok(n)),
        (Some(_), _, _) => Err(Err(())),
        (None, since, limit) => Ok((since.unwrap_or(0), limit.unwrap_or(1000))),
    }
}

/// Whether `key` is the base64 of exactly 16 bytes, decoded the long way.
fn model_key(key: &str) -> bool {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let b = key.as_bytes();
    if b.len() % 4 != 0 || b.is_empty() {
        return false;
    }
    let padding = b.iter().rev().take_while(|&&c| c == b'=').count();
    if padding > 2 || b[..b.len() - padding].iter().any(|&c| value(c).is_none()) {
        return false;
    }
    b.len() / 4 * 3 - padding == 16
}

fn query_target(_: &Ctx, runner: &mut TestRunner) -> Result<(), String> {
    let key = prop_oneof![
        2 => proptest::collection::vec(any::<u8>(), 16).prop_map(|bytes| base64(&bytes)),
        1 => proptest::collection::vec(any::<u8>(), 0..20).prop_map(|bytes| base64(&bytes)),
        1 => "[A-Za-z0-9+/=_-]{20,26}",
        1 => any::<String>(),
    ];
    check(
        runner,
        (query(), query_value(), key),
        |(pairs, value, key)| {
            let text = query_text(&pairs);
            let got = fuzzing::export_query(&text);
            let expected = model_export(&text);
            let same = match (&got, &expected) {
                (Ok(a), Ok(b)) => a == b,
                (Err(Ok(a)), Err(Ok(b))) => a == b,
                (Err(Err(message)), Err(Err(()))) => !message.is_empty(),
                _ => false,
            };
            ensure!(
                same,
                "export query {text:?} gave {got:?}, expected {expected:?}"
            );
            let decoded = fuzzing::percent_decode(&value);
            ensure!(
                decoded == model_percent_decode(&value),
                "percent_decode({value:?}) = {decoded:?}, expected {:?}",
                model_percent_decode(&value)
            );
            let kind = fuzzing::client_kind(Some(&decoded));
            ensure!(
                !kind.is_empty()
                    && kind.chars().count() <= 32
                    && !kind.chars().any(char::is_control),
                "client={value:?} became the label {kind:?}"
            );
            let valid = fuzzing::valid_websocket_key(&key);
            ensure!(
                valid == model_key(&key),
                "Sec-WebSocket-Key {key:?} judged {valid}, the base64 model says {}",
                !valid
            );
            let head = format!("GET /?{text} HTTP/1.1\r\nX: {value}\r\n\r\n{key}");
            let end = fuzzing::head_end(head.as_bytes());
            let model = head.find("\r\n\r\n").map(|i| i + 4);
            ensure!(
                end == model,
                "the head of {head:?} ends at {end:?}, not {model:?}"
            );
            Ok(())
        },
    )
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A request head, as parts, so the answer can be predicted.
#[derive(Clone, Debug)]
struct Head {
    method: String,
    path: String,
    query: Vec<(String, Option<String>)>,
    upgrade: Option<(String, String, String, String)>,
    extra: Vec<(String, String)>,
    mangle: Mangle,
}

fn head() -> impl Strategy<Value = Head> {
    let method = prop_oneof![
        8 => Just("GET".to_owned()),
        1 => prop_oneof![Just("HEAD"), Just("POST"), Just("get"), Just("PUT")].prop_map(str::to_owned),
    ];
    let path = prop_oneof![
        4 => Just("/ws".to_owned()),
        3 => Just("/journal/export".to_owned()),
        1 => prop_oneof![
            Just("/healthz"), Just("/journal/stats"), Just("/"), Just("/nope"), Just("/ws/")
        ].prop_map(str::to_owned),
    ];
    let key = prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 16).prop_map(|bytes| base64(&bytes)),
        1 => proptest::collection::vec(any::<u8>(), 0..20).prop_map(|bytes| base64(&bytes)),
        1 => "[A-Za-z0-9+/=]{0,26}",
    ];
    let upgrade = (
        prop_oneof![Just("websocket"), Just("WebSocket"), Just("h2c")],
        prop_oneof![Just("Upgrade"), Just("keep-alive, Upgrade"), Just("close")],
        key,
        prop_oneof![4 => Just("13"), 1 => Just("8")],
    )
        .prop_map(|(u, c, k, v)| (u.to_owned(), c.to_owned(), k, v.to_owned()));
    let extra = proptest::collection::vec(("X-[A-Za-z]{1,8}", "[ -~]{0,20}"), 0..3);
    (
        method,
        path,
        query(),
        proptest::option::weighted(0.7, upgrade),
        extra,
        mangle(),
    )
        .prop_map(|(method, path, query, upgrade, extra, mangle)| Head {
            method,
            path,
            query: query
                .into_iter()
                .map(|(n, v)| {
                    (
                        n,
                        v.map(|v| v.replace(|c: char| !c.is_ascii_graphic(), "%20")),
                    )
                })
                .collect(),
            upgrade,
            extra,
            mangle,
        })
}

impl Head {
    /// The bytes sent.
    fn text(&self) -> String {
        let query = query_text(&self.query);
        let target = if query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{query}", self.path)
        };
        let mut text = format!("{} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n", self.method);
        if let Some((upgrade, connection, key, version)) = &self.upgrade {
            text += &format!(
                "Upgrade: {upgrade}\r\nConnection: {connection}\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: {version}\r\n"
            );
        }
        for (name, value) in &self.extra {
            text += &format!("{name}: {value}\r\n");
        }
        match mangled(&text, &self.mangle) {
            Some(mut text) => {
                while text.contains("\r\n\r\n") {
                    text = text.replace("\r\n\r\n", "\r\n");
                }
                text + "\r\n\r\n"
            }
            None => text + "\r\n",
        }
    }

    /// The status the daemon must answer (docs/protocol.md), when the head
    /// went out unmangled; `None` when it may be several.
    fn expected(&self) -> Option<u16> {
        if !matches!(self.mangle, Mangle::Keep) {
            return None;
        }
        if self.method != "GET" && self.method != "HEAD" {
            return Some(405);
        }
        match self.path.as_str() {
            "/ws" => {}
            "/journal/export" => {
                return Some(match model_export(&query_text(&self.query)) {
                    Ok(_) | Err(Ok(_)) => 200,
                    Err(Err(())) => 400,
                });
            }
            // The web page's files (docs/web.md §1) answer like /healthz.
            "/healthz" | "/journal/stats" | "/" => return Some(200),
            _ => return Some(404),
        }
        let Some((upgrade, connection, key, version)) = &self.upgrade else {
            return Some(426);
        };
        let is_upgrade = upgrade.eq_ignore_ascii_case("websocket")
            && connection
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
        if !is_upgrade || version != "13" {
            return Some(426);
        }
        if !model_key(key) {
            return Some(400);
        }
        // The last `token=` counts; any token is unknown to this daemon.
        let token = self.query.iter().rev().any(|(n, _)| n == "token");
        Some(if token { 401 } else { 101 })
    }
}

/// How much of an answer a failure message shows, in characters.
const SHOWN_ANSWER: usize = 400;

/// The statuses the server ever answers.
const STATUSES: &[u16] = &[101, 200, 304, 400, 401, 403, 404, 405, 408, 426, 431, 503];

/// Sends `text` to the daemon at `addr` and reads the answer to its end.
fn exchange(addr: SocketAddr, text: &str) -> Result<Vec<u8>, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(text.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            // A reset after the answer (bytes left unread) is fine.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => return Err(format!("read: {e} after {} bytes", answer.len())),
        }
        if answer.starts_with(b"HTTP/1.1 101 ") && answer.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
        if answer.len() > 1 << 20 {
            break;
        }
    }
    Ok(answer)
}

fn head_target(ctx: &Ctx, runner: &mut TestRunner) -> Result<(), String> {
    let addr = ctx.daemon.ok_or("the http-head target needs a daemon")?;
    check(runner, head(), |head| {
        let text = head.text();
        let answer = exchange(addr, &text)?;
        // The answer as a failure shows it: its head and the start of its body.
        let shown: String = String::from_utf8_lossy(&answer)
            .chars()
            .take(SHOWN_ANSWER)
            .collect();
        let status: Option<u16> = answer
            .strip_prefix(b"HTTP/1.1 ")
            .and_then(|rest| std::str::from_utf8(rest.get(..3)?).ok())
            .and_then(|code| code.parse().ok());
        let Some(status) = status.filter(|s| STATUSES.contains(s)) else {
            return Err(format!("no HTTP status line in {shown:?} for {text:?}"));
        };
        if let Some(expected) = head.expected() {
            ensure!(
                status == expected,
                "{text:?} was answered {status}, expected {expected}: {shown:?}"
            );
        }
        let end = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| format!("no end of head in {shown:?}"))?;
        let head_text = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
        if status == 101 {
            let key = head
                .upgrade
                .as_ref()
                .map(|u| u.2.as_bytes())
                .unwrap_or_default();
            let accept = async_tungstenite::tungstenite::handshake::derive_accept_key(key);
            ensure!(
                head_text.contains(&format!(
                    "sec-websocket-accept: {}",
                    accept.to_ascii_lowercase()
                )),
                "a 101 without the right accept key: {shown:?}"
            );
        } else if !head_text.contains("transfer-encoding: chunked") {
            let length: Option<usize> = head_text
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|n| n.trim().parse().ok());
            let body = answer.len() - end - 4;
            let expected = if head.method == "HEAD" { 0 } else { body };
            ensure!(
                length.is_some_and(|n| n == body || (head.method == "HEAD" && expected == 0)),
                "Content-Length {length:?} but a body of {body} bytes: {shown:?}"
            );
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// The config loader
// ---------------------------------------------------------------------------

/// Loads `text` as the config file `name` in `ctx.dir`.
fn load(ctx: &Ctx, text: &str) -> (PathBuf, Result<Config, ConfigError>) {
    let path = ctx.dir.join("fuzz.toml");
    if let Err(e) = std::fs::write(&path, text) {
        panic!("write {}: {e}", path.display());
    }
    let overrides = Overrides {
        data_dir: Some(ctx.dir.join("data")),
        ..Overrides::default()
    };
    let result = Config::load(Some(&path), &overrides);
    (path, result)
}

/// A loaded config's `tablo check` output loads back to the same config.
///
/// `tablo check` masks tokens as `"***"`; each is given a distinct stand-in
/// before the reload, and the tokens compare by number and rights only.
fn round_trip(ctx: &Ctx, text: &str, config: &Config) -> Result<(), String> {
    let mut printed = config.to_toml();
    let mut n = 0;
    let masked = "token = \"***\"";
    while let Some(at) = printed.find(masked) {
        n += 1;
        printed.replace_range(at..at + masked.len(), &format!("token = \"masked{n}\""));
    }
    let (_, again) = load(ctx, &printed);
    let mut again = again.map_err(|e| {
        format!("`tablo check`'s output does not load: {e}\n{printed}\nfrom:\n{text}")
    })?;
    let rights = |c: &Config| {
        c.server
            .tokens
            .iter()
            .map(|t| t.publish)
            .collect::<Vec<_>>()
    };
    if rights(&again) == rights(config) {
        again.server.tokens = config.server.tokens.clone();
    }
    ensure!(
        again == *config,
        "`tablo check`'s output loads as another config:\n{printed}\nfrom:\n{text}\n{again:?}\n!=\n{config:?}"
    );
    Ok(())
}

/// Every error from a file names the file and a line in it.
fn clean_config_error(path: &std::path::Path, text: &str, e: &ConfigError) -> Result<(), String> {
    let lines = text.lines().count().max(1) + 1;
    match e {
        ConfigError::Invalid {
            file: Some(file),
            line: Some(line),
            message,
        } => {
            ensure!(
                file == path,
                "the error names {} for {}",
                file.display(),
                path.display()
            );
            ensure!(
                (1..=lines).contains(line),
                "line {line} of a {lines}-line file: {e}\n{text}"
            );
            ensure!(!message.is_empty(), "an empty message for\n{text}");
            ensure!(
                e.to_string()
                    .starts_with(&format!("{}:{line}: ", path.display())),
                "the message does not start with file:line: {e}"
            );
        }
        other => {
            return Err(format!(
                "an error without a file and a line: {other:?}\n{text}"
            ));
        }
    }
    Ok(())
}

/// Keys the loader knows, by section, and some it does not.
const SECTIONS: &[(&str, &[&str])] = &[
    ("", &["data_dir", "site", "nope"]),
    (
        "[server]",
        &[
            "listen",
            "max_clients",
            "max_frame_bytes",
            "allow_anonymous",
            "tokens",
            "port",
        ],
    ),
    (
        "[journal]",
        &[
            "dir",
            "flush_interval_ms",
            "max_events",
            "max_bytes",
            "max_age",
            "cache_bytes",
        ],
    ),
    (
        "[display]",
        &[
            "mode",
            "width",
            "height",
            "rotate",
            "fps_max",
            "theme",
            "pixel_shift",
            "device",
            "bpp",
            "png_path",
        ],
    ),
    (
        "[board]",
        &[
            "title",
            "stale_after",
            "page_seconds",
            "columns",
            "locale",
            "digits",
            "direction",
            "calendar",
            "font",
        ],
    ),
    ("[[board.rows]]", &["symbol", "label", "decimals"]),
    (
        "[[feed]]",
        &["name", "format", "url", "symbols", "subscribe", "channels"],
    ),
    (
        "[feed.pointers]",
        &["items", "symbol", "price", "open", "bid"],
    ),
];

/// TOML values of every kind, and the strings the loader reads specially.
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => any::<i64>().prop_map(|n| n.to_string()),
        1 => "-?[0-9]{1,3}\\.[0-9]{1,3}".prop_map(|n| n),
        1 => prop_oneof![Just("true"), Just("false"), Just("inf"), Just("nan")].prop_map(str::to_owned),
        3 => prop_oneof![
            Just("30s"), Just("7d"), Just("7 days"), Just("off"), Just("1.5h"), Just("0s"),
            Just("256MiB"), Just("64KiB"), Just("1KB"), Just("0"), Just("png"), Just("auto"),
            Just("binance"), Just("json"), Just("demo"), Just("ws://127.0.0.1:9/ws"),
            Just("wss://"), Just("127.0.0.1:0"), Just("[::1]:7070"), Just("price"), Just("fa"),
            Just(""), Just("/tmp/x"), Just("/pair"), Just("latin"), Just("rtl")
        ].prop_map(|s| format!("{s:?}")),
        2 => "[ -~]{0,12}".prop_map(|s| format!("{s:?}")),
        1 => any::<String>().prop_map(|s| format!("{s:?}")),
        1 => proptest::collection::vec(
            prop_oneof![Just("\"price\""), Just("\"bid\""), Just("\"BTCUSDT\""), Just("1"), Just("\"*\"")],
            0..4,
        ).prop_map(|items| format!("[{}]", items.join(", "))),
        1 => Just("[{ token = \"t\", publish = true }]".to_owned()),
        1 => "[\\[\\]{}=\"',.a-z0-9 ]{0,10}",
    ]
}

/// One line of TOML-ish text.
fn toml_line() -> impl Strategy<Value = String> {
    let section = (0..SECTIONS.len()).prop_map(|i| SECTIONS[i].0.to_owned());
    let pair = (
        0..SECTIONS.len(),
        any::<proptest::sample::Index>(),
        toml_value(),
    )
        .prop_map(|(s, k, value)| {
            let keys = SECTIONS[s].1;
            format!("{} = {value}", keys[k.index(keys.len())])
        });
    prop_oneof![
        2 => section,
        6 => pair,
        1 => "[ -~]{0,20}",
        1 => any::<String>(),
        1 => Just(String::new()),
    ]
}

fn config_text_target(ctx: &Ctx, runner: &mut TestRunner) -> Result<(), String> {
    let text =
        (proptest::collection::vec(toml_line(), 0..14), mangle()).prop_map(|(lines, how)| {
            let text = lines.join("\n");
            mangled(&text, &how).unwrap_or(text)
        });
    check(runner, text, |text| {
        let (path, result) = load(ctx, &text);
        match result {
            Ok(config) => round_trip(ctx, &text, &config),
            Err(e) => clean_config_error(&path, &text, &e),
        }
    })
}

/// A valid config file, built from values the docs allow.
fn valid_config() -> impl Strategy<Value = String> {
    let server = (
        prop_oneof![Just("127.0.0.1:0"), Just("0.0.0.0:7070"), Just("[::1]:7070")],
        1usize..5000,
        prop_oneof![Just("1KiB"), Just("64KiB"), Just("16MiB"), Just("2048")],
        any::<bool>(),
        proptest::collection::btree_set("[a-zA-Z0-9]{1,12}", 0..3),
        any::<bool>(),
    )
        .prop_map(|(listen, clients, frame, anon, tokens, publish)| {
            let tokens: Vec<String> = tokens
                .into_iter()
                .map(|t| format!("{{ token = \"{t}\", publish = {publish} }}"))
                .collect();
            format!(
                "[server]\nlisten = \"{listen}\"\nmax_clients = {clients}\nmax_frame_bytes = {}\nallow_anonymous = {anon}\ntokens = [{}]\n",
                if frame.ends_with('B') { format!("\"{frame}\"") } else { frame.to_owned() },
                tokens.join(", ")
            )
        });
    let limit =
        |values: &'static [&'static str]| proptest::sample::select(values).prop_map(str::to_owned);
    let journal = (
        1u32..=10_000,
        limit(&["1", "2000000", "\"off\""]),
        limit(&["\"1MiB\"", "\"512MiB\"", "\"off\"", "4096"]),
        limit(&["\"1s\"", "\"7d\"", "\"90m\"", "\"off\""]),
        limit(&["\"64KiB\"", "\"8MiB\""]),
    )
        .prop_map(|(flush, events, bytes, age, cache)| {
            format!(
                "[journal]\nflush_interval_ms = {flush}\nmax_events = {events}\nmax_bytes = {bytes}\nmax_age = {age}\ncache_bytes = {cache}\n"
            )
        });
    let display = (
        limit(&["auto", "window", "fbdev", "png", "none"]),
        64u32..=8192,
        64u32..=8192,
        limit(&["0", "90", "180", "270"]),
        1u32..=120,
        any::<bool>(),
    )
        .prop_map(|(mode, w, h, rotate, fps, shift)| {
            format!(
                "[display]\nmode = \"{mode}\"\nwidth = {w}\nheight = {h}\nrotate = {rotate}\nfps_max = {fps}\npixel_shift = {shift}\n"
            )
        });
    let rows = proptest::collection::btree_map(
        "[A-Z]{3,8}",
        (
            proptest::option::of("[ -~&&[^\"\\\\]]{1,12}"),
            proptest::option::of(0u8..=18),
        ),
        0..4,
    )
    .prop_map(|rows| {
        rows.into_iter()
            .map(|(symbol, (label, decimals))| {
                let mut row = format!("[[board.rows]]\nsymbol = \"{symbol}\"\n");
                if let Some(label) = label {
                    row += &format!("label = \"{label}\"\n");
                }
                if let Some(d) = decimals {
                    row += &format!("decimals = {d}\n");
                }
                row
            })
            .collect::<String>()
    });
    let board = (
        "[ -~&&[^\"\\\\]]{0,16}",
        limit(&["\"60s\"", "\"5m\"", "\"1h\""]),
        limit(&["\"10s\"", "5", "\"1m\""]),
        limit(&[
            "[\"price\", \"change\", \"sparkline\"]",
            "[\"bid\", \"ask\", \"change\"]",
            "[\"price\"]",
            "[\"volume\", \"price\"]",
        ]),
        limit(&["en", "fa", "ar", "tr", "de-CH"]),
        limit(&["latin", "persian", "arabic"]),
        limit(&["auto", "ltr", "rtl"]),
        rows,
    )
        .prop_map(|(title, stale, page, columns, locale, digits, direction, rows)| {
            format!(
                "[board]\ntitle = \"{title}\"\nstale_after = {stale}\npage_seconds = {page}\ncolumns = {columns}\nlocale = \"{locale}\"\ndigits = \"{digits}\"\ndirection = \"{direction}\"\n{rows}"
            )
        });
    let feed = prop_oneof![
        Just("format = \"demo\"\n".to_owned()),
        "[A-Z]{3,6}".prop_map(|s| format!(
            "format = \"binance\"\nurl = \"wss://stream.example:9443/ws\"\nsymbols = [\"{s}USDT\"]\n"
        )),
        "[A-Z]{3,6}".prop_map(|s| format!(
            "format = \"coinbase\"\nurl = \"wss://ws-feed.example\"\nsymbols = [\"{s}-USD\"]\n"
        )),
        Just("format = \"tablo\"\nurl = \"ws://10.0.0.2:7070/ws\"\nchannels = [\"prices\", \"news\"]\n".to_owned()),
        Just("format = \"json\"\nurl = \"ws://127.0.0.1:9/rates\"\nsubscribe = '{\"op\":\"sub\"}'\n[feed.pointers]\nitems = \"/data\"\nsymbol = \"/pair\"\nprice = \"/mid\"\nbid = \"/buy\"\n".to_owned()),
    ];
    let feeds = proptest::collection::vec(feed, 0..4).prop_map(|feeds| {
        feeds
            .into_iter()
            .enumerate()
            .map(|(i, body)| format!("[[feed]]\nname = \"feed-{i}\"\n{body}"))
            .collect::<String>()
    });
    let sections = (
        proptest::option::of(server),
        proptest::option::of(journal),
        proptest::option::of(display),
        proptest::option::of(board),
        feeds,
    );
    sections.prop_map(|(server, journal, display, board, feeds)| {
        [server, journal, display, board, Some(feeds)]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("\n")
    })
}

fn config_valid_target(ctx: &Ctx, runner: &mut TestRunner) -> Result<(), String> {
    check(runner, valid_config(), |text| {
        let (_, result) = load(ctx, &text);
        let config = result.map_err(|e| format!("a valid config was refused: {e}\n{text}"))?;
        round_trip(ctx, &text, &config)
    })
}
