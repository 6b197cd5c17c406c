//! Whole-board golden pictures: each case draws a board and compares it,
//! pixel for pixel, with a PNG checked in under `tests/golden/`.
//!
//! After an intended change to the board's look, rewrite the pictures with
//!
//! ```text
//! TABLO_UPDATE_GOLDEN=1 cargo test --lib board::golden
//! ```
//!
//! and look at every changed PNG before committing it. On a mismatch the
//! picture drawn is left in `target/golden-actual/` to compare.

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use embedded_graphics::prelude::Point;

use super::draw::{Painter, draw, draw_news};
use super::png::{Canvas, encode_with, write_atomically};
use super::qr::Qr;
use super::rotate::{Rotated, Rotation};
use super::state::BoardState;
use super::testing::{NOW, board_config, decode_qr, demo_board, status, tick_with_open};
use crate::config::{Column, Config, Overrides};
use crate::event::{Alert, Body, Event, FeedState, Level, News, Tick};
use crate::feed::demo::Demo;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Compares `frame` with `tests/golden/<name>.png`, or rewrites that file
/// when `TABLO_UPDATE_GOLDEN=1`.
#[track_caller]
pub(crate) fn check_golden(name: &str, frame: &Canvas) {
    let path = golden_dir().join(format!("{name}.png"));
    if std::env::var_os("TABLO_UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        fs::create_dir_all(golden_dir()).unwrap();
        let mut png = Vec::new();
        encode_with(frame, &mut png, ::png::Compression::High).unwrap();
        fs::write(&path, png).unwrap();
        return;
    }
    let expected = fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; draw it with TABLO_UPDATE_GOLDEN=1 cargo test --lib board::golden",
            path.display()
        )
    });
    let expected = Canvas::decode(&expected).unwrap();
    if expected == *frame {
        return;
    }
    let actual_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/golden-actual");
    fs::create_dir_all(&actual_dir).unwrap();
    let actual = actual_dir.join(format!("{name}.png"));
    write_atomically(&actual, frame).unwrap();
    let differing = if (expected.width, expected.height) == (frame.width, frame.height) {
        expected
            .pixels
            .iter()
            .zip(&frame.pixels)
            .filter(|(a, b)| a != b)
            .count()
    } else {
        usize::MAX
    };
    panic!(
        "{name}: {differing} pixels differ from {}; drawn: {}. If the change is intended, \
         run TABLO_UPDATE_GOLDEN=1 cargo test --lib board::golden and look at the pictures.",
        path.display(),
        actual.display()
    );
}

/// A whole board frame of `state` at `now_ms`.
pub(crate) fn render(state: &BoardState, now_ms: u64, width: u32, height: u32) -> Canvas {
    let mut frame = Canvas::new(width, height);
    draw(state, now_ms, &mut Painter::new(), &mut frame).unwrap();
    frame
}

/// The demo market after two minutes, with a headline, a few rows in their
/// flash, and (at 1080p) page 1 of 2.
fn live_demo(columns: Option<Vec<Column>>) -> (BoardState, u64) {
    let mut board = board_config(&[]);
    if let Some(columns) = columns {
        board.columns = columns;
    }
    let (mut state, last) = demo_board(&board, NOW, 480);
    let news = [
        "Tabloland central bank keeps its imaginary rate at 3.25% as inflation cools",
        "Acme Nuggets reports record ounces from its cartoon gold mine",
    ];
    for (i, title) in news.iter().enumerate() {
        let body = Body::News(News {
            title: (*title).into(),
            url: None,
            source: "demo".into(),
        });
        state.apply(
            &Event {
                seq: 10_000 + i as u64,
                ts: last - 5_000,
                body,
            },
            last - 5_000,
        );
    }
    (state, last + 200)
}

/// The first moment at or after `from` when page `page` of `pages` shows.
fn on_page(state: &BoardState, from: u64, pages: usize, page: usize) -> u64 {
    let step = state.page_ms();
    (0..pages as u64)
        .map(|n| from + n * step)
        .find(|&t| state.page_at(t, pages) == page)
        .unwrap_or(from)
}

/// The demo feed's first state, as `tablo render --demo` draws it: every
/// price fresh, no history yet, no news.
#[test]
fn demo_first_state_1920x1080() {
    let (state, _) = demo_board(&board_config(&[]), NOW, 0);
    let now = on_page(&state, NOW + 400, 2, 0);
    check_golden(
        "demo_first_state_1920x1080",
        &render(&state, now, 1920, 1080),
    );
}

#[test]
fn demo_first_state_800x480() {
    let (state, _) = demo_board(&board_config(&[]), NOW, 0);
    let now = on_page(&state, NOW + 400, 3, 0);
    check_golden("demo_first_state_800x480", &render(&state, now, 800, 480));
}

#[test]
fn demo_live_1920x1080() {
    let (state, now) = live_demo(None);
    check_golden("demo_live_1920x1080", &render(&state, now, 1920, 1080));
}

#[test]
fn demo_live_800x480_page_2() {
    let (state, now) = live_demo(None);
    let now = on_page(&state, now, 3, 1);
    check_golden("demo_live_800x480_page2", &render(&state, now, 800, 480));
}

/// A LAN address as `[board] qr = "auto"` finds it, for the QR pictures.
const QR_URL: &str = "http://192.168.1.23:7070/";

/// `state` showing the QR code of [`QR_URL`].
fn with_qr(mut state: BoardState) -> BoardState {
    state.set_qr(Qr::encode(QR_URL).map(Arc::new));
    state
}

/// The live demo with the QR code to the web board (docs/board.md §10): a
/// column at the end of the rows, the code over the news line; the picture
/// reads back as its URL.
#[test]
fn qr_code_demo_live_1920x1080() {
    let (state, now) = live_demo(None);
    let frame = render(&with_qr(state), now, 1920, 1080);
    check_golden("qr_demo_live_1920x1080", &frame);
    assert_eq!(decode_qr(&frame), [QR_URL]);
}

/// kiosk/fa-exchange.toml with a QR code: the board mirrors, so the code
/// sits on the left under a Persian caption, its modules not mirrored.
#[test]
fn qr_code_kiosk_persian_exchange_1920x1080() {
    let state = persian_exchange();
    let frame = render(&with_qr(state), NOW, 1920, 1080);
    check_golden("qr_kiosk_fa_exchange_1920x1080", &frame);
    assert_eq!(decode_qr(&frame), [QR_URL]);
}

/// Not a picture: the code reads back on small, portrait and rotated
/// screens, left to right and mirrored.
#[test]
fn the_qr_code_reads_back_at_every_size_and_direction() {
    let (demo, now) = live_demo(None);
    let mut board = board_config(&["USD:دلار آمریکا", "COIN:سکه"]);
    board.locale = "fa".into();
    let persian = BoardState::new(&board, &["rates"]);
    for (state, now) in [(with_qr(demo), now), (with_qr(persian), NOW)] {
        for (w, h) in [(800, 480), (1280, 720), (1080, 1920)] {
            let frame = render(&state, now, w, h);
            assert_eq!(decode_qr(&frame), [QR_URL], "{w}x{h}");
        }
        let mut screen = Rotated::new(Canvas::new(1920, 1080), Rotation::Cw90);
        draw(&state, now, &mut Painter::new(), &mut screen).unwrap();
        assert_eq!(decode_qr(&screen.into_inner()), [QR_URL], "rotated");
    }
}

/// Last-known prices from the journal, twenty minutes old, drawn at start-up
/// with every feed down.
#[test]
fn stale_rows_and_offline_header_1920x1080() {
    let board = board_config(&[
        "BTCUSDT:Bitcoin",
        "ETHUSDT:Ether",
        "XAUUSD:Gold:2",
        "EURUSD:EUR/USD:4",
        "USDJPY",
    ]);
    let mut state = BoardState::new(&board, &["binance", "fx"]);
    let mut demo = Demo::new("demo", 3);
    let mut out = Vec::new();
    let journal_ts = NOW - 20 * 60_000;
    demo.first_state(journal_ts, &mut out);
    for step in 1..=200 {
        demo.step(journal_ts + step * 250, &mut out);
    }
    for (seq, incoming) in out.into_iter().enumerate() {
        state.restore(&Event {
            seq: seq as u64,
            ts: incoming.ts,
            body: incoming.body,
        });
    }
    for (feed, at) in [("binance", NOW - 95_000), ("fx", NOW - 65_000)] {
        state.apply(
            &Event {
                seq: 0,
                ts: at,
                body: status(feed, FeedState::Down),
            },
            at,
        );
    }
    state.set_clients(1);
    check_golden("stale_offline_1920x1080", &render(&state, NOW, 1920, 1080));
}

fn with_alerts(state: &mut BoardState, now: u64) {
    for (i, text) in [
        "Trading halted: the exchange is closed until further notice",
        "Rates are indicative only — ask at the counter before you trade",
    ]
    .iter()
    .enumerate()
    {
        let body = Body::Alert(Alert {
            level: Level::Critical,
            text: (*text).into(),
            source: "publish".into(),
            fired: None,
        });
        let at = now - 60_000 + i as u64 * 30_000;
        state.apply(
            &Event {
                seq: 0,
                ts: at,
                body,
            },
            at,
        );
    }
}

#[test]
fn critical_alert_band_1920x1080() {
    let (mut state, now) = live_demo(None);
    with_alerts(&mut state, now);
    check_golden("alert_1920x1080", &render(&state, now, 1920, 1080));
}

#[test]
fn critical_alert_band_800x480() {
    let (mut state, now) = live_demo(None);
    with_alerts(&mut state, now);
    check_golden("alert_800x480", &render(&state, now, 800, 480));
}

#[test]
fn rotated_90_on_a_1920x1080_screen() {
    let (state, now) = live_demo(None);
    let mut screen = Rotated::new(Canvas::new(1920, 1080), Rotation::Cw90);
    draw(&state, now, &mut Painter::new(), &mut screen).unwrap();
    check_golden("rotated90_1920x1080", &screen.into_inner());
}

/// An exchange office's board: buy, sell and change, with captions.
#[test]
fn exchange_office_1280x720() {
    let mut board = board_config(&[
        "EURUSD:Euro:4",
        "GBPUSD:British pound:4",
        "USDJPY:Japanese yen:2",
        "USDCHF:Swiss franc:4",
        "XAUUSD:Gold (oz):2",
        "XAGUSD:Silver (oz):2",
    ]);
    board.title = "Examplia Exchange".into();
    board.columns = vec![Column::Bid, Column::Ask, Column::Change];
    let (state, last) = demo_board(&board, NOW, 240);
    check_golden(
        "exchange_1280x720",
        &render(&state, last + 1_500, 1280, 720),
    );
}

/// A kiosk example board as shipped (`kiosk/NAME.toml`, read like `tablo
/// check` reads it) with sample rates `(symbol, buy, sell, change %)`, the
/// feed up, a headline, and the clock at `offset_min` from UTC.
pub(crate) fn kiosk_board(
    name: &str,
    rates: &[(&str, &str, &str, &str)],
    headline: &str,
    offset_min: i32,
) -> BoardState {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("kiosk")
        .join(name);
    let config = Config::load(Some(&path), &Overrides::default()).expect("a kiosk example");
    let feeds: Vec<&str> = config.feeds.iter().map(|f| f.name.as_str()).collect();
    let mut state = BoardState::new(&config.board, &feeds);
    state.set_clients(2);
    state.set_utc_offset_minutes(offset_min);
    let mut seq = 0;
    let mut apply = |state: &mut BoardState, body: Body| {
        seq += 1;
        let ts = NOW - 60_000;
        state.apply(&Event { seq, ts, body }, ts);
    };
    apply(&mut state, status("rates", FeedState::Up));
    for &(symbol, buy, sell, change_pct) in rates {
        apply(
            &mut state,
            Body::Tick(Tick {
                symbol: symbol.into(),
                price: buy.into(),
                bid: Some(buy.into()),
                ask: Some(sell.into()),
                change_pct: Some(change_pct.into()),
                source: "rates".into(),
                ..Tick::default()
            }),
        );
    }
    apply(
        &mut state,
        Body::News(News {
            title: headline.into(),
            url: None,
            source: "rates".into(),
        }),
    );
    state
}

/// kiosk/fa-exchange.toml with six rates and a Persian headline, as the
/// Persian exchange goldens show it.
fn persian_exchange() -> BoardState {
    kiosk_board(
        "fa-exchange.toml",
        &[
            ("USD", "58450", "58650", "0.12"),
            ("EUR", "63120", "63480", "-0.35"),
            ("AED", "15890", "15960", "0.08"),
            ("COIN", "45200000", "45900000", "1.25"),
            ("HALF", "25100000", "25600000", "0.90"),
            ("GOLD18", "3948000", "3991000", "-0.40"),
        ],
        "نرخ حواله درهم امروز ۰٫۲٪ بالا رفت؛ سکهٔ تمام‌بهار در بازار ۴۵٬۲۰۰٬۰۰۰ تومان",
        210,
    )
}

/// kiosk/fa-exchange.toml: Persian, right to left, Persian digits, Toman.
#[test]
fn kiosk_persian_exchange_1920x1080() {
    let state = persian_exchange();
    check_golden(
        "kiosk_fa_exchange_1920x1080",
        &render(&state, NOW, 1920, 1080),
    );
}

/// A small Persian board: a label too long for its column is cut on its
/// left (where Persian text ends), a stale row says its age in Persian
/// under its label, the feed is down, and two critical alerts (the
/// latest shown, "+۱ مورد دیگر").
#[test]
fn persian_cut_stale_and_offline_800x480() {
    let mut board = board_config(&[
        "USD:دلار آمریکا:0",
        "GOLD:طلای آب‌شده، مثقال، بازار تهران، نقدی و فردایی با فاکتور رسمی:0",
        "COIN:نیم‌سکه:0",
    ]);
    board.locale = "fa".into();
    board.digits = crate::config::Digits::Persian;
    board.columns = vec![Column::Price, Column::Change];
    board.title = "صرافی نمونه".into();
    let mut state = BoardState::new(&board, &["rates"]);
    let mut seq = 0;
    let mut apply = |state: &mut BoardState, ts: u64, body: Body| {
        seq += 1;
        state.apply(&Event { seq, ts, body }, ts);
    };
    apply(&mut state, NOW - 3_600_000, status("rates", FeedState::Up));
    apply(
        &mut state,
        NOW - 2_700_000,
        tick_with_open("USD", "58450", "58100"),
    );
    apply(
        &mut state,
        NOW - 60_000,
        tick_with_open("GOLD", "17250000", "17300000"),
    );
    apply(
        &mut state,
        NOW - 60_000,
        tick_with_open("COIN", "25100000", "25100000"),
    );
    apply(&mut state, NOW - 30_000, status("rates", FeedState::Down));
    for text in [
        "بازار طلا امروز تعطیل است",
        "نرخ‌ها تقریبی است؛ پیش از معامله بپرسید",
    ] {
        let alert = Body::Alert(Alert {
            level: Level::Critical,
            text: text.into(),
            source: "publish".into(),
            fired: None,
        });
        apply(&mut state, NOW - 10_000, alert);
    }
    state.set_utc_offset_minutes(210);
    check_golden(
        "persian_cut_stale_offline_800x480",
        &render(&state, NOW, 800, 480),
    );
}

/// kiosk/ar-exchange.toml: Arabic, right to left, Arabic-Indic digits.
#[test]
fn kiosk_arabic_exchange_1920x1080() {
    let state = kiosk_board(
        "ar-exchange.toml",
        &[
            ("USD", "48.55", "48.65", "0.10"),
            ("EUR", "52.30", "52.60", "-0.25"),
            ("GBP", "61.20", "61.55", "0.05"),
            ("SAR", "12.93", "12.97", "0.00"),
            ("XAU21", "3640", "3660", "0.55"),
            ("XAU24", "4160", "4185", "0.60"),
        ],
        "ارتفاع سعر الذهب عيار ٢١ في السوق المحلية اليوم",
        180,
    );
    check_golden(
        "kiosk_ar_exchange_1920x1080",
        &render(&state, NOW, 1920, 1080),
    );
}

/// kiosk/tr-gold.toml: Turkish, left to right, 2.450,00.
#[test]
fn kiosk_turkish_gold_1920x1080() {
    let state = kiosk_board(
        "tr-gold.toml",
        &[
            ("GRAM", "2450.00", "2480.00", "0.45"),
            ("CEYREK", "4010.00", "4090.00", "0.40"),
            ("YARIM", "8020.00", "8170.00", "0.40"),
            ("TAM", "15990.00", "16320.00", "0.38"),
            ("AYAR22", "2215.00", "2330.00", "-0.12"),
            ("ONS", "2338.36", "2338.76", "-0.49"),
        ],
        "Kapalıçarşı'da gram altın güne yükselişle başladı",
        180,
    );
    check_golden("kiosk_tr_gold_1920x1080", &render(&state, NOW, 1920, 1080));
}

/// Not a picture: every size from 800×480 to 4K, every rotation and a
/// pixel shift draw without panicking, and a fresh painter's frame equals a
/// warm painter's (the glyph cache changes nothing but speed).
#[test]
fn every_size_and_rotation_draws_the_same_with_a_warm_cache() {
    let (state, now) = live_demo(None);
    every_size_and_rotation(&state, now);
    // A mirrored board with shaped labels and headline, and a shape cache.
    let state = kiosk_board(
        "fa-exchange.toml",
        &[
            ("USD", "58450", "58650", "0.12"),
            ("COIN", "45200000", "45900000", "-1.25"),
        ],
        "نرخ حواله درهم امروز ۰٫۲٪ بالا رفت",
        210,
    );
    every_size_and_rotation(&state, NOW);
}

fn every_size_and_rotation(state: &BoardState, now: u64) {
    let mut warm = Painter::new();
    for (w, h) in [
        (800, 480),
        (1024, 600),
        (1280, 720),
        (1920, 1080),
        (3840, 2160),
        (480, 800),
    ] {
        for rotation in [
            Rotation::None,
            Rotation::Cw90,
            Rotation::Cw180,
            Rotation::Cw270,
        ] {
            let mut a = Rotated::new(Canvas::new(w, h), rotation).with_shift(4, Point::new(-4, 4));
            let mut b = Rotated::new(Canvas::new(w, h), rotation).with_shift(4, Point::new(-4, 4));
            draw(state, now, &mut warm, &mut a).unwrap();
            draw(state, now, &mut Painter::new(), &mut b).unwrap();
            assert!(a.into_inner() == b.into_inner(), "{w}x{h} {rotation:?}");
        }
    }
}

/// Prints the time of a full frame (and of a news-line-only redraw) at
/// 1920×1080 and 800×480 with a warm cache. Meaningful in release:
/// `cargo test --release --lib board::golden::draw_time -- --nocapture`.
#[test]
fn draw_time() {
    let (state, now) = live_demo(None);
    let mut painter = Painter::new();
    for (w, h) in [(1920, 1080), (800, 480)] {
        let mut frame = Canvas::new(w, h);
        draw(&state, now, &mut painter, &mut frame).unwrap();
        let mut time = |news_only: bool| {
            let mut times: Vec<_> = (0..100_u64)
                .map(|n| {
                    let start = Instant::now();
                    if news_only {
                        draw_news(&state, now + n * 33, &mut painter, &mut frame).unwrap();
                    } else {
                        draw(&state, now + n * 33, &mut painter, &mut frame).unwrap();
                    }
                    start.elapsed()
                })
                .collect();
            times.sort();
            (times[50], times[99])
        };
        let (full, full_max) = time(false);
        let (news, news_max) = time(true);
        println!(
            "board::draw {w}x{h}: p50 {full:?} (max {full_max:?}); news line only: p50 {news:?} \
             (max {news_max:?}); {} glyphs rasterized in all",
            painter.text().rasterized()
        );
    }
}
