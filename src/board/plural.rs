//! Which plural form a count takes in the board's language: CLDR's plural
//! rules, through ICU4X's `icu_plurals`.
//!
//! Arabic has six forms (zero, one, two, few for 3–10, many for 11–99,
//! other for 100–102 …), Persian and Turkish two, English two; the board's
//! phrases for each form are in [`super::words`]. The rules are the
//! library's compiled CLDR data, loaded once per language and kept for the
//! life of the process, so asking for a category allocates nothing.
//!
//! No I/O, no clock.

use std::sync::OnceLock;

use icu_locale_core::{LanguageIdentifier, langid};
pub use icu_plurals::PluralCategory;
use icu_plurals::PluralRules;

use super::words::Language;

/// The cardinal plural category of `n` in `language` (`Other` if the rules
/// could not be loaded, which the tests rule out for every language the
/// board has words for).
pub fn category(language: Language, n: u64) -> PluralCategory {
    match rules(language) {
        Some(rules) => rules.category_for(n),
        None => PluralCategory::Other,
    }
}

/// The cardinal rules of `language`, loaded on first use.
fn rules(language: Language) -> Option<&'static PluralRules> {
    static RULES: [OnceLock<Option<PluralRules>>; Language::ALL.len()] =
        [const { OnceLock::new() }; Language::ALL.len()];
    RULES[language as usize]
        .get_or_init(|| PluralRules::try_new_cardinal(identifier(language).into()).ok())
        .as_ref()
}

/// The BCP 47 language of `language`.
pub(crate) fn identifier(language: Language) -> LanguageIdentifier {
    match language {
        Language::English => langid!("en"),
        Language::Persian => langid!("fa"),
        Language::Arabic => langid!("ar"),
        Language::Turkish => langid!("tr"),
    }
}

#[cfg(test)]
mod tests {
    use super::PluralCategory::*;
    use super::*;

    #[track_caller]
    fn check(language: Language, expected: [PluralCategory; 7]) {
        let got = [0, 1, 2, 3, 10, 11, 100].map(|n| category(language, n));
        assert_eq!(got, expected, "{language:?}");
    }

    #[test]
    fn categories_follow_cldr_for_each_language() {
        // CLDR's plural rules (unicode.org/cldr/charts, "Language Plural
        // Rules"): Arabic counts nouns in six forms.
        check(Language::Arabic, [Zero, One, Two, Few, Few, Many, Other]);
        // Persian: "one" for 0 and 1 (i = 0 or n = 1).
        check(
            Language::Persian,
            [One, One, Other, Other, Other, Other, Other],
        );
        check(
            Language::Turkish,
            [Other, One, Other, Other, Other, Other, Other],
        );
        check(
            Language::English,
            [Other, One, Other, Other, Other, Other, Other],
        );
        // The Arabic few and many come back after each hundred.
        assert_eq!(category(Language::Arabic, 103), Few);
        assert_eq!(category(Language::Arabic, 111), Many);
        assert_eq!(category(Language::Arabic, 200), Other);
    }
}
