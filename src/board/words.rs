//! The board's own words in the locale's language: the news label, the
//! client count, pages, ages, the offline notice.
//!
//! Persian, Arabic and Turkish, English otherwise; the column captions are
//! in [`super::layout::caption`]. Numbers in these phrases are written with
//! ASCII digits and go through [`super::numbers::Numbers`] like every other
//! number on the board.
//!
//! This module never allocates: phrases are written into any
//! [`fmt::Write`].

use std::fmt;

/// The phrases of one language.
#[derive(Debug)]
pub struct Words {
    /// The news line's label.
    pub news: &'static str,
    /// One client connected, after the count.
    pub client: &'static str,
    /// Several clients connected, after the count.
    pub clients: &'static str,
    /// Before `1/2`.
    pub page: &'static str,
    /// Under the label of a row with no price yet.
    pub no_data: &'static str,
    /// Before the time the feeds went down.
    pub offline_since: &'static str,
    /// The board before any price.
    pub waiting: &'static str,
    /// After the count of further alerts.
    pub more: &'static str,
    /// In the header instead of the time, while the wall clock is not set.
    pub clock_not_set: &'static str,
    /// Under the label of a stale row whose update is stamped after the
    /// clock's time, instead of its age.
    pub age_unknown: &'static str,
    /// Seconds, minutes, hours, days.
    units: [&'static str; 4],
    /// How an age reads.
    age: Age,
}

/// Where the number, the unit and the word for "ago" go.
#[derive(Debug)]
enum Age {
    /// `5m ago`.
    English,
    /// `۵ دقیقه پیش`, `5 dk önce`: number, unit, then a word.
    After(&'static str),
    /// `منذ ٥ دقائق`: a word, number, unit (plural for 3 to 10).
    Arabic,
}

/// English, the default.
pub const EN: Words = Words {
    news: "NEWS",
    client: "client",
    clients: "clients",
    page: "page",
    no_data: "no data yet",
    offline_since: "OFFLINE since ",
    waiting: "Waiting for prices…",
    more: "more",
    clock_not_set: "clock not set",
    age_unknown: "age unknown",
    units: ["s", "m", "h", "d"],
    age: Age::English,
};

/// Persian.
pub const FA: Words = Words {
    news: "اخبار",
    client: "کاربر",
    clients: "کاربر",
    page: "صفحهٔ",
    no_data: "هنوز نرخی نرسیده",
    offline_since: "قطع از ",
    waiting: "در انتظار نرخ‌ها…",
    more: "مورد دیگر",
    clock_not_set: "ساعت تنظیم نشده",
    age_unknown: "زمان نامعلوم",
    units: ["ثانیه", "دقیقه", "ساعت", "روز"],
    age: Age::After("پیش"),
};

/// Arabic.
pub const AR: Words = Words {
    news: "أخبار",
    client: "متصل",
    clients: "متصلين",
    page: "صفحة",
    no_data: "لا أسعار بعد",
    offline_since: "انقطاع منذ ",
    waiting: "بانتظار الأسعار…",
    more: "أخرى",
    clock_not_set: "الساعة غير مضبوطة",
    age_unknown: "الوقت غير معروف",
    units: ["ثانية", "دقيقة", "ساعة", "يوم"],
    age: Age::Arabic,
};

/// Turkish.
pub const TR: Words = Words {
    news: "HABER",
    client: "istemci",
    clients: "istemci",
    page: "sayfa",
    no_data: "henüz veri yok",
    offline_since: "ÇEVRİMDIŞI · ",
    waiting: "Fiyatlar bekleniyor…",
    more: "daha",
    clock_not_set: "saat ayarlı değil",
    age_unknown: "zamanı bilinmiyor",
    units: ["sn", "dk", "sa", "gün"],
    age: Age::After("önce"),
};

/// The words of a language code (`"fa"`); English for any other.
pub fn words(language: &str) -> &'static Words {
    match language {
        "fa" => &FA,
        "ar" => &AR,
        "tr" => &TR,
        _ => &EN,
    }
}

impl Words {
    /// Writes an age of `n` units (`'s'`, `'m'`, `'h'`, `'d'`, as
    /// [`super::state::age_label`] gives them), with ASCII digits.
    pub fn age(&self, out: &mut impl fmt::Write, n: u64, unit: char) -> fmt::Result {
        let i = match unit {
            's' => 0,
            'm' => 1,
            'h' => 2,
            _ => 3,
        };
        match self.age {
            Age::English => write!(out, "{n}{} ago", self.units[i]),
            Age::After(ago) => write!(out, "{n} {} {ago}", self.units[i]),
            Age::Arabic => {
                // Counted nouns take the plural from 3 to 10.
                const PLURAL: [&str; 4] = ["ثوانٍ", "دقائق", "ساعات", "أيام"];
                let unit = if (3..=10).contains(&n) {
                    PLURAL[i]
                } else {
                    self.units[i]
                };
                write!(out, "منذ {n} {unit}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(language: &str, n: u64, unit: char, expected: &str) {
        let mut out = String::new();
        words(language).age(&mut out, n, unit).unwrap();
        assert_eq!(out, expected);
    }

    #[test]
    fn ages_read_in_each_language() {
        check("en", 5, 'm', "5m ago");
        check("fa", 5, 'm', "5 دقیقه پیش");
        check("tr", 2, 'h', "2 sa önce");
        check("ar", 5, 'm', "منذ 5 دقائق");
        check("ar", 45, 's', "منذ 45 ثانية");
        check("xx", 3, 'd', "3d ago");
    }
}
