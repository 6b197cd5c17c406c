//! The board's own words in the locale's language: the news label, the
//! client count, pages, ages, the offline notice.
//!
//! Persian, Arabic and Turkish, English otherwise; the column captions are
//! in [`super::layout::caption`]. Numbers in these phrases are written with
//! ASCII digits and go through [`super::numbers::Numbers`] like every other
//! number on the board.
//!
//! An age takes the plural form CLDR gives its count in the language
//! ([`super::plural`]): Arabic says "منذ دقيقة" for one minute, the dual
//! "منذ دقيقتين" for two (no number), "منذ ٣ دقائق" for 3 to 10, "منذ ١١
//! دقيقة" from 11; Persian and Turkish keep the noun singular after a
//! number, as their grammar does ("۵ دقیقه پیش", "5 dakika önce"). The
//! header's client count takes its plural forms too (Arabic "متصلان" for
//! two, "1 client" against "2 clients" in English).
//!
//! This module never allocates: phrases are written into any
//! [`fmt::Write`].

use std::fmt;

use super::plural::{PluralCategory, category};

/// The languages the board has its own words (and month names) for; any
/// other locale reads English.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Language {
    /// `en`, and every language without words of its own.
    English,
    /// `fa`.
    Persian,
    /// `ar`.
    Arabic,
    /// `tr`.
    Turkish,
}

impl Language {
    /// Every language, in the order of their `as usize`.
    pub const ALL: [Language; 4] = [
        Language::English,
        Language::Persian,
        Language::Arabic,
        Language::Turkish,
    ];

    /// The language of a language code (`"fa"`, lower case); English for
    /// any other.
    pub fn of(code: &str) -> Language {
        match code {
            "fa" => Language::Persian,
            "ar" => Language::Arabic,
            "tr" => Language::Turkish,
            _ => Language::English,
        }
    }
}

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
    /// Whose plural rules the ages follow.
    language: Language,
    /// An age in seconds, minutes, hours, days.
    ages: [Forms; 4],
    /// The header's count of connected clients.
    connected: Forms,
}

/// One age phrase per CLDR plural category; `#` stands for the number,
/// and a form without `#` says the count in its words (Arabic's one and
/// two).
#[derive(Debug)]
struct Forms {
    zero: &'static str,
    one: &'static str,
    two: &'static str,
    few: &'static str,
    many: &'static str,
    other: &'static str,
}

impl Forms {
    /// The same phrase for every count: the noun does not change after a
    /// number.
    const fn same(phrase: &'static str) -> Forms {
        Forms {
            zero: phrase,
            one: phrase,
            two: phrase,
            few: phrase,
            many: phrase,
            other: phrase,
        }
    }

    /// Arabic: `one` and `two` (the dual) stand without a number; 3 to 10
    /// take the plural `few`; 11 to 99 the singular `many` (accusative);
    /// 0 and 100 to 102 the singular `other`.
    const fn arabic(
        one: &'static str,
        two: &'static str,
        few: &'static str,
        many: &'static str,
        other: &'static str,
    ) -> Forms {
        Forms {
            zero: other,
            one,
            two,
            few,
            many,
            other,
        }
    }

    /// Writes the form of `n` in `language`, the number in place of `#`.
    fn write(&self, out: &mut impl fmt::Write, n: u64, language: Language) -> fmt::Result {
        let phrase = self.of(category(language, n));
        match phrase.split_once('#') {
            Some((before, after)) => write!(out, "{before}{n}{after}"),
            None => out.write_str(phrase),
        }
    }

    fn of(&self, category: PluralCategory) -> &'static str {
        match category {
            PluralCategory::Zero => self.zero,
            PluralCategory::One => self.one,
            PluralCategory::Two => self.two,
            PluralCategory::Few => self.few,
            PluralCategory::Many => self.many,
            PluralCategory::Other => self.other,
        }
    }
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
    language: Language::English,
    // Short units do not take a plural: "1m ago", "5m ago".
    ages: [
        Forms::same("#s ago"),
        Forms::same("#m ago"),
        Forms::same("#h ago"),
        Forms::same("#d ago"),
    ],
    connected: Forms {
        one: "# client",
        ..Forms::same("# clients")
    },
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
    language: Language::Persian,
    ages: [
        Forms::same("# ثانیه پیش"),
        Forms::same("# دقیقه پیش"),
        Forms::same("# ساعت پیش"),
        Forms::same("# روز پیش"),
    ],
    connected: Forms::same("# کاربر"),
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
    language: Language::Arabic,
    ages: [
        Forms::arabic(
            "منذ ثانية",
            "منذ ثانيتين",
            "منذ # ثوانٍ",
            "منذ # ثانية",
            "منذ # ثانية",
        ),
        Forms::arabic(
            "منذ دقيقة",
            "منذ دقيقتين",
            "منذ # دقائق",
            "منذ # دقيقة",
            "منذ # دقيقة",
        ),
        Forms::arabic(
            "منذ ساعة",
            "منذ ساعتين",
            "منذ # ساعات",
            "منذ # ساعة",
            "منذ # ساعة",
        ),
        Forms::arabic(
            "منذ يوم",
            "منذ يومين",
            "منذ # أيام",
            "منذ # يومًا",
            "منذ # يوم",
        ),
    ],
    connected: Forms::arabic("متصل واحد", "متصلان", "# متصلين", "# متصلًا", "# متصل"),
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
    language: Language::Turkish,
    ages: [
        Forms::same("# saniye önce"),
        Forms::same("# dakika önce"),
        Forms::same("# saat önce"),
        Forms::same("# gün önce"),
    ],
    connected: Forms::same("# istemci"),
};

/// The words of a language code (`"fa"`); English for any other.
pub fn words(language: &str) -> &'static Words {
    match Language::of(language) {
        Language::Persian => &FA,
        Language::Arabic => &AR,
        Language::Turkish => &TR,
        Language::English => &EN,
    }
}

impl Words {
    /// Writes an age of `n` units (`'s'`, `'m'`, `'h'`, `'d'`, as
    /// [`super::state::age_label`] gives them) in the plural form of `n`,
    /// with ASCII digits.
    pub fn age(&self, out: &mut impl fmt::Write, n: u64, unit: char) -> fmt::Result {
        let i = match unit {
            's' => 0,
            'm' => 1,
            'h' => 2,
            _ => 3,
        };
        self.ages[i].write(out, n, self.language)
    }

    /// Writes the header's count of `n` connected clients in the plural
    /// form of `n` ("1 client", Arabic's dual "متصلان"), with ASCII digits.
    pub fn clients(&self, out: &mut impl fmt::Write, n: u64) -> fmt::Result {
        self.connected.write(out, n, self.language)
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
        check("tr", 2, 'h', "2 saat önce");
        check("ar", 5, 'm', "منذ 5 دقائق");
        check("ar", 45, 's', "منذ 45 ثانية");
        check("xx", 3, 'd', "3d ago");
    }

    /// Each language's ages for 0, 1, 2, 3, 10, 11 and 100 of a unit.
    #[track_caller]
    fn forms(language: &str, unit: char, expected: [&str; 7]) {
        for (n, want) in [0, 1, 2, 3, 10, 11, 100].into_iter().zip(expected) {
            check(language, n, unit, want);
        }
    }

    #[test]
    fn arabic_ages_take_the_dual_and_the_plural_forms() {
        forms(
            "ar",
            'm',
            [
                "منذ 0 دقيقة",
                "منذ دقيقة",
                "منذ دقيقتين",
                "منذ 3 دقائق",
                "منذ 10 دقائق",
                "منذ 11 دقيقة",
                "منذ 100 دقيقة",
            ],
        );
        forms(
            "ar",
            'h',
            [
                "منذ 0 ساعة",
                "منذ ساعة",
                "منذ ساعتين",
                "منذ 3 ساعات",
                "منذ 10 ساعات",
                "منذ 11 ساعة",
                "منذ 100 ساعة",
            ],
        );
        forms(
            "ar",
            'd',
            [
                "منذ 0 يوم",
                "منذ يوم",
                "منذ يومين",
                "منذ 3 أيام",
                "منذ 10 أيام",
                "منذ 11 يومًا",
                "منذ 100 يوم",
            ],
        );
        check("ar", 2, 's', "منذ ثانيتين");
        check("ar", 7, 's', "منذ 7 ثوانٍ");
        check("ar", 103, 'd', "منذ 103 أيام");
    }

    #[test]
    fn persian_turkish_and_english_ages_keep_the_number() {
        forms(
            "fa",
            'm',
            [
                "0 دقیقه پیش",
                "1 دقیقه پیش",
                "2 دقیقه پیش",
                "3 دقیقه پیش",
                "10 دقیقه پیش",
                "11 دقیقه پیش",
                "100 دقیقه پیش",
            ],
        );
        forms(
            "fa",
            'd',
            [
                "0 روز پیش",
                "1 روز پیش",
                "2 روز پیش",
                "3 روز پیش",
                "10 روز پیش",
                "11 روز پیش",
                "100 روز پیش",
            ],
        );
        forms(
            "tr",
            'h',
            [
                "0 saat önce",
                "1 saat önce",
                "2 saat önce",
                "3 saat önce",
                "10 saat önce",
                "11 saat önce",
                "100 saat önce",
            ],
        );
        forms(
            "tr",
            'm',
            [
                "0 dakika önce",
                "1 dakika önce",
                "2 dakika önce",
                "3 dakika önce",
                "10 dakika önce",
                "11 dakika önce",
                "100 dakika önce",
            ],
        );
        forms(
            "en",
            'd',
            [
                "0d ago", "1d ago", "2d ago", "3d ago", "10d ago", "11d ago", "100d ago",
            ],
        );
        forms(
            "en",
            'h',
            [
                "0h ago", "1h ago", "2h ago", "3h ago", "10h ago", "11h ago", "100h ago",
            ],
        );
    }

    #[test]
    fn client_counts_take_the_plural_forms() {
        let clients = |language: &str, n: u64| {
            let mut out = String::new();
            words(language).clients(&mut out, n).unwrap();
            out
        };
        let all = |language| [0, 1, 2, 3, 11, 100].map(|n| clients(language, n));
        assert_eq!(
            all("ar"),
            [
                "0 متصل",
                "متصل واحد",
                "متصلان",
                "3 متصلين",
                "11 متصلًا",
                "100 متصل"
            ]
        );
        assert_eq!(
            all("en"),
            [
                "0 clients",
                "1 client",
                "2 clients",
                "3 clients",
                "11 clients",
                "100 clients"
            ]
        );
        assert_eq!(clients("fa", 2), "2 کاربر");
        assert_eq!(clients("tr", 2), "2 istemci");
    }

    #[test]
    fn every_language_has_its_plural_rules() {
        for language in Language::ALL {
            assert_eq!(Language::ALL[language as usize], language);
        }
        // Arabic's dual needs Arabic's rules, not the fallback's "other".
        assert_eq!(category(Language::Arabic, 2), PluralCategory::Two);
    }
}
