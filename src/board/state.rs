//! What the board shows: rows of prices, news, critical alerts, feed status.
//!
//! [`BoardState`] is built once from the `[board]` settings and the feed
//! names, then updated by [`BoardState::apply`] with every event and the
//! time it arrived. It keeps only what the screen needs, every list bounded.
//! [`BoardState::animating`] and [`BoardState::next_change_ms`] tell the
//! renderer when a new frame would look different, so it can sleep until
//! then.
//!
//! This module never reads the clock (every method that depends on time takes
//! `now_ms`), never does I/O, and never parses a price into floating point:
//! prices are kept as the feed's strings, cut or padded to the configured
//! decimals as text; change and percent come from [`crate::decimal`].

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::time::Duration;

use super::calendar::LocalDate;
use super::numbers::{Numbers, is_rtl, language};
use super::qr::Qr;
use super::words::Language;
use crate::config::{BoardConfig, BoardQr, Column, RowConfig};
use crate::decimal::{self, Decimal};
use crate::event::{Alert, Body, ClockState, Event, FeedState, Level, Tick, alert_ttl};

/// Most rows shown when `[[board.rows]]` is empty and rows are added as
/// symbols are seen: four pages of a 1080p board. A feed sending thousands
/// of symbols must not grow the board without bound.
pub const MAX_ROWS: usize = 64;

/// Prices kept per row for its sparkline: one per tick, about a minute of a
/// busy exchange symbol, and few enough points to draw in microseconds.
pub const SPARK_LEN: usize = 60;

/// Headlines kept for the news line, latest first: more would take minutes
/// to scroll by, and older ones are no longer news.
pub const MAX_NEWS: usize = 8;

/// Critical alerts kept for the band, latest first. The band shows the
/// latest and counts the others.
pub const MAX_ALERTS: usize = 4;

/// Most feeds with a status dot when the feed names are not given up front.
pub const MAX_FEEDS: usize = 16;

/// How long a price change flashes its row.
pub const FLASH_MS: u64 = 900;

/// Longest text kept from a headline, alert, symbol or label, in bytes: a
/// line on the board holds far less, and a hostile feed must not make the
/// board hold megabytes.
pub const MAX_TEXT: usize = 300;

/// The next change stamp. Stamps are unique in the process (not per
/// state), so a frame drawn from one state can be compared with any later
/// state, even one rebuilt by a resync, without two different contents
/// ever sharing a stamp.
static NEXT_STAMP: AtomicU64 = AtomicU64::new(1);

/// A fresh change stamp (see [`Row::changed`], [`BoardState::changed`]).
fn stamp() -> u64 {
    NEXT_STAMP.fetch_add(1, AtomicOrdering::Relaxed)
}

/// Up, down or unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trend {
    /// Above the reference.
    Up,
    /// Below the reference.
    Down,
    /// Equal to it, or no reference.
    Flat,
}

impl Trend {
    fn of(ordering: Option<Ordering>) -> Trend {
        match ordering {
            Some(Ordering::Greater) => Trend::Up,
            Some(Ordering::Less) => Trend::Down,
            _ => Trend::Flat,
        }
    }
}

/// A running highlight after a price change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flash {
    /// When the change arrived.
    pub start_ms: u64,
    /// Whether the price went up or down.
    pub trend: Trend,
}

/// One line of the board: a symbol and what is known about it.
///
/// Every price is the feed's decimal string, with the row's `decimals`
/// applied as text. `None` means the feed has not said.
#[derive(Clone, Debug)]
pub struct Row {
    /// Instrument name as the feed spells it.
    pub symbol: String,
    /// What the board shows for it (the symbol when no label is set).
    pub label: String,
    /// Decimals to show, from `[[board.rows]]`; `None` keeps the feed's.
    pub decimals: Option<u8>,
    /// Last price as shown.
    pub price: Option<String>,
    /// Opening price as shown.
    pub open: Option<String>,
    /// Price minus open, signed (`+12.50`, `-0.0031`, `0.00`).
    pub change: Option<String>,
    /// Change against the open in percent, signed, two decimals (`+1.53`).
    pub change_pct: Option<String>,
    /// Direction against the open (or of `change_pct` without an open).
    pub trend: Trend,
    /// Best bid ("buy") as shown.
    pub bid: Option<String>,
    /// Best ask ("sell") as shown.
    pub ask: Option<String>,
    /// Traded volume, as the feed sent it.
    pub volume: Option<String>,
    /// When the last tick was stamped, ms since the epoch.
    pub updated_ms: Option<u64>,
    /// The running or last flash.
    pub flash: Option<Flash>,
    /// The price was restored from the journal at start-up and no fresh
    /// tick has come since: drawn as stale whatever its age.
    pub restored: bool,
    /// The last price as the feed sent it, to compare the next one with.
    raw_price: String,
    /// Stamp of the last change to anything above (see [`Row::changed`]).
    changed: u64,
    /// Recent prices, oldest first, at most [`SPARK_LEN`].
    history: VecDeque<Decimal>,
}

impl Row {
    fn new(symbol: &str, config: Option<&RowConfig>) -> Row {
        let symbol = clip(symbol).to_owned();
        Row {
            label: config
                .and_then(|c| c.label.as_deref())
                .map_or_else(|| symbol.clone(), |l| clip(l).to_owned()),
            decimals: config.and_then(|c| c.decimals),
            symbol,
            price: None,
            open: None,
            change: None,
            change_pct: None,
            trend: Trend::Flat,
            bid: None,
            ask: None,
            volume: None,
            updated_ms: None,
            flash: None,
            restored: false,
            raw_price: String::new(),
            history: VecDeque::new(),
            changed: stamp(),
        }
    }

    /// A stamp that changes whenever the row's content does (not when
    /// only time passes: flashes fading and ages are the drawing's to
    /// work out from `now_ms`). Equal stamps mean equal content, so a row
    /// on screen whose stamp is the same needs no redrawing.
    pub fn changed(&self) -> u64 {
        self.changed
    }

    /// Recent prices for the sparkline, oldest first.
    pub fn history(&self) -> impl ExactSizeIterator<Item = Decimal> + Clone + '_ {
        self.history.iter().copied()
    }

    /// Whether the row is drawn as stale at `now_ms`: restored and not yet
    /// refreshed, or not updated for `stale_after_ms`. A row with no price
    /// at all is not stale; it is empty.
    pub fn is_stale(&self, now_ms: u64, stale_after_ms: u64) -> bool {
        match self.updated_ms {
            None => false,
            Some(at) => self.restored || now_ms.saturating_sub(at) >= stale_after_ms,
        }
    }

    /// How long since the last update, when there has been one and it is
    /// not in the future: a restored row stamped after `now_ms` (the clock is
    /// behind the journal, e.g. a Pi that booted at 1970) has no age to
    /// tell, rather than a false "0s ago".
    pub fn age_ms(&self, now_ms: u64) -> Option<u64> {
        self.updated_ms
            .filter(|&at| at <= now_ms)
            .map(|at| now_ms - at)
    }

    /// How strong the flash is at `now_ms`, from 1.0 as the change arrives
    /// down to 0.0 after [`FLASH_MS`], with its direction.
    pub fn flash_at(&self, now_ms: u64) -> Option<(Trend, f32)> {
        let flash = self.flash?;
        let elapsed = now_ms.checked_sub(flash.start_ms)?;
        (elapsed < FLASH_MS).then(|| (flash.trend, 1.0 - elapsed as f32 / FLASH_MS as f32))
    }

    fn update(&mut self, tick: &Tick, ts: u64, now_ms: u64) {
        if !decimal::is_decimal(&tick.price) {
            return;
        }
        self.changed = stamp();
        if !self.raw_price.is_empty() {
            let moved = Trend::of(decimal::compare(&tick.price, &self.raw_price));
            if moved != Trend::Flat {
                self.flash = Some(Flash {
                    start_ms: now_ms,
                    trend: moved,
                });
            }
        }
        replace(&mut self.raw_price, &tick.price);
        let decimals = self.decimals;
        set_price(&mut self.price, Some(&tick.price), decimals);
        let open = tick.open.as_deref().filter(|o| decimal::is_decimal(o));
        set_price(&mut self.open, open, decimals);
        set_price(&mut self.bid, tick.bid.as_deref(), decimals);
        set_price(&mut self.ask, tick.ask.as_deref(), decimals);
        set_price(&mut self.volume, tick.volume.as_deref(), None);

        let (change, pct) = match open {
            Some(open) => (
                difference(&tick.price, open).map(|d| signed(&fit_decimals(&d, decimals))),
                decimal::change_pct(&tick.price, open),
            ),
            None => (
                None,
                tick.change_pct.clone().filter(|p| decimal::is_decimal(p)),
            ),
        };
        self.trend = match (open, &pct) {
            (Some(open), _) => Trend::of(decimal::compare(&tick.price, open)),
            (None, Some(pct)) => Trend::of(decimal::compare(pct, "0")),
            (None, None) => Trend::Flat,
        };
        self.change = change;
        self.change_pct = pct.map(|p| signed(&p));

        if let Some(value) = Decimal::parse(&tick.price) {
            if self.history.len() == SPARK_LEN {
                self.history.pop_front();
            }
            self.history.push_back(value);
        }
        self.updated_ms = Some(ts);
    }
}

/// A headline on the news line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewsItem {
    /// The headline.
    pub title: String,
    /// When it was stamped.
    pub ts: u64,
}

/// A critical alert on the band.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertItem {
    /// What to tell people.
    pub text: String,
    /// When it was stamped.
    pub ts: u64,
    /// When it leaves the band, ms since the epoch: `ts` plus
    /// `event::ALERT_TTL` (as in the hub's snapshot), or the `expires` of
    /// the rule that fired it (`event::alert_ttl`).
    pub until: u64,
    /// The rule that fired it and the symbol or feed it is about, when a
    /// rule did: a `back` alert of the same rule and key takes it off.
    pub from_rule: Option<(String, String)>,
}

/// One upstream feed's status dot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedStatus {
    /// The feed's configured name.
    pub name: String,
    /// Its last known state; `Connecting` until it says otherwise.
    pub state: FeedState,
    /// Since when it is in that state, when known.
    pub since_ms: Option<u64>,
    /// Since when it has not been up: set when it goes down (or stops being
    /// up), kept through reconnect attempts, cleared when it is up again.
    /// `None` for a feed still making its first connection.
    pub down_since_ms: Option<u64>,
}

impl FeedStatus {
    fn new(name: &str) -> FeedStatus {
        FeedStatus {
            name: clip(name).to_owned(),
            state: FeedState::Connecting,
            since_ms: None,
            down_since_ms: None,
        }
    }

    fn set(&mut self, state: FeedState, ts: u64) {
        match state {
            FeedState::Up => self.down_since_ms = None,
            FeedState::Down => {
                self.down_since_ms.get_or_insert(ts);
            }
            FeedState::Connecting if self.state == FeedState::Up => {
                self.down_since_ms.get_or_insert(ts);
            }
            FeedState::Connecting => {}
        }
        if self.state != state || self.since_ms.is_none() {
            self.since_ms = Some(ts);
        }
        self.state = state;
    }

    /// Down, or retrying after being down.
    fn is_out(&self) -> bool {
        self.state != FeedState::Up && self.down_since_ms.is_some()
    }
}

/// Everything the board shows, updated by events. See the module docs.
#[derive(Clone, Debug)]
pub struct BoardState {
    title: String,
    stale_after_ms: u64,
    page_ms: u64,
    columns: Vec<Column>,
    /// Minutes east of UTC for the clock.
    utc_offset_min: i32,
    /// Rows come from `[[board.rows]]` (fixed) rather than from the symbols
    /// seen.
    fixed_rows: bool,
    rows: Vec<Row>,
    /// Feed names were given up front: status of other feeds (an upstream
    /// Tablo's own feeds) is not shown.
    fixed_feeds: bool,
    feeds: Vec<FeedStatus>,
    /// Latest first.
    news: VecDeque<NewsItem>,
    /// Critical alerts, latest first.
    alerts: VecDeque<AlertItem>,
    clients: usize,
    /// How numbers are written (`[board] locale` and `digits`).
    numbers: Numbers,
    /// The board is mirrored (`[board] direction`, or `auto` from the
    /// locale).
    rtl: bool,
    /// The locale's language, for the column captions.
    language: String,
    /// How the header writes today's date (`[board] calendar`).
    date: LocalDate,
    /// The wall clock's state as the last clock status said; `None` before
    /// any.
    clock: Option<ClockState>,
    /// The wall clock minus the time the board is drawn at (the renderer
    /// measures ages on a monotonic board time): what the header's clock
    /// adds.
    clock_offset_ms: i64,
    /// Stamp of the last change outside the rows (see
    /// [`BoardState::changed`]).
    changed: u64,
    /// The QR code to the web board, when one is shown (shared: a state is
    /// cloned at every resync).
    qr: Option<Arc<Qr>>,
}

impl BoardState {
    /// An empty board for these settings and feeds (their names, in the
    /// order configured). With no `[[board.rows]]`, rows are added as
    /// symbols are seen, up to `MAX_ROWS`. With no feed names, feeds get a
    /// status dot as their status events arrive, up to `MAX_FEEDS`.
    pub fn new<S: AsRef<str>>(config: &BoardConfig, feeds: &[S]) -> BoardState {
        let rows: Vec<Row> = config
            .rows
            .iter()
            .take(MAX_ROWS)
            .map(|r| Row::new(&r.symbol, Some(r)))
            .collect();
        BoardState {
            title: clip(&config.title).to_owned(),
            stale_after_ms: millis(config.stale_after).max(1),
            page_ms: millis(config.page_seconds).max(1_000),
            columns: config.columns.clone(),
            utc_offset_min: 0,
            fixed_rows: !rows.is_empty(),
            rows,
            fixed_feeds: !feeds.is_empty(),
            feeds: feeds
                .iter()
                .take(MAX_FEEDS)
                .map(|f| FeedStatus::new(f.as_ref()))
                .collect(),
            news: VecDeque::with_capacity(MAX_NEWS),
            alerts: VecDeque::with_capacity(MAX_ALERTS),
            clients: 0,
            numbers: Numbers::new(&config.locale, config.digits),
            rtl: is_rtl(&config.locale, config.direction),
            language: language(&config.locale).to_ascii_lowercase(),
            date: LocalDate::new(
                config.calendar,
                Language::of(&language(&config.locale).to_ascii_lowercase()),
            ),
            clock: None,
            clock_offset_ms: 0,
            changed: stamp(),
            qr: match &config.qr {
                BoardQr::Url(url) => Qr::encode(url).map(Arc::new),
                BoardQr::Auto | BoardQr::Off => None,
            },
        }
    }

    /// The QR code the board shows, if any.
    pub fn qr(&self) -> Option<&Arc<Qr>> {
        self.qr.as_ref()
    }

    /// Shows `qr` (or no code); for `[board] qr = "auto"`, whose URL the
    /// renderer finds and follows.
    pub fn set_qr(&mut self, qr: Option<Arc<Qr>>) {
        self.qr = qr;
        self.changed = stamp();
    }

    /// How numbers are written on this board.
    pub fn numbers(&self) -> &Numbers {
        &self.numbers
    }

    /// Whether the board is laid out right to left.
    pub fn rtl(&self) -> bool {
        self.rtl
    }

    /// The locale's language code, lower case (`"fa"`, `"tr"`, `"en"`).
    pub fn language(&self) -> &str {
        &self.language
    }

    /// How the header writes today's date.
    pub fn date(&self) -> &LocalDate {
        &self.date
    }

    /// Takes in one live event that arrived at `now_ms`.
    ///
    /// A tick refreshes its row (flashing it when the price moved); its age
    /// counts from the event's `ts`, but never from the future. News and
    /// critical alerts go to the front of their lists; a status moves its
    /// feed's dot.
    pub fn apply(&mut self, event: &Event, now_ms: u64) {
        let ts = event.ts.min(now_ms);
        match &event.body {
            Body::Tick(tick) => {
                if let Some(row) = self.row_for(&tick.symbol) {
                    row.update(tick, ts, now_ms);
                    if row.restored {
                        row.restored = false;
                        row.changed = stamp();
                    }
                }
                return;
            }
            Body::News(news) => {
                if self.news.len() == MAX_NEWS {
                    self.news.pop_back();
                }
                self.news.push_front(NewsItem {
                    title: one_line(&news.title),
                    ts,
                });
            }
            Body::Alert(alert) if alert.fired.as_ref().is_some_and(|f| f.kind == "back") => {
                // The symbol or feed a stale alert was about is back: that
                // alert is no longer news on the band.
                let back = rule_key(alert);
                self.alerts
                    .retain(|a| a.from_rule.is_none() || a.from_rule != back);
            }
            Body::Alert(alert) if alert.level == Level::Critical => {
                if self.alerts.len() == MAX_ALERTS {
                    self.alerts.pop_back();
                }
                let until = ts.saturating_add(millis(alert_ttl(alert, ts)));
                self.alerts.push_front(AlertItem {
                    text: one_line(&alert.text),
                    ts,
                    until,
                    from_rule: rule_key(alert),
                });
            }
            Body::Alert(_) => return,
            Body::Clock(state) if self.clock == Some(*state) => return,
            Body::Clock(state) => self.clock = Some(*state),
            Body::Status(status) => {
                let known = self.feeds.iter().position(|f| f.name == status.feed);
                let index = match known {
                    Some(i) => i,
                    None if !self.fixed_feeds && self.feeds.len() < MAX_FEEDS => {
                        self.feeds.push(FeedStatus::new(&status.feed));
                        self.feeds.len() - 1
                    }
                    None => return,
                };
                self.feeds[index].set(status.state, ts);
            }
        }
        self.changed = stamp();
    }

    /// Takes in one event of the journal's last-known state at start-up.
    ///
    /// A tick fills its row but marks it restored: drawn as stale (with its
    /// age from the event's `ts`) until a live tick arrives, and without a
    /// flash. News and alerts are taken as they are (an alert older than
    /// its time is not shown). Statuses are ignored: they
    /// describe connections of the previous run.
    pub fn restore(&mut self, event: &Event) {
        match &event.body {
            Body::Tick(tick) => {
                if let Some(row) = self.row_for(&tick.symbol) {
                    row.update(tick, event.ts, event.ts);
                    row.flash = None;
                    row.restored = true;
                    row.changed = stamp();
                }
            }
            Body::Status(_) | Body::Clock(_) => {}
            Body::News(_) | Body::Alert(_) => self.apply(event, event.ts),
        }
    }

    /// Marks every row that has a price as restored (stale until a fresh
    /// tick), for a state rebuilt by other means than [`Self::restore`].
    pub fn mark_restored(&mut self) {
        for row in &mut self.rows {
            if row.updated_ms.is_some() {
                row.restored = true;
                row.flash = None;
                row.changed = stamp();
            }
        }
    }

    /// A stamp that changes whenever something outside the rows that the
    /// board draws changes by an event (news, alerts, feed status, the
    /// clock's state, rows added) or by [`Self::set_utc_offset_minutes`].
    /// The client count and the clock's offset are not in it: they change
    /// only the header, which `board::damage` checks by itself.
    pub fn changed(&self) -> u64 {
        self.changed
    }

    /// Sets how many clients are connected, for the header.
    pub fn set_clients(&mut self, clients: usize) {
        self.clients = clients;
    }

    /// Sets the clock's offset from UTC in minutes east (e.g. 210 for
    /// Tehran, -300 for New York in winter). The board never looks up the
    /// time zone itself. Default 0: UTC.
    pub fn set_utc_offset_minutes(&mut self, minutes: i32) {
        let minutes = minutes.clamp(-24 * 60, 24 * 60);
        if minutes != self.utc_offset_min {
            self.utc_offset_min = minutes;
            self.changed = stamp();
        }
    }

    /// The row of `symbol`, added when rows follow the symbols seen and
    /// there is room.
    fn row_for(&mut self, symbol: &str) -> Option<&mut Row> {
        let index = match self.rows.iter().position(|r| r.symbol == symbol) {
            Some(i) => i,
            None if !self.fixed_rows && self.rows.len() < MAX_ROWS && !symbol.is_empty() => {
                self.changed = stamp();
                self.rows.push(Row::new(symbol, None));
                self.rows.len() - 1
            }
            None => return None,
        };
        self.rows.get_mut(index)
    }

    /// The header title.
    pub fn title(&self) -> &str {
        &self.title
    }

    /// The rows, in board order.
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// What each row shows.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// One status per feed, in the order configured (or seen).
    pub fn feeds(&self) -> &[FeedStatus] {
        &self.feeds
    }

    /// Recent headlines, latest first.
    pub fn news(&self) -> impl ExactSizeIterator<Item = &NewsItem> + Clone {
        self.news.iter()
    }

    /// Connected clients.
    pub fn clients(&self) -> usize {
        self.clients
    }

    /// A row with no update for this long is stale.
    pub fn stale_after_ms(&self) -> u64 {
        self.stale_after_ms
    }

    /// How long each page of rows is shown.
    pub fn page_ms(&self) -> u64 {
        self.page_ms
    }

    /// The clock's offset from UTC, minutes east.
    pub fn utc_offset_minutes(&self) -> i32 {
        self.utc_offset_min
    }

    /// Sets how far the wall clock is from the time the board is drawn at:
    /// the header shows `now_ms` plus this.
    pub fn set_clock_offset_ms(&mut self, offset_ms: i64) {
        self.clock_offset_ms = offset_ms;
    }

    /// See [`Self::set_clock_offset_ms`].
    pub fn clock_offset_ms(&self) -> i64 {
        self.clock_offset_ms
    }

    /// Whether the wall clock is known not to be set: the header then says
    /// so instead of showing a time (docs/board.md).
    pub fn clock_not_set(&self) -> bool {
        self.clock == Some(ClockState::Unsynchronized)
    }

    /// Critical alerts still shown at `now_ms`, latest first.
    pub fn critical_alerts(&self, now_ms: u64) -> impl Iterator<Item = &AlertItem> {
        self.alerts.iter().filter(move |a| now_ms < a.until)
    }

    /// When every feed is down (or retrying after being down): since when,
    /// that is when the last of them went down. `None` while any feed is up
    /// or still making its first connection, and when there are no feeds.
    pub fn offline_since(&self) -> Option<u64> {
        if self.feeds.is_empty() || !self.feeds.iter().all(FeedStatus::is_out) {
            return None;
        }
        self.feeds.iter().filter_map(|f| f.down_since_ms).max()
    }

    /// Which page of `pages` is shown at `now_ms`.
    pub fn page_at(&self, now_ms: u64, pages: usize) -> usize {
        if pages <= 1 {
            return 0;
        }
        ((now_ms / self.page_ms) % pages as u64) as usize
    }

    /// Whether something moves at `now_ms` on its own: a flash is fading or
    /// the news line scrolls. While this is true the renderer draws at its
    /// frame-rate cap; otherwise it can sleep until [`Self::next_change_ms`].
    pub fn animating(&self, now_ms: u64) -> bool {
        self.scrolling() || self.flashing(now_ms)
    }

    /// Whether a row's flash is fading at `now_ms`.
    pub fn flashing(&self, now_ms: u64) -> bool {
        self.rows.iter().any(|r| r.flash_at(now_ms).is_some())
    }

    /// Whether the news line scrolls (there is news). When it is the only
    /// thing moving, `board::draw::draw_news` redraws just that strip.
    pub fn scrolling(&self) -> bool {
        !self.news.is_empty()
    }

    /// The earliest time after `now_ms` at which a frame drawn now would be
    /// out of date with no new event: the clock's next second, the end of a
    /// flash, a row turning stale or its age label changing, the next page,
    /// an alert leaving the band. Never more than a second ahead.
    pub fn next_change_ms(&self, now_ms: u64) -> u64 {
        self.next_rows_change_ms(now_ms).min(next_second(now_ms))
    }

    /// Like [`Self::next_change_ms`] without the clock: the earliest time
    /// after `now_ms` at which something below the header's clock changes
    /// on its own (or `u64::MAX`). Until then, only the header needs
    /// redrawing when the second turns.
    pub fn next_rows_change_ms(&self, now_ms: u64) -> u64 {
        let mut next = u64::MAX;
        let mut consider = |at: u64| {
            if at > now_ms && at < next {
                next = at;
            }
        };
        consider((now_ms / self.page_ms + 1) * self.page_ms);
        for row in &self.rows {
            if let Some(flash) = row.flash {
                consider(flash.start_ms.saturating_add(FLASH_MS));
            }
            if let Some(at) = row.updated_ms {
                consider(at.saturating_add(self.stale_after_ms));
                if row.is_stale(now_ms, self.stale_after_ms) {
                    let age = now_ms.saturating_sub(at);
                    let unit = age_unit_ms(age);
                    consider(at.saturating_add((age / unit + 1) * unit));
                }
            }
        }
        for alert in &self.alerts {
            consider(alert.until);
        }
        next
    }
}

/// The start of the second after `now_ms`.
fn next_second(now_ms: u64) -> u64 {
    (now_ms / 1_000 + 1) * 1_000
}

/// The unit an age is shown in: seconds under a minute, minutes under an
/// hour, hours under two days, then days.
pub fn age_unit_ms(age_ms: u64) -> u64 {
    const S: u64 = 1_000;
    match age_ms {
        a if a < 60 * S => S,
        a if a < 3_600 * S => 60 * S,
        a if a < 48 * 3_600 * S => 3_600 * S,
        _ => 86_400 * S,
    }
}

/// An age as the board shows it: `"45s"`, `"5m"`, `"2h"`, `"3d"`.
pub fn age_label(age_ms: u64) -> (u64, char) {
    let unit = age_unit_ms(age_ms);
    let suffix = match unit {
        1_000 => 's',
        60_000 => 'm',
        3_600_000 => 'h',
        _ => 'd',
    };
    (age_ms / unit, suffix)
}

/// The rule that fired `alert` and the symbol or feed it is about.
fn rule_key(alert: &Alert) -> Option<(String, String)> {
    let fired = alert.fired.as_deref()?;
    let key = fired.symbol.as_ref().or(fired.feed.as_ref())?;
    Some((fired.rule.clone(), key.clone()))
}

/// A price string with exactly `decimals` decimals, cut or padded as text
/// (never rounded through floating point); unchanged when `decimals` is
/// `None` or `s` is not a decimal. A negative value cut to zero loses its
/// sign (`-0.001` at 2 decimals is `0.00`).
pub fn fit_decimals(s: &str, decimals: Option<u8>) -> String {
    let Some(decimals) = decimals.map(usize::from) else {
        return s.to_owned();
    };
    if !decimal::is_decimal(s) {
        return s.to_owned();
    }
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let mut out = String::with_capacity(int.len() + 1 + decimals);
    out.push_str(int);
    if decimals > 0 {
        out.push('.');
        let kept = &frac[..frac.len().min(decimals)];
        out.push_str(kept);
        out.extend(std::iter::repeat_n('0', decimals - kept.len()));
    }
    if out.starts_with('-') && out.bytes().all(|b| matches!(b, b'-' | b'0' | b'.')) {
        out.remove(0);
    }
    out
}

/// `price − open` as a decimal string at the larger scale; `None` when
/// either is not a decimal or on overflow.
fn difference(price: &str, open: &str) -> Option<String> {
    let open = Decimal::parse(open)?;
    let negated = Decimal::new(open.mantissa.checked_neg()?, open.scale);
    Some(Decimal::parse(price)?.checked_add(negated)?.to_string())
}

/// `s` with a `+` in front when it is above zero.
fn signed(s: &str) -> String {
    if decimal::compare(s, "0") == Some(Ordering::Greater) {
        format!("+{s}")
    } else {
        s.to_owned()
    }
}

/// Sets a shown price from a feed's field, reusing the string's buffer;
/// a missing or non-decimal field clears it.
fn set_price(slot: &mut Option<String>, value: Option<&str>, decimals: Option<u8>) {
    match value.filter(|v| decimal::is_decimal(v)) {
        None => *slot = None,
        Some(v) if decimals.is_none() => match slot {
            Some(s) => replace(s, v),
            None => *slot = Some(v.to_owned()),
        },
        Some(v) => *slot = Some(fit_decimals(v, decimals)),
    }
}

fn replace(s: &mut String, with: &str) {
    s.clear();
    s.push_str(with);
}

/// At most [`MAX_TEXT`] bytes of `s`, cut at a character boundary.
fn clip(s: &str) -> &str {
    if s.len() <= MAX_TEXT {
        return s;
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `s` clipped, with line breaks and other control characters as spaces.
fn one_line(s: &str) -> String {
    clip(s)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::fmt::Write;

    use super::*;
    use crate::board::testing::{board_config, status, tick, tick_with_open};
    use crate::event::{Alert, News};

    const T0: u64 = 1_700_000_000_000;

    /// One line per row: `label price change pct trend [stale age] [flash]`.
    fn summary(state: &BoardState, now_ms: u64) -> String {
        let mut out = String::new();
        for row in state.rows() {
            let dash = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
            write!(
                out,
                "{} {} {} {} {:?}",
                row.label,
                dash(&row.price),
                dash(&row.change),
                dash(&row.change_pct),
                row.trend
            )
            .unwrap();
            if row.is_stale(now_ms, state.stale_after_ms()) {
                let (n, unit) = age_label(row.age_ms(now_ms).unwrap_or(0));
                write!(out, " stale {n}{unit}").unwrap();
            }
            if let Some((trend, _)) = row.flash_at(now_ms) {
                write!(out, " flash {trend:?}").unwrap();
            }
            out.push('\n');
        }
        out
    }

    /// Applies one event that arrives when it is stamped.
    fn send(state: &mut BoardState, at: u64, body: Body) {
        state.apply(
            &Event {
                seq: 0,
                ts: at,
                body,
            },
            at,
        );
    }

    /// Applies `events` (each with its arrival time) to a board with these
    /// `rows` (`symbol[:label[:decimals]]`) and compares the rows at `now_ms`.
    #[track_caller]
    fn check(rows: &[&str], events: &[(u64, Body)], now_ms: u64, expected: &str) {
        let mut state = BoardState::new(&board_config(rows), &["feed"]);
        for (seq, (at, body)) in events.iter().enumerate() {
            let event = Event {
                seq: seq as u64 + 1,
                ts: *at,
                body: body.clone(),
            };
            state.apply(&event, *at);
        }
        assert_eq!(summary(&state, now_ms), expected.trim_start());
    }

    #[test]
    fn ticks_fill_rows_in_first_seen_order() {
        check(
            &[],
            &[
                (T0, tick_with_open("ETHUSDT", "3500.10", "3400.00")),
                (T0, tick_with_open("BTCUSDT", "67012.50", "66000.00")),
                (T0 + 1, tick_with_open("ETHUSDT", "3400.00", "3400.00")),
            ],
            T0 + 10,
            "
ETHUSDT 3400.00 0.00 0.00 Flat flash Down
BTCUSDT 67012.50 +1012.50 +1.53 Up
",
        );
    }

    #[test]
    fn configured_rows_keep_their_order_label_and_decimals() {
        check(
            &["XAUUSD:Gold:1", "EURUSD:EUR/USD:6", "GBPUSD"],
            &[
                (T0, tick_with_open("EURUSD", "1.08345", "1.08500")),
                (T0, tick_with_open("XAUUSD", "2351.99", "2350.00")),
                (T0, tick("DOGEUSDT", "0.15")),
            ],
            T0,
            "
Gold 2351.9 +1.9 +0.08 Up
EUR/USD 1.083450 -0.001550 -0.14 Down
GBPUSD - - - Flat
",
        );
    }

    #[test]
    fn change_pct_from_the_feed_when_there_is_no_open() {
        let mut body = tick("BTCUSDT", "100.5");
        if let Body::Tick(t) = &mut body {
            t.change_pct = Some("-2.5".into());
        }
        check(
            &[],
            &[(T0, body)],
            T0,
            "
BTCUSDT 100.5 - -2.5 Down
",
        );
    }

    #[test]
    fn a_price_that_is_not_a_decimal_changes_nothing() {
        check(
            &[],
            &[
                (T0, tick_with_open("BTCUSDT", "10.0", "10.0")),
                (T0 + 5, tick("BTCUSDT", "1e5")),
            ],
            T0 + 5,
            "
BTCUSDT 10.0 0.0 0.00 Flat
",
        );
    }

    #[test]
    fn flash_follows_the_move_and_ends() {
        let events = [
            (T0, tick("A", "1.00")),
            (T0 + 100, tick("A", "1.01")),
            (T0 + 200, tick("B", "5")),
            (T0 + 300, tick("B", "4")),
            (T0 + 400, tick("B", "4.0")),
        ];
        check(
            &[],
            &events,
            T0 + 500,
            "\nA 1.01 - - Flat flash Up\nB 4.0 - - Flat flash Down\n",
        );
        check(
            &[],
            &events,
            T0 + 300 + FLASH_MS,
            "\nA 1.01 - - Flat\nB 4.0 - - Flat\n",
        );
    }

    #[test]
    fn rows_go_stale_and_show_their_age() {
        let events = [(T0, tick("A", "1")), (T0 + 50_000, tick("B", "2"))];
        check(&[], &events, T0 + 59_999, "\nA 1 - - Flat\nB 2 - - Flat\n");
        check(
            &[],
            &events,
            T0 + 60_000,
            "\nA 1 - - Flat stale 1m\nB 2 - - Flat\n",
        );
        check(
            &[],
            &events,
            T0 + 2 * 3_600_000 + 1,
            "\nA 1 - - Flat stale 2h\nB 2 - - Flat stale 1h\n",
        );
    }

    #[test]
    fn rows_seen_are_bounded() {
        let mut state = BoardState::new(&board_config(&[]), &["feed"]);
        for n in 0..MAX_ROWS + 10 {
            send(&mut state, T0, tick(&format!("S{n}"), "1"));
        }
        assert_eq!(state.rows().len(), MAX_ROWS);
        assert_eq!(
            state.rows().last().unwrap().symbol,
            format!("S{}", MAX_ROWS - 1)
        );
    }

    #[test]
    fn restored_rows_are_stale_until_a_fresh_tick() {
        let mut state = BoardState::new(&board_config(&[]), &["feed"]);
        let old = Event {
            seq: 1,
            ts: T0 - 300_000,
            body: tick("BTCUSDT", "1.5"),
        };
        state.restore(&old);
        state.restore(&Event {
            seq: 2,
            ts: T0 - 1_000,
            body: tick("ETHUSDT", "2.5"),
        });
        assert_eq!(
            summary(&state, T0),
            "BTCUSDT 1.5 - - Flat stale 5m\nETHUSDT 2.5 - - Flat stale 1s\n"
        );
        send(&mut state, T0, tick("ETHUSDT", "2.6"));
        assert_eq!(
            summary(&state, T0),
            "BTCUSDT 1.5 - - Flat stale 5m\nETHUSDT 2.6 - - Flat flash Up\n"
        );
    }

    #[test]
    fn offline_when_every_feed_is_down_since_the_last_went_down() {
        let mut state = BoardState::new(&board_config(&[]), &["a", "b"]);
        let mut at = T0;
        let mut set = |state: &mut BoardState, feed: &str, s: FeedState| {
            at += 1_000;
            send(state, at, status(feed, s));
            at
        };
        assert_eq!(state.offline_since(), None, "first connection");
        set(&mut state, "a", FeedState::Connecting);
        set(&mut state, "a", FeedState::Up);
        let b_down = set(&mut state, "b", FeedState::Down);
        assert_eq!(state.offline_since(), None, "a is up");
        let a_down = set(&mut state, "a", FeedState::Down);
        assert_eq!(state.offline_since(), Some(a_down.max(b_down)));
        set(&mut state, "a", FeedState::Connecting);
        set(&mut state, "b", FeedState::Connecting);
        assert_eq!(state.offline_since(), Some(a_down), "retrying is still out");
        set(&mut state, "b", FeedState::Up);
        assert_eq!(state.offline_since(), None);
        // Feeds not named up front (an upstream Tablo's) get no dot.
        set(&mut state, "elsewhere", FeedState::Down);
        assert_eq!(state.feeds().len(), 2);
    }

    #[test]
    fn a_rules_alert_stays_until_its_expiry_and_a_back_alert_takes_it_off() {
        use crate::event::Fired;
        let mut state = BoardState::new(&board_config(&[]), &["feed"]);
        let alert = |kind: &str, level: Level, key: &str, expires: u64| {
            Body::Alert(Alert {
                level,
                text: format!("{key} {kind}"),
                source: "rules".into(),
                fired: Some(Box::new(Fired {
                    rule: "quiet".into(),
                    kind: kind.into(),
                    feed: Some(key.into()),
                    expires: Some(expires),
                    ..Fired::default()
                })),
            })
        };
        send(
            &mut state,
            T0,
            alert("stale", Level::Critical, "gold", T0 + 300_000),
        );
        send(
            &mut state,
            T0,
            alert("stale", Level::Critical, "fx", T0 + 300_000),
        );
        assert_eq!(state.critical_alerts(T0 + 299_999).count(), 2);
        assert_eq!(state.critical_alerts(T0 + 300_000).count(), 0, "expired");
        send(
            &mut state,
            T0 + 10,
            alert("back", Level::Info, "gold", T0 + 3_600_000),
        );
        let shown: Vec<&str> = state
            .critical_alerts(T0 + 20)
            .map(|a| a.text.as_str())
            .collect();
        assert_eq!(shown, ["fx stale"]);
    }

    #[test]
    fn news_and_critical_alerts_latest_first_bounded_and_expiring() {
        let mut state = BoardState::new(&board_config(&[]), &["feed"]);
        for n in 0..MAX_NEWS + 2 {
            let body = Body::News(News {
                title: format!("headline\n{n}"),
                url: None,
                source: "x".into(),
            });
            send(&mut state, T0, body);
        }
        let titles: Vec<&str> = state.news().map(|n| n.title.as_str()).collect();
        assert_eq!(titles.len(), MAX_NEWS);
        assert_eq!(titles[0], format!("headline {}", MAX_NEWS + 1));
        for (level, text) in [(Level::Critical, "closed"), (Level::Warning, "slow")] {
            let body = Body::Alert(Alert {
                level,
                text: text.into(),
                source: "publish".into(),
                fired: None,
            });
            send(&mut state, T0, body);
        }
        let shown: Vec<&str> = state.critical_alerts(T0).map(|a| a.text.as_str()).collect();
        assert_eq!(shown, ["closed"]);
        let gone = T0 + millis(crate::event::ALERT_TTL);
        assert_eq!(state.critical_alerts(gone).count(), 0);
        assert_eq!(state.next_change_ms(gone - 10), gone);
    }

    #[test]
    fn next_change_is_the_next_second_a_flash_end_or_a_stale_turn() {
        let mut state = BoardState::new(&board_config(&[]), &["feed"]);
        assert!(!state.animating(T0));
        assert_eq!(state.next_change_ms(T0 + 250), T0 + 1_000);
        send(&mut state, T0, tick("A", "1"));
        send(&mut state, T0 + 10, tick("A", "2"));
        assert!(state.animating(T0 + 10));
        assert_eq!(state.next_change_ms(T0 + 10), T0 + 10 + FLASH_MS);
        assert!(!state.animating(T0 + 10 + FLASH_MS));
        let stale_at = T0 + 10 + state.stale_after_ms();
        assert_eq!(state.next_change_ms(stale_at - 5), stale_at);
        // A stale row's age label changes with the minute; the clock every
        // second.
        assert_eq!(state.next_change_ms(stale_at + 200), stale_at + 1_000 - 10);
        // News scrolls: the board animates for as long as there is news.
        let news = Body::News(News {
            title: "x".into(),
            url: None,
            source: "x".into(),
        });
        send(&mut state, T0, news);
        assert!(state.scrolling() && !state.flashing(stale_at));
        assert!(state.animating(stale_at));
    }

    #[test]
    fn decimals_are_cut_or_padded_as_text() {
        for (input, decimals, expected) in [
            ("1.23456", Some(2), "1.23"),
            ("1.2", Some(4), "1.2000"),
            ("7", Some(2), "7.00"),
            ("7.99", Some(0), "7"),
            ("-0.004", Some(2), "0.00"),
            ("-1.004", Some(2), "-1.00"),
            ("12.5", None, "12.5"),
            ("abc", Some(2), "abc"),
        ] {
            assert_eq!(
                fit_decimals(input, decimals),
                expected,
                "{input} {decimals:?}"
            );
        }
    }

    #[test]
    fn ages_read_like_a_person_would_say_them() {
        for (ms, expected) in [
            (0, (0, 's')),
            (59_999, (59, 's')),
            (60_000, (1, 'm')),
            (3_599_999, (59, 'm')),
            (3_600_000, (1, 'h')),
            (47 * 3_600_000, (47, 'h')),
            (49 * 3_600_000, (2, 'd')),
        ] {
            assert_eq!(age_label(ms), expected, "{ms}");
        }
    }

    #[test]
    fn a_restored_row_stamped_after_the_clock_has_no_age_but_stays_stale() {
        let mut state = BoardState::new(&board_config(&["BTC"]), &["feed"]);
        let in_a_year = 1_780_000_000_000 + 365 * 86_400_000;
        state.restore(&Event {
            seq: 1,
            ts: in_a_year,
            body: tick("BTC", "1"),
        });
        state.mark_restored();
        // The clock is a year behind the journal: no false "0s ago".
        let now = 1_780_000_000_000;
        let row = &state.rows[0];
        assert_eq!(row.age_ms(now), None);
        assert!(row.is_stale(now, 60_000));
        assert_eq!(row.age_ms(in_a_year + 5_000), Some(5_000));
        // And the header says the clock is not set once it is known.
        assert!(!state.clock_not_set());
        send(&mut state, now, Body::Clock(ClockState::Unsynchronized));
        assert!(state.clock_not_set());
        send(&mut state, now, Body::Clock(ClockState::Synchronized));
        assert!(!state.clock_not_set());
    }
}
