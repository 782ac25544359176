//! "Did you mean" suggestions for names a user mistyped.

/// The closest of `candidates` to `name`, if it is close enough to be a likely typo.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|candidate| (strsim::damerau_levenshtein(name, candidate), candidate))
        .filter(|(distance, candidate)| *distance <= 2.max(candidate.len() / 4) && *distance > 0)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::suggest;

    #[test]
    fn suggests_close_names_only() {
        let tasks = ["deploy", "deploy:symlink", "rollback", "artisan:migrate"];
        assert_eq!(suggest("deplyo", tasks), Some("deploy"));
        assert_eq!(suggest("deploy:symlnk", tasks), Some("deploy:symlink"));
        assert_eq!(suggest("artisan:migrat", tasks), Some("artisan:migrate"));
        assert_eq!(suggest("zzz", tasks), None);
        assert_eq!(suggest("deploy", tasks), None);
    }
}
