//! "Did you mean": the nearest of the words a reader knows to a word it
//! does not, by edit distance, for misspelt keys and values.

/// Edit distance in characters: inserts, deletes, substitutions and
/// swaps of two neighbours each count one (Levenshtein with
/// transpositions, "optimal string alignment"), since `bnid` for `bind`
/// is as much one slip as `bid`.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // d[i][j]: distance between the first i of `a` and the first j of `b`.
    let mut d = vec![vec![0; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let substitute = d[i - 1][j - 1] + usize::from(a[i - 1] != b[j - 1]);
            let mut best = substitute.min(d[i - 1][j] + 1).min(d[i][j - 1] + 1);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// The candidate nearest to `word`, when it is near enough to be a typo
/// of it: a third of the longer word's characters may differ (at least
/// one). Case and `-` for `_` count as no difference, since TOML keys
/// copied from other proxies' configs often differ just so.
pub fn did_you_mean<'c>(word: &str, candidates: impl Iterator<Item = &'c str>) -> Option<&'c str> {
    let fold = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    let folded = fold(word);
    candidates
        .filter(|c| *c != word)
        .map(|c| {
            let limit = (folded.chars().count().max(c.chars().count()) / 3).max(1);
            (edit_distance(&folded, &fold(c)), limit, c)
        })
        .filter(|(distance, limit, _)| distance <= limit)
        .min_by_key(|(distance, _, _)| *distance)
        .map(|(_, _, c)| c)
}

/// "`got` is not one of a, b, c", with the nearest one suggested.
pub fn not_one_of(got: &str, options: &[&str]) -> String {
    let list = options.join(", ");
    match did_you_mean(got, options.iter().copied()) {
        Some(near) => format!("`{got}` is not one of {list} (did you mean `{near}`?)"),
        None => format!("`{got}` is not one of {list}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("upstream", "upstream"), 0);
        assert_eq!(edit_distance("upstrem", "upstream"), 1);
        assert_eq!(edit_distance("upsteram", "upstream"), 1);
        assert_eq!(edit_distance("bnid", "bind"), 1);
        assert_eq!(edit_distance("ab", "ba"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("flaw", "lawn"), 2);
        assert_eq!(edit_distance("é", "e"), 1);
    }

    #[test]
    fn suggests_the_nearest_key_only_when_near() {
        let keys = ["path_prefix", "path_exact", "upstream", "listeners"];
        let near = |w| did_you_mean(w, keys.iter().copied());
        assert_eq!(near("upstrem"), Some("upstream"));
        assert_eq!(near("upsteram"), Some("upstream"));
        assert_eq!(near("path-prefix"), Some("path_prefix"));
        assert_eq!(near("Path_Exact"), Some("path_exact"));
        assert_eq!(near("listener"), Some("listeners"));
        assert_eq!(near("colour"), None);
        assert_eq!(near("priority"), None);
        assert_eq!(near("ab"), None);
    }

    #[test]
    fn values_name_the_options_and_the_nearest() {
        assert_eq!(
            not_one_of("least_con", &["round_robin", "least_conn"]),
            "`least_con` is not one of round_robin, least_conn (did you mean `least_conn`?)"
        );
        assert_eq!(
            not_one_of("fastest", &["round_robin", "least_conn"]),
            "`fastest` is not one of round_robin, least_conn"
        );
    }
}
