//! Suggestions for a name that is not in the voice library: the library's names ranked by how
//! similar they are to the name asked for (`strsim`), a few at most.

/// How many names a suggestion list holds at most.
pub const MAX_SUGGESTIONS: usize = 5;

/// Similarity of two names in [0, 1], case-insensitive: the better of Jaro-Winkler (typos,
/// shared prefixes) and normalised Levenshtein, with a bonus when one contains the other
/// (`belinda` for `belinda_v2`).
pub fn similarity(asked: &str, name: &str) -> f64 {
    let (a, b) = (asked.to_lowercase(), name.to_lowercase());
    let base = strsim::jaro_winkler(&a, &b).max(strsim::normalized_levenshtein(&a, &b));
    let contains = !a.is_empty() && !b.is_empty() && (a.contains(&b) || b.contains(&a));
    if contains {
        (base + 0.5).min(1.0)
    } else {
        base
    }
}

/// The names of `available` most similar to `asked`, best first (ties by name), at most
/// [`MAX_SUGGESTIONS`]; an empty `asked` gives the first names.
pub fn similar_names(asked: &str, available: &[String]) -> Vec<String> {
    let asked = asked.trim();
    let mut scored: Vec<(f64, &String)> = available
        .iter()
        .map(|n| (similarity(asked, n), n))
        .collect();
    scored.sort_by(|x, y| y.0.total_cmp(&x.0).then_with(|| x.1.cmp(y.1)));
    scored
        .into_iter()
        .take(MAX_SUGGESTIONS)
        .map(|(_, n)| n.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_typo_ranks_its_voice_first() {
        let lib = names(&[
            "en_man",
            "en_woman",
            "belinda",
            "chadwick",
            "mabel",
            "vex",
            "zh_man_sichuan",
        ]);
        assert_eq!(similar_names("belindaa", &lib)[0], "belinda");
        assert_eq!(similar_names("Chadwik", &lib)[0], "chadwick");
        assert_eq!(similar_names("en_women", &lib)[0], "en_woman");
        assert_eq!(similar_names("sichuan", &lib)[0], "zh_man_sichuan");
    }

    #[test]
    fn only_a_few_names_are_suggested() {
        let lib: Vec<String> = (0..40).map(|i| format!("voice_{i:02}")).collect();
        let s = similar_names("voice_07", &lib);
        assert_eq!(s.len(), MAX_SUGGESTIONS);
        assert_eq!(s[0], "voice_07");
        assert!(similar_names("x", &[]).is_empty());
        // Fewer names than the cap: all of them, still ranked.
        assert_eq!(
            similar_names("vexx", &names(&["belinda", "vex"])),
            ["vex", "belinda"]
        );
    }
}
