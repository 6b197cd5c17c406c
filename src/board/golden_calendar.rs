//! Golden pictures of the header's date in each shipped language and of
//! Arabic ages, beside `board::golden` (the same update step:
//! `TABLO_UPDATE_GOLDEN=1 cargo test --lib board::golden`).

use embedded_graphics::Pixel;
use embedded_graphics::prelude::{DrawTarget, Point};

use super::calendar::day_of;
use super::draw::{Painter, draw_header};
use super::golden::{check_golden, kiosk_board, render};
use super::png::Canvas;
use super::state::BoardState;
use super::testing::{board_config, status, tick_with_open};
use crate::config::{CalendarChoice, Column, Digits};
use crate::event::{Body, Event, FeedState};

/// 10:00 local time on 2025-03-21 (1 Farvardin 1404, 21 Ramadan 1446) at
/// `offset_min` east of UTC.
fn nowruz_1404_at_ten(offset_min: i32) -> u64 {
    let local = day_of(2025, 3, 21) * 86_400_000 + 10 * 3_600_000;
    (local - i64::from(offset_min) * 60_000) as u64
}

/// Just the header of `state` at `now_ms`, on a `width`×1080 board.
fn header(state: &BoardState, now_ms: u64, width: u32) -> Canvas {
    let mut frame = Canvas::new(width, 1080);
    let area = draw_header(state, now_ms, &mut Painter::new(), &mut frame).unwrap();
    let mut strip = Canvas::new(area.size.width, area.size.height);
    let top = area.top_left;
    strip
        .draw_iter((0..area.size.height).flat_map(|y| {
            let frame = &frame;
            (0..area.size.width).map(move |x| {
                let pixel = frame.pixel(x + top.x as u32, y + top.y as u32);
                Pixel(Point::new(x as i32, y as i32), pixel)
            })
        }))
        .unwrap();
    strip
}

fn kiosk(name: &str, offset_min: i32) -> BoardState {
    kiosk_board(name, &[("USD", "1", "1", "0")], "", offset_min)
}

/// "۱ فروردین ۱۴۰۴": Nowruz, in Persian digits, on the right of the clock
/// of a mirrored board.
#[test]
fn header_date_persian_1920() {
    let state = kiosk("fa-exchange.toml", 210);
    check_golden(
        "header_date_fa_1920",
        &header(&state, nowruz_1404_at_ten(210), 1920),
    );
}

/// "٢١ رمضان ١٤٤٦ هـ": the Hijri (Umm al-Qura) date in Arabic-Indic digits.
#[test]
fn header_date_arabic_hijri_1920() {
    let state = kiosk("ar-exchange.toml", 180);
    check_golden(
        "header_date_ar_1920",
        &header(&state, nowruz_1404_at_ten(180), 1920),
    );
}

/// "٢١ مارس ٢٠٢٥": an Arabic board set to the Gregorian calendar.
#[test]
fn header_date_arabic_gregorian_1920() {
    let mut board = board_config(&["USD:دولار"]);
    board.locale = "ar".into();
    board.digits = Digits::Arabic;
    board.calendar = CalendarChoice::Gregorian;
    board.title = "صرافة".into();
    let mut state = BoardState::new(&board, &["rates"]);
    state.set_utc_offset_minutes(180);
    check_golden(
        "header_date_ar_gregorian_1920",
        &header(&state, nowruz_1404_at_ten(180), 1920),
    );
}

/// "21 Mart 2025".
#[test]
fn header_date_turkish_1920() {
    let state = kiosk("tr-gold.toml", 180);
    check_golden(
        "header_date_tr_1920",
        &header(&state, nowruz_1404_at_ten(180), 1920),
    );
}

/// "March 21, 2025", at 800 px wide, where the title has least room.
#[test]
fn header_date_english_800() {
    let mut state = BoardState::new(&board_config(&["BTCUSDT"]), &["binance"]);
    state.set_clients(3);
    check_golden(
        "header_date_en_800",
        &header(&state, nowruz_1404_at_ten(0), 800),
    );
}

/// Arabic rows stale for one, two, five and eleven minutes and two hours:
/// "منذ دقيقة", the dual "منذ دقيقتين", "منذ ٥ دقائق", "منذ ١١ دقيقة",
/// "منذ ساعتين".
#[test]
fn arabic_ages_800x480() {
    let mut board = board_config(&["A:دولار:2", "B:يورو:2", "C:جنيه:2", "D:ريال:2", "E:ذهب:0"]);
    board.locale = "ar".into();
    board.digits = Digits::Arabic;
    board.columns = vec![Column::Price, Column::Change];
    board.stale_after = std::time::Duration::from_secs(30);
    board.title = "أسعار الصرف".into();
    let mut state = BoardState::new(&board, &["rates"]);
    state.set_utc_offset_minutes(180);
    let now = nowruz_1404_at_ten(180);
    let mut seq = 0;
    let mut apply = |state: &mut BoardState, ts: u64, body: Body| {
        seq += 1;
        state.apply(&Event { seq, ts, body }, ts);
    };
    apply(
        &mut state,
        now - 3 * 3_600_000,
        status("rates", FeedState::Up),
    );
    for (symbol, price, ago_ms) in [
        ("A", "48.55", 60_000),
        ("B", "52.30", 2 * 60_000),
        ("C", "61.20", 5 * 60_000),
        ("D", "12.93", 11 * 60_000),
        ("E", "3640", 2 * 3_600_000),
    ] {
        apply(
            &mut state,
            now - ago_ms,
            tick_with_open(symbol, price, price),
        );
    }
    check_golden("arabic_ages_800x480", &render(&state, now, 800, 480));
}

/// Not a picture: a painter that drew the header before local midnight (or
/// before a clock step) draws the same header after it as a fresh painter,
/// so its cached date never outlives the day.
#[test]
fn the_date_turns_at_local_midnight_and_after_a_clock_step() {
    let mut state = kiosk("fa-exchange.toml", 210);
    let midnight = nowruz_1404_at_ten(210) - 10 * 3_600_000;
    let strip = |state: &BoardState, painter: &mut Painter, at: u64| {
        let mut frame = Canvas::new(1280, 720);
        draw_header(state, at, painter, &mut frame).unwrap();
        frame
    };
    let mut warm = Painter::new();
    strip(&state, &mut warm, midnight - 1_000);
    let after = strip(&state, &mut warm, midnight);
    assert!(after == strip(&state, &mut Painter::new(), midnight));
    // The same 00:00:00 a day earlier differs only in its date.
    assert!(after != strip(&state, &mut Painter::new(), midnight - 86_400_000));
    // The wall clock steps 90 days ahead of the board's time.
    state.set_clock_offset_ms(90 * 86_400_000);
    let stepped = strip(&state, &mut warm, midnight + 1_000);
    assert!(stepped == strip(&state, &mut Painter::new(), midnight + 1_000));
}

/// Not a picture: while the clock is not set the header shows neither a
/// time nor a date, so it looks the same on any day.
#[test]
fn an_unset_clock_shows_no_date() {
    let mut state = kiosk("fa-exchange.toml", 210);
    state.apply(
        &Event {
            seq: 99,
            ts: 0,
            body: Body::Clock(crate::event::ClockState::Unsynchronized),
        },
        0,
    );
    let now = nowruz_1404_at_ten(210);
    let day_later = header(&state, now + 86_400_000, 1920);
    assert!(header(&state, now, 1920) == day_later);
    // With the clock set, a day later reads differently.
    let set = kiosk("fa-exchange.toml", 210);
    assert!(header(&set, now, 1920) != header(&set, now + 86_400_000, 1920));
}
