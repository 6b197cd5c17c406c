//! Every rule kind with injected time: crossings, hysteresis, cooldowns,
//! window edges, directions, drops, stale and back, expiry, and a restart
//! that must not fire again.

use std::time::{Duration, Instant};

use super::*;
use crate::config::Overrides;
use crate::event::{Status, Tick};

/// Wall time of the harness's instant zero.
const T0_MS: u64 = 1_700_000_000_000;

/// A config from TOML text, loaded like a file.
fn config(text: &str) -> Config {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tablo.toml");
    std::fs::write(&path, text).unwrap();
    Config::load(Some(&path), &Overrides::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// Rules driven at instants given in milliseconds after a fixed start.
struct Drive {
    rules: Rules,
    t0: Instant,
    seq: u64,
}

impl Drive {
    fn new(text: &str) -> Drive {
        let t0 = Instant::now();
        Drive {
            rules: Rules::new(&config(text), t0),
            t0,
            seq: 0,
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    fn event(&mut self, ms: u64, body: Body, feed: Option<&str>) -> Vec<Alert> {
        self.seq += 1;
        let event = Event {
            seq: self.seq,
            ts: T0_MS + ms,
            body,
        };
        let now = self.at(ms);
        self.rules.on_event(&event, feed, now, T0_MS + ms)
    }

    /// A tick from feed `fx`.
    fn tick(&mut self, ms: u64, symbol: &str, price: &str) -> Vec<Alert> {
        let body = Body::Tick(Tick {
            symbol: symbol.into(),
            price: price.into(),
            source: "fx".into(),
            ..Tick::default()
        });
        self.event(ms, body, Some("fx"))
    }

    fn status(&mut self, ms: u64, feed: &str, state: FeedState) -> Vec<Alert> {
        let body = Body::Status(Status {
            feed: feed.into(),
            state,
        });
        self.event(ms, body, None)
    }

    fn check(&mut self, ms: u64) -> Vec<Alert> {
        let now = self.at(ms);
        if !self.rules.due(now) {
            return Vec::new();
        }
        self.rules.check(now, T0_MS + ms)
    }
}

fn fired(alert: &Alert) -> &Fired {
    alert.fired.as_deref().expect("a rule's alert")
}

/// The prices of a run of ticks that fire, as (index, old, new).
#[track_caller]
fn run(drive: &mut Drive, ticks: &[(u64, &str)]) -> Vec<(usize, Option<String>, Option<String>)> {
    let mut out = Vec::new();
    for (i, (ms, price)) in ticks.iter().enumerate() {
        for alert in drive.tick(*ms, "USD", price) {
            let f = fired(&alert);
            out.push((i, f.old_price.clone(), f.new_price.clone()));
        }
    }
    out
}

fn indexes(fires: &[(usize, Option<String>, Option<String>)]) -> Vec<usize> {
    fires.iter().map(|f| f.0).collect()
}

const ABOVE: &str = r#"
[[alert]]
name = "usd-60k"
kind = "above"
symbol = "USD"
price = "60000"
cooldown = "0s"
text = "{symbol} passed the line at {price} (was {old_price})"
"#;

#[test]
fn above_fires_once_per_crossing() {
    let mut d = Drive::new(ABOVE);
    let fires = run(
        &mut d,
        &[
            (0, "59000"),
            (1, "60000"),    // on the line: not above
            (2, "60000.01"), // crosses: fires
            (3, "61000"),    // still above: quiet
            (4, "60000"),    // back on the line: re-armed
            (5, "60500"),    // crosses again
        ],
    );
    assert_eq!(indexes(&fires), [2, 5]);
    assert_eq!(fires[0].1.as_deref(), Some("60000"));
    assert_eq!(fires[0].2.as_deref(), Some("60000.01"));
}

#[test]
fn above_alert_has_the_rules_fields_text_and_trigger_seq() {
    let mut d = Drive::new(ABOVE);
    d.tick(0, "USD", "59000");
    let alerts = d.tick(10, "USD", "60250");
    assert_eq!(alerts.len(), 1);
    let a = &alerts[0];
    assert_eq!(a.level, Level::Critical);
    assert_eq!(a.source, SOURCE);
    assert_eq!(a.text, "USD passed the line at 60,250 (was 59,000)");
    let f = fired(a);
    assert_eq!(f.rule, "usd-60k");
    assert_eq!(f.kind, "above");
    assert_eq!(f.trigger_seq, Some(2));
    assert_eq!(f.symbol.as_deref(), Some("USD"));
    assert_eq!(f.feed, None);
    assert_eq!(f.expires, Some(T0_MS + 10 + 3_600_000));
}

#[test]
fn below_mirrors_above() {
    let mut d = Drive::new(
        "[[alert]]\nkind = \"below\"\nsymbol = \"USD\"\nprice = \"100\"\nhysteresis = \"2\"\ncooldown = \"0s\"\n",
    );
    let fires = run(
        &mut d,
        &[
            (0, "101"),
            (1, "99.99"),
            (2, "98"),
            (3, "101.99"),
            (4, "99"),
            (5, "102"),
            (6, "99"),
        ],
    );
    // Re-armed only at 102 (100 + 2): 101.99 was not enough.
    assert_eq!(indexes(&fires), [1, 6]);
}

#[test]
fn hysteresis_as_an_amount_keeps_a_hovering_price_quiet() {
    let mut d = Drive::new(
        "[[alert]]\nkind = \"above\"\nsymbol = \"USD\"\nprice = \"100\"\nhysteresis = 5\ncooldown = \"0s\"\n",
    );
    let fires = run(
        &mut d,
        &[
            (0, "101"), // fires
            (1, "99"),  // hovering below the line
            (2, "101"), // quiet: not re-armed
            (3, "95.01"),
            (4, "100.5"),  // quiet
            (5, "95"),     // re-armed at 95 (100 − 5)
            (6, "100.01"), // fires
        ],
    );
    assert_eq!(indexes(&fires), [0, 6]);
}

#[test]
fn hysteresis_as_a_percent_of_the_line() {
    let mut d = Drive::new(
        "[[alert]]\nkind = \"above\"\nsymbol = \"USD\"\nprice = 60000\nhysteresis = \"0.5%\"\ncooldown = \"0s\"\n",
    );
    // 0.5 % of 60000 is 300: re-armed at 59700 or below.
    let fires = run(
        &mut d,
        &[
            (0, "60001"),
            (1, "59700.01"),
            (2, "60001"),
            (3, "59700"),
            (4, "60001"),
        ],
    );
    assert_eq!(indexes(&fires), [0, 4]);
}

#[test]
fn cooldown_holds_a_second_crossing_until_it_ends() {
    let mut d = Drive::new(
        "[[alert]]\nkind = \"above\"\nsymbol = \"USD\"\nprice = \"100\"\ncooldown = \"1m\"\n",
    );
    let fires = run(
        &mut d,
        &[
            (0, "101"),      // fires; cooling until 60 s
            (10_000, "99"),  // re-armed
            (20_000, "101"), // crossing while cooling: held
            (59_999, "101"), // still cooling
            (60_000, "101"), // cooled down and still above: fires
        ],
    );
    assert_eq!(indexes(&fires), [0, 4]);
}

const MOVE: &str = "[[alert]]\nkind = \"move\"\nsymbol = \"USD\"\npercent = \"5\"\nwindow = \"1m\"\ncooldown = \"0s\"\n";

#[test]
fn move_counts_points_exactly_window_old_and_not_older() {
    let mut d = Drive::new(MOVE);
    // 100 at 0 s, 105 at exactly 60 s: inside the window.
    let fires = run(&mut d, &[(0, "100"), (60_000, "105")]);
    assert_eq!(fires, [(1, Some("100".into()), Some("105".into()))]);
    let mut d = Drive::new(MOVE);
    // One millisecond later the 100 has left the window.
    let fires = run(&mut d, &[(0, "100"), (60_001, "105")]);
    assert!(fires.is_empty(), "{fires:?}");
}

#[test]
fn move_measures_from_the_windows_low_or_high_and_starts_over_after_firing() {
    let mut d = Drive::new(MOVE);
    let fires = run(
        &mut d,
        &[
            (0, "102"),
            (10_000, "100"),    // the low
            (20_000, "104.99"), // 4.99 %: quiet
            (30_000, "105"),    // 5 % from the low: fires
            (40_000, "106"),    // the window starts over at 105: quiet
            (50_000, "99.75"),  // 5 % below the high since (105): fires
        ],
    );
    assert_eq!(
        fires,
        [
            (3, Some("100".into()), Some("105".into())),
            (5, Some("106".into()), Some("99.75".into()))
        ]
    );
}

#[test]
fn move_direction_up_or_down_only() {
    let text = |dir: &str| {
        format!(
            "[[alert]]\nkind = \"move\"\nsymbol = \"USD\"\npercent = \"5\"\nwindow = \"1m\"\ndirection = \"{dir}\"\ncooldown = \"0s\"\n"
        )
    };
    // Down 6 %, up 6.4 % from that low, up 6 % again.
    let ticks = [(0, "100"), (1_000, "94"), (2_000, "100"), (3_000, "106")];
    let mut up = Drive::new(&text("up"));
    assert_eq!(indexes(&run(&mut up, &ticks)), [2, 3]);
    let mut down = Drive::new(&text("down"));
    assert_eq!(indexes(&run(&mut down, &ticks)), [1]);
    let mut both = Drive::new(&text("both"));
    assert_eq!(indexes(&run(&mut both, &ticks)), [1, 2, 3]);
}

#[test]
fn move_on_every_symbol_keeps_one_window_each() {
    let mut d = Drive::new(
        "[[alert]]\nkind = \"move\"\nsymbol = \"*\"\npercent = \"1\"\nwindow = \"5m\"\ncooldown = \"0s\"\ntext = \"{symbol} {percent}% in {window}\"\n",
    );
    assert!(d.tick(0, "A", "100").is_empty());
    assert!(d.tick(1, "B", "200").is_empty());
    assert!(d.tick(2, "A", "100.5").is_empty());
    let b = d.tick(3, "B", "198");
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].text, "B 1.00% in 5m");
    let a = d.tick(4, "A", "101");
    assert_eq!(fired(&a[0]).symbol.as_deref(), Some("A"));
}

#[test]
fn drop_from_the_previous_price_carries_old_new_and_percent() {
    let mut d = Drive::new(
        "[[alert]]\nkind = \"drop\"\nsymbol = \"USD\"\npercent = \"5%\"\ncooldown = \"0s\"\n",
    );
    assert!(d.tick(0, "USD", "100").is_empty());
    assert!(d.tick(1, "USD", "96").is_empty(), "4 %");
    assert!(d.tick(2, "USD", "110").is_empty(), "a rise");
    let alerts = d.tick(3, "USD", "104.5");
    assert_eq!(alerts.len(), 1, "5 % below 110");
    let f = fired(&alerts[0]);
    assert_eq!(f.kind, "drop");
    assert_eq!(
        (
            f.old_price.as_deref(),
            f.new_price.as_deref(),
            f.percent.as_deref()
        ),
        (Some("110"), Some("104.5"), Some("5.00"))
    );
    assert_eq!(alerts[0].text, "USD dropped 5.00%: 110 to 104.5");
}

#[test]
fn drop_from_the_windows_high() {
    let mut d = Drive::new(
        "[[alert]]\nkind = \"drop\"\nsymbol = \"USD\"\npercent = \"5\"\nwindow = \"1m\"\ncooldown = \"0s\"\n",
    );
    let fires = run(
        &mut d,
        &[
            (0, "100"),
            (10_000, "103"),   // the high
            (20_000, "99"),    // 3.9 % below it
            (30_000, "97.85"), // 5 % below it: fires
            (40_000, "97"),    // starts over at 97.85: quiet
        ],
    );
    assert_eq!(fires, [(3, Some("103".into()), Some("97.85".into()))]);
    // A high that left the window no longer counts.
    let mut d = Drive::new(
        "[[alert]]\nkind = \"drop\"\nsymbol = \"USD\"\npercent = \"5\"\nwindow = \"1m\"\ncooldown = \"0s\"\n",
    );
    assert!(run(&mut d, &[(0, "103"), (30_000, "100"), (60_001, "97.85")]).is_empty());
}

#[test]
fn stale_symbol_fires_after_its_silence_and_back_when_it_updates() {
    let mut d = Drive::new(
        "[[board.rows]]\nsymbol = \"XAU\"\nlabel = \"Gold\"\n[[alert]]\nkind = \"stale\"\nsymbol = \"XAU\"\nafter = \"30s\"\n",
    );
    assert!(d.check(0).is_empty());
    d.tick(1_000, "XAU", "2400");
    assert!(d.check(30_999).is_empty());
    let stale = d.check(31_000);
    assert_eq!(stale.len(), 1);
    assert_eq!(stale[0].text, "Gold: no update for 30s");
    let f = fired(&stale[0]);
    assert_eq!((f.kind.as_str(), f.trigger_seq), ("stale", Some(1)));
    assert!(d.check(40_000).is_empty(), "one alert per silence");
    assert!(d.check(100_000).is_empty(), "one alert per silence");
    let back = d.tick(120_000, "XAU", "2401");
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].text, "Gold is updating again");
    assert_eq!(back[0].level, Level::Info);
    let f = fired(&back[0]);
    assert_eq!((f.kind.as_str(), f.trigger_seq), ("back", Some(2)));
    // A second silence, after the cooldown (1 m) is over.
    assert!(d.check(149_999).is_empty());
    assert_eq!(d.check(150_000).len(), 1);
}

#[test]
fn a_symbol_never_seen_is_stale_after_the_start() {
    let mut d = Drive::new("[[alert]]\nkind = \"stale\"\nsymbol = \"XAU\"\nafter = \"10s\"\n");
    assert!(d.check(9_999).is_empty());
    let alerts = d.check(10_000);
    assert_eq!(alerts.len(), 1);
    assert_eq!(fired(&alerts[0]).trigger_seq, None);
}

#[test]
fn stale_feed_fires_when_down_or_silent_and_back_when_it_is_up_again() {
    let mut d = Drive::new(
        "[[feed]]\nname = \"gold\"\nformat = \"demo\"\n[[alert]]\nkind = \"stale\"\nfeed = \"gold\"\nafter = \"30s\"\ncooldown = \"0s\"\n",
    );
    d.status(0, "gold", FeedState::Up);
    // Its ticks are signs of life; another feed's are not.
    d.event(
        10_000,
        Body::Tick(Tick {
            symbol: "XAU".into(),
            price: "1".into(),
            source: "gold".into(),
            ..Tick::default()
        }),
        Some("gold"),
    );
    d.tick(20_000, "USD", "1");
    d.status(25_000, "gold", FeedState::Down);
    d.status(26_000, "gold", FeedState::Connecting);
    assert!(d.check(39_999).is_empty());
    let stale = d.check(40_000);
    assert_eq!(stale.len(), 1);
    let f = fired(&stale[0]);
    assert_eq!(
        (f.feed.as_deref(), f.symbol.as_deref()),
        (Some("gold"), None)
    );
    assert_eq!(stale[0].text, "gold: no data for 30s");
    assert!(d.status(50_000, "gold", FeedState::Down).is_empty());
    let back = d.status(60_000, "gold", FeedState::Up);
    assert_eq!(back.len(), 1);
    assert_eq!(fired(&back[0]).kind, "back");
    assert_eq!(back[0].text, "gold: data is flowing again");
}

#[test]
fn due_is_cheap_and_false_until_a_silence_can_end() {
    let mut d = Drive::new("[[alert]]\nkind = \"stale\"\nsymbol = \"XAU\"\nafter = \"10s\"\n");
    // The first check finds the deadline; after it, `due` is false until it.
    assert!(d.check(0).is_empty());
    assert!(!d.rules.due(d.at(9_999)));
    assert!(d.rules.due(d.at(10_000)));
    let mut none = Drive::new(ABOVE);
    assert!(none.check(0).is_empty());
    assert!(!none.rules.due(none.at(1_000_000)));
}

#[test]
fn expires_stamps_the_alert_with_its_own_lifetime() {
    let mut d = Drive::new(
        "[[alert]]\nkind = \"above\"\nsymbol = \"USD\"\nprice = \"1\"\nexpires = \"5m\"\nlevel = \"warning\"\n",
    );
    let alerts = d.tick(1_000, "USD", "2");
    assert_eq!(alerts[0].level, Level::Warning);
    assert_eq!(fired(&alerts[0]).expires, Some(T0_MS + 1_000 + 300_000));
    assert_eq!(
        crate::event::alert_ttl(&alerts[0], T0_MS + 1_000),
        Duration::from_secs(300)
    );
}

#[test]
fn persian_board_gets_persian_digits_in_the_text() {
    let mut d = Drive::new(
        "[board]\nlocale = \"fa\"\ndigits = \"persian\"\n[[board.rows]]\nsymbol = \"USD\"\nlabel = \"دلار\"\ndecimals = 0\n[[alert]]\nkind = \"above\"\nsymbol = \"USD\"\nprice = \"60000\"\ntext = \"{label} از {price} گذشت\"\n",
    );
    let alerts = d.tick(0, "USD", "60250.75");
    assert_eq!(alerts[0].text, "دلار از ۶۰٬۲۵۰ گذشت");
    // The fields stay the feed's decimal strings.
    assert_eq!(fired(&alerts[0]).new_price.as_deref(), Some("60250.75"));
}

/// A restarted engine: the saved state of `before`, and the last-known
/// ticks given, at `ms` after `before`'s start.
fn restarted(before: &mut Drive, text: &str, ms: u64, last_known: &[Event]) -> Drive {
    let saves = before.rules.take_saves(T0_MS + ms);
    let mut after = Drive::new(text);
    after.t0 = after
        .t0
        .checked_sub(Duration::from_millis(ms))
        .unwrap_or(after.t0);
    after.seq = before.seq;
    let now = after.at(ms);
    let stored = |key: &str| saves.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    after.rules.load(stored, now, T0_MS + ms);
    after.rules.restore(last_known, now, T0_MS + ms);
    after
}

fn last_tick(seq: u64, ms: u64, symbol: &str, price: &str) -> Event {
    Event {
        seq,
        ts: T0_MS + ms,
        body: Body::Tick(Tick {
            symbol: symbol.into(),
            price: price.into(),
            source: "fx".into(),
            ..Tick::default()
        }),
    }
}

#[test]
fn a_restart_does_not_fire_again_while_the_condition_holds() {
    let mut d = Drive::new(ABOVE);
    d.tick(0, "USD", "59000");
    assert_eq!(d.tick(1_000, "USD", "61000").len(), 1);
    let keys = d.rules.state_keys();
    assert_eq!(keys, ["rule:usd-60k"]);
    let mut again = restarted(&mut d, ABOVE, 5_000, &[last_tick(2, 1_000, "USD", "61000")]);
    assert!(
        again.tick(6_000, "USD", "61500").is_empty(),
        "still above: no new alert"
    );
    assert!(again.tick(7_000, "USD", "59000").is_empty());
    let alerts = again.tick(8_000, "USD", "60001");
    assert_eq!(alerts.len(), 1, "a new crossing fires");
    assert_eq!(fired(&alerts[0]).old_price.as_deref(), Some("59000"));
}

#[test]
fn a_restart_keeps_the_previous_price_and_what_is_left_of_the_cooldown() {
    let text = "[[alert]]\nkind = \"drop\"\nsymbol = \"USD\"\npercent = \"5\"\ncooldown = \"1m\"\n";
    let mut d = Drive::new(text);
    d.tick(0, "USD", "100");
    assert_eq!(d.tick(1_000, "USD", "90").len(), 1);
    let mut again = restarted(&mut d, text, 30_000, &[last_tick(2, 1_000, "USD", "90")]);
    // 90 → 85 is a 5.6 % drop from the restored previous price, but the
    // cooldown that started at 1 s runs to 61 s.
    assert!(again.tick(40_000, "USD", "85").is_empty());
    assert_eq!(again.tick(61_000, "USD", "80").len(), 1);
}

#[test]
fn a_restart_does_not_repeat_a_stale_alert_and_still_owes_the_back() {
    let text = "[[alert]]\nkind = \"stale\"\nsymbol = \"XAU\"\nafter = \"10s\"\n";
    let mut d = Drive::new(text);
    d.tick(0, "XAU", "1");
    assert_eq!(d.check(10_000).len(), 1);
    let mut again = restarted(&mut d, text, 20_000, &[last_tick(1, 0, "XAU", "1")]);
    assert!(again.check(20_000).is_empty());
    assert!(again.check(60_000).is_empty(), "already told");
    let back = again.tick(70_000, "XAU", "2");
    assert_eq!(fired(&back[0]).kind, "back");
}

#[test]
fn a_fresh_rule_counts_silence_from_the_start_not_from_an_old_tick() {
    let text = "[[alert]]\nkind = \"stale\"\nsymbol = \"XAU\"\nafter = \"10s\"\n";
    let mut d = Drive::new(text);
    // The journal's last XAU tick is an hour old; a restart is not a
    // silence of an hour.
    let mut again = restarted(&mut d, text, 3_600_000, &[last_tick(1, 0, "XAU", "1")]);
    assert!(again.check(3_600_000).is_empty());
    assert!(again.check(3_609_999).is_empty());
    assert_eq!(again.check(3_610_000).len(), 1);
}

#[test]
fn saves_come_only_when_the_state_changed() {
    let mut d = Drive::new(ABOVE);
    d.tick(0, "USD", "59000");
    assert!(d.rules.take_saves(T0_MS).is_empty());
    d.tick(1, "USD", "61000");
    let saves = d.rules.take_saves(T0_MS + 1);
    assert_eq!(saves.len(), 1);
    let value: serde_json::Value = serde_json::from_slice(&saves[0].1).unwrap();
    assert_eq!(value["keys"]["USD"]["armed"], false);
    assert!(d.rules.take_saves(T0_MS + 2).is_empty());
    d.tick(2, "USD", "61500");
    assert!(
        d.rules.take_saves(T0_MS + 3).is_empty(),
        "no change: no write"
    );
}

#[test]
fn a_tick_that_is_not_a_decimal_and_a_rules_own_alert_fire_nothing() {
    let mut d = Drive::new(ABOVE);
    assert!(d.tick(0, "USD", "lots").is_empty());
    let own = d.tick(1, "USD", "61000").remove(0);
    assert!(d.event(2, Body::Alert(own), None).is_empty());
}

/// kiosk/fa-exchange.toml's own rule fires on the dollar passing 60,000 and
/// the board shows it on its band, in Persian with Persian digits.
#[test]
fn golden_persian_exchange_with_a_rule_alert_1920x1080() {
    use crate::board::golden::{check_golden, kiosk_board, render};
    use crate::board::testing::NOW;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kiosk/fa-exchange.toml");
    let config = Config::load(Some(&path), &Overrides::default()).unwrap();
    let mut state = kiosk_board(
        "fa-exchange.toml",
        &[
            ("USD", "60250", "60450", "3.10"),
            ("EUR", "63120", "63480", "-0.35"),
            ("AED", "16390", "16460", "3.05"),
            ("COIN", "45200000", "45900000", "1.25"),
            ("HALF", "25100000", "25600000", "0.90"),
            ("GOLD18", "3948000", "3991000", "-0.40"),
        ],
        "نرخ حواله درهم امروز ۰٫۲٪ بالا رفت",
        210,
    );
    let t0 = Instant::now();
    let mut rules = Rules::new(&config, t0);
    let tick = |seq: u64, price: &str| Event {
        seq,
        ts: NOW - 10_000,
        body: Body::Tick(Tick {
            symbol: "USD".into(),
            price: price.into(),
            source: "rates".into(),
            ..Tick::default()
        }),
    };
    assert!(
        rules
            .on_event(&tick(1, "59800"), Some("rates"), t0, NOW - 20_000)
            .is_empty()
    );
    let alerts = rules.on_event(&tick(2, "60250"), Some("rates"), t0, NOW - 10_000);
    assert_eq!(alerts.len(), 1);
    assert_eq!(
        alerts[0].text,
        "دلار از مرز ۶۰ هزار تومان گذشت: ۶۰٬۲۵۰ تومان"
    );
    let alert = Event {
        seq: 3,
        ts: NOW - 10_000,
        body: Body::Alert(alerts.into_iter().next().unwrap()),
    };
    state.apply(&alert, NOW - 10_000);
    check_golden(
        "rule_alert_fa_exchange_1920x1080",
        &render(&state, NOW, 1920, 1080),
    );
}
