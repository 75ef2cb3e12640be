//! "did you mean …?": the known keyword closest to a misspelt one.

/// The closest candidate by Jaro-Winkler similarity, if it is close enough
/// to be a plausible typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(&lower, &c.to_ascii_lowercase()), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    #[test]
    fn typos_find_their_keyword() {
        let words = ["label", "dev", "brd", "scope"];
        assert_eq!(super::closest("laber", words), Some("label"));
        assert_eq!(super::closest("scpoe", words), Some("scope"));
        assert_eq!(super::closest("zzz", words), None);
        assert_eq!(
            super::closest("priorty", ["priority", "preempt"]),
            Some("priority")
        );
    }
}
