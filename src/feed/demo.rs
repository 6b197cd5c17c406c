//! The built-in simulated market: the `demo` feed, no network needed.
//!
//! Sixteen symbols (crypto, forex and metals, with realistic starting prices
//! and each its own number of decimals) on a random walk, plus a made-up
//! headline now and then, so a first run shows a live board and a live relay
//! with no setup (docs/config.md §9, §11).
//!
//! [`Demo`] is pure and deterministic: the same seed and the same calls give
//! the same events. It does no I/O and reads no clock (the runner passes
//! `now_ms` and calls [`Demo::step`] every [`DEMO_STEP`]), and it never
//! touches floating point: prices are integer mantissas printed as decimal
//! strings, and never reach zero.

use std::time::Duration;

use fastrand::Rng;

use crate::decimal::Decimal;
use crate::event::{Body, Incoming, News, Tick};

/// How often the runner calls [`Demo::step`]. Four steps a second, each
/// moving one to three symbols, gives about eight ticks a second: lively
/// enough that a board visibly moves, few enough to cost nothing on a Pi and
/// to keep the journal small.
pub const DEMO_STEP: Duration = Duration::from_millis(250);

/// Fewest steps between two headlines: 20 s.
const NEWS_MIN_STEPS: u32 = steps(20_000);

/// Most steps between two headlines: 40 s.
const NEWS_MAX_STEPS: u32 = steps(40_000);

/// How far from the open a price wanders before it is pulled back, in
/// percent. The walk stays within a few times this, like a quiet trading day.
const BAND_PCT: i128 = 3;

/// How many `DEMO_STEP`s make `ms` milliseconds.
const fn steps(ms: u64) -> u32 {
    (ms as u128 / DEMO_STEP.as_millis()) as u32
}

/// One simulated instrument. Amounts are mantissas at `decimals` (prices) or
/// `volume_decimals` (volume).
struct Instrument {
    symbol: &'static str,
    decimals: u32,
    /// Opening price of the simulated day.
    open: i128,
    /// Largest move of one step, either way.
    step: i128,
    /// Distance from the last price to the bid and to the ask.
    half_spread: i128,
    volume_decimals: u32,
    /// Volume traded before the first state.
    volume: i128,
    /// Largest volume added by one tick.
    volume_step: i128,
}

/// Shorthand for the table below: one line per instrument reads better than
/// sixteen struct literals.
#[allow(
    clippy::too_many_arguments,
    reason = "a positional row of the market table"
)]
const fn instrument(
    symbol: &'static str,
    decimals: u32,
    open: i128,
    step: i128,
    half_spread: i128,
    volume_decimals: u32,
    volume: i128,
    volume_step: i128,
) -> Instrument {
    Instrument {
        symbol,
        decimals,
        open,
        step,
        half_spread,
        volume_decimals,
        volume,
        volume_step,
    }
}

/// The simulated market: steps are about 2 basis points for crypto, half a
/// basis point for forex and one for metals; spreads are an exchange's for
/// crypto and a dealer's for forex and metals.
const MARKET: [Instrument; 16] = [
    instrument("BTCUSDT", 2, 6_700_000, 1_340, 1, 3, 12_345_678, 2_000),
    instrument("ETHUSDT", 2, 350_000, 70, 1, 4, 2_100_000_000, 50_000),
    instrument("SOLUSDT", 2, 15_000, 3, 1, 2, 180_000_000, 5_000),
    instrument("BNBUSDT", 2, 58_000, 12, 1, 3, 95_000_000, 5_000),
    instrument("XRPUSDT", 4, 5_200, 1, 1, 1, 1_500_000_000, 50_000),
    instrument("ADAUSDT", 4, 4_500, 1, 1, 1, 900_000_000, 30_000),
    instrument("DOGEUSDT", 5, 15_000, 3, 1, 0, 800_000_000, 200_000),
    instrument("LTCUSDT", 2, 8_000, 2, 1, 3, 300_000_000, 10_000),
    instrument("EURUSD", 5, 108_500, 5, 5, 0, 52_000, 20),
    instrument("GBPUSD", 5, 127_000, 6, 8, 0, 31_000, 15),
    instrument("USDJPY", 3, 151_500, 8, 8, 0, 47_000, 20),
    instrument("USDCHF", 5, 90_000, 5, 8, 0, 12_000, 8),
    instrument("AUDUSD", 5, 66_000, 4, 6, 0, 18_000, 10),
    instrument("USDCAD", 5, 136_000, 7, 8, 0, 16_000, 10),
    instrument("XAUUSD", 2, 235_000, 25, 20, 0, 21_000, 10),
    instrument("XAGUSD", 3, 28_000, 3, 15, 0, 9_000, 6),
];

/// Made-up headlines about made-up places and companies.
const HEADLINES: &[&str] = &[
    "Bank of Tabloland holds its imaginary policy rate at 3.25%",
    "Examplia's finance minister promises a rounder currency by spring",
    "Acme Nuggets reports record ounces from its cartoon gold mine",
    "Placeholdia central bank buys 12 tonnes of pretend gold",
    "Fictional exchange Lorem lists a coin named after a houseplant",
    "Demo Republic's inflation falls to 2.1% on cheaper virtual bread",
    "Analysts at Imaginary & Sons see silver shining through Q3",
    "Tabloland dollar slips as traders await a speech that never happens",
    "Sample Corp's quarterly profit beats a forecast nobody made",
    "Storm in the Gulf of Examplia lifts make-believe oil prices",
    "Ipsum Bank opens 40 branches in a city that does not exist",
    "Placeholder Airlines hedges its fuel with simulated futures",
    "Crypto fund Foo Capital doubles its stake in test tokens",
    "Trade surplus of the Isle of Dummy widens to a fictional record",
    "Markets calm as the Tabloland parliament agrees on lunch",
    "Widget makers' index rises for a third imaginary month",
];

/// The moving state of one instrument.
#[derive(Debug)]
struct Quote {
    /// Last price, a mantissa at the instrument's decimals; always ≥ 1.
    price: i128,
    /// Volume so far, a mantissa at the instrument's volume decimals.
    volume: i128,
}

/// The simulated market: call [`Demo::first_state`] once, then
/// [`Demo::step`] every [`DEMO_STEP`].
#[derive(Debug)]
pub struct Demo {
    /// The feed's name: every event's `source`.
    source: String,
    rng: Rng,
    /// One per entry of `MARKET`, in the same order.
    quotes: Vec<Quote>,
    /// Steps left until the next headline.
    news_in: u32,
    /// Index into `HEADLINES` of the last one sent, so none repeats at once.
    last_headline: Option<usize>,
}

impl Demo {
    /// A market named `source` whose every move follows from `seed`. Prices
    /// start within a percent or two of each instrument's open, so the first
    /// board already shows ups and downs.
    pub fn new(source: &str, seed: u64) -> Self {
        let mut rng = Rng::with_seed(seed);
        let quotes = MARKET
            .iter()
            .map(|m| {
                let half_band = band(m.open) / 2;
                Quote {
                    price: (m.open + rng.i128(-half_band..=half_band)).max(1),
                    volume: m.volume,
                }
            })
            .collect();
        let news_in = rng.u32(NEWS_MIN_STEPS..=NEWS_MAX_STEPS);
        Demo {
            source: source.to_owned(),
            rng,
            quotes,
            news_in,
            last_headline: None,
        }
    }

    /// The opening state: one tick per symbol, stamped `now_ms`.
    pub fn first_state(&mut self, now_ms: u64, out: &mut Vec<Incoming>) {
        for index in 0..MARKET.len() {
            out.push(self.tick(index, now_ms));
        }
    }

    /// One [`DEMO_STEP`] of the market: one to three symbols move (one tick
    /// each), and every 20–40 seconds a headline comes out.
    pub fn step(&mut self, now_ms: u64, out: &mut Vec<Incoming>) {
        let count = self.rng.usize(1..=3);
        let mut picked = [usize::MAX; 3];
        let mut chosen = 0;
        while chosen < count {
            let index = self.rng.usize(..MARKET.len());
            if !picked[..chosen].contains(&index) {
                picked[chosen] = index;
                chosen += 1;
            }
        }
        for &index in &picked[..count] {
            self.walk(index);
            out.push(self.tick(index, now_ms));
        }

        self.news_in = self.news_in.saturating_sub(1);
        if self.news_in == 0 {
            self.news_in = self.rng.u32(NEWS_MIN_STEPS..=NEWS_MAX_STEPS);
            out.push(self.headline(now_ms));
        }
    }

    /// Moves one instrument's price by a random step, more likely towards
    /// the open the further it has wandered, and adds some volume.
    fn walk(&mut self, index: usize) {
        let (Some(m), Some(quote)) = (MARKET.get(index), self.quotes.get_mut(index)) else {
            return;
        };
        let mut delta = self.rng.i128(-m.step..=m.step);
        let drift = quote.price - m.open;
        let band = band(m.open);
        // Pulled back with a probability of up to one half at the band's edge.
        if self.rng.i128(0..2 * band) < drift.abs().min(band) {
            delta = -drift.signum() * delta.abs();
        }
        quote.price = (quote.price + delta).max(1);
        quote.volume += self.rng.i128(0..=m.volume_step);
    }

    /// The current tick of one instrument.
    fn tick(&self, index: usize, now_ms: u64) -> Incoming {
        let (m, quote) = (&MARKET[index], &self.quotes[index]);
        let price = Decimal::new(quote.price, m.decimals);
        let open = Decimal::new(m.open, m.decimals);
        let bid = quote.price - m.half_spread.min(quote.price - 1);
        let ask = quote.price + m.half_spread;
        Incoming {
            ts: now_ms,
            body: Body::Tick(Tick {
                symbol: m.symbol.to_owned(),
                price: price.to_string(),
                open: Some(open.to_string()),
                change_pct: price.change_pct(open).map(|pct| pct.to_string()),
                bid: Some(Decimal::new(bid, m.decimals).to_string()),
                ask: Some(Decimal::new(ask, m.decimals).to_string()),
                volume: Some(Decimal::new(quote.volume, m.volume_decimals).to_string()),
                source: self.source.clone(),
            }),
        }
    }

    /// A headline, never the same as the one before.
    fn headline(&mut self, now_ms: u64) -> Incoming {
        let mut index = self.rng.usize(..HEADLINES.len());
        if Some(index) == self.last_headline {
            index = (index + 1) % HEADLINES.len();
        }
        self.last_headline = Some(index);
        Incoming {
            ts: now_ms,
            body: Body::News(News {
                title: HEADLINES[index].to_owned(),
                url: None,
                source: self.source.clone(),
            }),
        }
    }
}

/// [`BAND_PCT`] of `open`, at least one unit.
fn band(open: i128) -> i128 {
    (open * BAND_PCT / 100).max(1)
}

#[cfg(test)]
mod tests {
    use std::cmp::Ordering;
    use std::collections::HashSet;

    use super::*;
    use crate::decimal;

    /// Every tick is well formed: decimals as the instrument says, prices
    /// positive, bid ≤ price ≤ ask, change computed from price and open.
    #[track_caller]
    fn check_tick(tick: &Tick) {
        let m = MARKET
            .iter()
            .find(|m| m.symbol == tick.symbol)
            .expect("a known symbol");
        let decimals = |s: &str| s.split_once('.').map_or(0, |(_, frac)| frac.len());
        let field = |f: &Option<String>| f.clone().expect("every field is filled");
        let (open, bid, ask) = (field(&tick.open), field(&tick.bid), field(&tick.ask));
        for price in [&tick.price, &open, &bid, &ask] {
            assert!(decimal::is_decimal(price), "{price}");
            assert_eq!(
                decimals(price),
                m.decimals as usize,
                "{price} of {}",
                m.symbol
            );
            assert_eq!(
                decimal::compare(price, "0"),
                Some(Ordering::Greater),
                "{price}"
            );
        }
        assert_ne!(decimal::compare(&bid, &tick.price), Some(Ordering::Greater));
        assert_eq!(decimal::compare(&ask, &tick.price), Some(Ordering::Greater));
        assert_eq!(tick.change_pct, decimal::change_pct(&tick.price, &open));
        let volume = field(&tick.volume);
        assert_eq!(decimals(&volume), m.volume_decimals as usize, "{volume}");
        assert_eq!(tick.source, "demo");
    }

    fn run(seed: u64, steps: usize) -> Vec<Incoming> {
        let mut demo = Demo::new("demo", seed);
        let mut out = Vec::new();
        demo.first_state(0, &mut out);
        for n in 1..=steps {
            demo.step(n as u64 * 250, &mut out);
        }
        out
    }

    #[test]
    fn first_state_has_one_full_tick_per_symbol() {
        let mut out = Vec::new();
        Demo::new("demo", 1).first_state(42, &mut out);
        assert_eq!(out.len(), 16);
        let mut symbols = HashSet::new();
        for event in &out {
            assert_eq!(event.ts, 42);
            let Body::Tick(tick) = &event.body else {
                panic!("not a tick: {event:?}");
            };
            check_tick(tick);
            symbols.insert(tick.symbol.clone());
        }
        assert_eq!(symbols.len(), 16);
        for symbol in ["BTCUSDT", "EURUSD", "USDJPY", "XAUUSD", "XAGUSD"] {
            assert!(symbols.contains(symbol), "{symbol}");
        }
    }

    #[test]
    fn same_seed_same_market_other_seed_other_market() {
        assert_eq!(run(7, 2_000), run(7, 2_000));
        assert_ne!(run(7, 2_000), run(8, 2_000));
    }

    #[test]
    fn each_step_moves_one_to_three_distinct_symbols() {
        let mut demo = Demo::new("demo", 3);
        for n in 0..5_000 {
            let mut out = Vec::new();
            demo.step(n, &mut out);
            let ticks: Vec<&Tick> = out
                .iter()
                .filter_map(|e| match &e.body {
                    Body::Tick(t) => Some(t),
                    _ => None,
                })
                .collect();
            assert!((1..=3).contains(&ticks.len()), "{} ticks", ticks.len());
            let distinct: HashSet<&str> = ticks.iter().map(|t| t.symbol.as_str()).collect();
            assert_eq!(distinct.len(), ticks.len());
            assert!(out.iter().all(|e| e.ts == n));
        }
    }

    #[test]
    fn a_long_run_stays_well_formed_positive_and_near_the_open() {
        // About four simulated hours.
        for event in run(11, 60_000) {
            if let Body::Tick(tick) = &event.body {
                check_tick(tick);
                let pct = tick.change_pct.as_deref().expect("a change");
                assert_eq!(
                    decimal::compare(pct, "-15"),
                    Some(Ordering::Greater),
                    "{pct}"
                );
                assert_eq!(decimal::compare(pct, "15"), Some(Ordering::Less), "{pct}");
            }
        }
    }

    #[test]
    fn a_headline_every_20_to_40_seconds() {
        // One simulated hour: between 90 and 180 headlines.
        let steps = 3_600_000 / DEMO_STEP.as_millis() as usize;
        let news: Vec<News> = run(5, steps)
            .into_iter()
            .filter_map(|e| match e.body {
                Body::News(n) => Some(n),
                _ => None,
            })
            .collect();
        assert!((90..=180).contains(&news.len()), "{} headlines", news.len());
        for pair in news.windows(2) {
            assert_ne!(pair[0].title, pair[1].title);
        }
        for n in &news {
            assert!(HEADLINES.contains(&n.title.as_str()));
            assert_eq!(n.url, None);
            assert_eq!(n.source, "demo");
        }
    }

    #[test]
    fn news_interval_matches_demo_step() {
        assert_eq!(NEWS_MIN_STEPS, 80);
        assert_eq!(NEWS_MAX_STEPS, 160);
    }

    #[test]
    fn a_price_at_one_unit_stays_positive() {
        let mut demo = Demo::new("demo", 9);
        for quote in &mut demo.quotes {
            quote.price = 1;
        }
        let mut out = Vec::new();
        for n in 0..2_000 {
            demo.step(n, &mut out);
        }
        for event in &out {
            if let Body::Tick(tick) = &event.body {
                check_tick(tick);
            }
        }
    }
}
