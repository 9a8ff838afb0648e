//! Usernames are compared after Unicode compatibility normalisation and case folding
//! (NFKC, full case fold, NFKC again: the stable form of Unicode's compatibility caseless
//! match), so `Ann`, `ANN` and `Ａｎｎ` (full-width) are one user and cannot be registered
//! twice to impersonate each other.

use unicode_normalization::UnicodeNormalization;

/// Longest username, in characters of its canonical form.
pub const MAX_CHARS: usize = 64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UsernameError {
    #[error("a username must not be empty")]
    Empty,
    #[error("a username has at most {MAX_CHARS} characters")]
    TooLong,
    #[error(
        "a username may hold only letters, digits, combining marks and . _ - @ (no spaces or control characters)"
    )]
    Forbidden,
}

/// The form usernames are stored under and compared in.
pub fn canonical(name: &str) -> Result<String, UsernameError> {
    let folded: String = caseless::default_case_fold_str(&name.trim().nfkc().collect::<String>());
    let canonical: String = folded.nfkc().collect();
    if canonical.is_empty() {
        return Err(UsernameError::Empty);
    }
    if canonical.chars().count() > MAX_CHARS {
        return Err(UsernameError::TooLong);
    }
    let allowed = |c: char| {
        c.is_alphanumeric()
            || matches!(c, '.' | '_' | '-' | '@')
            // Combining marks (accents left separate by NFKC in some scripts).
            || ('\u{0300}'..='\u{036f}').contains(&c)
    };
    if !canonical.chars().all(allowed) {
        return Err(UsernameError::Forbidden);
    }
    Ok(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_width_and_compatibility_forms_are_one_name() {
        let ann = canonical("ann").unwrap();
        for same in ["Ann", "ANN", "Ａｎｎ", " ann "] {
            assert_eq!(canonical(same).unwrap(), ann, "{same}");
        }
        // Full case folding, not just lower-casing: ß folds to ss.
        assert_eq!(canonical("Straße").unwrap(), canonical("STRASSE").unwrap());
        // Composed and decomposed é.
        assert_eq!(
            canonical("Jos\u{e9}").unwrap(),
            canonical("Jose\u{301}").unwrap()
        );
        // The ligature ﬁ (compatibility) is fi.
        assert_eq!(canonical("\u{fb01}n").unwrap(), canonical("fin").unwrap());
        assert_ne!(canonical("ann").unwrap(), canonical("anne").unwrap());
    }

    #[test]
    fn empty_long_and_odd_names_are_refused() {
        assert_eq!(canonical("  "), Err(UsernameError::Empty));
        assert_eq!(canonical(&"a".repeat(65)), Err(UsernameError::TooLong));
        for bad in ["a b", "a\u{0}b", "a/b", "a\u{202e}b", "a:b"] {
            assert_eq!(canonical(bad), Err(UsernameError::Forbidden), "{bad:?}");
        }
        assert!(canonical("ann.lee-2@lab_x").is_ok());
    }
}
