//! The vocabulary of entry version 1: DPV purposes, legal bases and personal-data categories as
//! compact codes (`dpv:DirectMarketing`, `dpv:Consent`, `pd:EmailAddress`), with the purpose
//! hierarchy, and the mapping from IAB TCF v2.2 purposes.
//!
//! The data lives in `proto/vocab/vocab-v1.tsv` and `proto/vocab/tcf-v2.2.tsv`, embedded at
//! compile time and parsed once. A code that is not listed for its field is an error wherever it
//! appears: in the decoder, in the JSON form, in a query.

use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;

/// The embedded vocabulary file of version 1.
pub const VOCAB_V1_TSV: &str = include_str!("../vocab/vocab-v1.tsv");
/// The embedded TCF v2.2 mapping.
pub const TCF_V22_TSV: &str = include_str!("../vocab/tcf-v2.2.tsv");

/// What a code names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TermKind {
    /// A purpose (`dpv:...`).
    Purpose,
    /// A legal basis (`dpv:...`).
    LegalBasis,
    /// A personal-data category (`pd:...`).
    DataCategory,
}

impl TermKind {
    /// The name used in the vocabulary file.
    pub fn as_str(self) -> &'static str {
        match self {
            TermKind::Purpose => "purpose",
            TermKind::LegalBasis => "legal-basis",
            TermKind::DataCategory => "data",
        }
    }
}

/// One term of the vocabulary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Term {
    /// Its kind.
    pub kind: TermKind,
    /// Its code.
    pub code: String,
    /// Directly broader codes.
    pub broader: Vec<String>,
    /// Every broader code, transitively (not including itself).
    pub ancestors: BTreeSet<String>,
    /// Every narrower code, transitively (not including itself).
    pub descendants: BTreeSet<String>,
}

/// A parsed vocabulary.
#[derive(Debug)]
pub struct Vocabulary {
    terms: HashMap<String, Term>,
    tcf: Vec<(u8, Vec<String>, String)>,
}

/// The vocabulary of entry version 1, parsed on first use.
pub fn v1() -> &'static Vocabulary {
    static V1: OnceLock<Vocabulary> = OnceLock::new();
    V1.get_or_init(|| {
        // The embedded files are checked by tests; a parse failure here is a build defect.
        Vocabulary::parse(VOCAB_V1_TSV, TCF_V22_TSV).unwrap_or_else(|e| {
            panic!("embedded vocabulary is invalid: {e}");
        })
    })
}

impl Vocabulary {
    /// Parses a vocabulary file and a TCF mapping file.
    ///
    /// # Errors
    /// A line that does not have the expected columns, a duplicate code, a broader code that is
    /// not a term of the same kind, a cycle, or a TCF mapping to an unknown purpose.
    pub fn parse(vocab: &str, tcf: &str) -> Result<Self, String> {
        let mut terms: HashMap<String, Term> = HashMap::new();
        for (n, line) in vocab.lines().enumerate() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let cols: Vec<&str> = line.split('\t').collect();
            let [kind, code, broader] = cols.as_slice() else {
                return Err(format!("line {}: expected 3 columns", n + 1));
            };
            let kind = match *kind {
                "purpose" => TermKind::Purpose,
                "legal-basis" => TermKind::LegalBasis,
                "data" => TermKind::DataCategory,
                other => return Err(format!("line {}: unknown kind {other}", n + 1)),
            };
            if !is_code_syntax(code) {
                return Err(format!("line {}: bad code {code}", n + 1));
            }
            let broader: Vec<String> = if *broader == "-" {
                vec![]
            } else {
                broader.split(',').map(str::to_owned).collect()
            };
            let term = Term {
                kind,
                code: (*code).to_owned(),
                broader,
                ancestors: BTreeSet::new(),
                descendants: BTreeSet::new(),
            };
            if terms.insert((*code).to_owned(), term).is_some() {
                return Err(format!("line {}: duplicate code {code}", n + 1));
            }
        }
        // Transitive closure of broader links.
        let codes: Vec<String> = terms.keys().cloned().collect();
        for code in &codes {
            let mut seen = BTreeSet::new();
            let mut stack = terms[code].broader.clone();
            while let Some(b) = stack.pop() {
                let Some(t) = terms.get(&b) else {
                    return Err(format!("{code}: broader {b} is not a term"));
                };
                if t.kind != terms[code].kind {
                    return Err(format!("{code}: broader {b} is of another kind"));
                }
                if b == *code {
                    return Err(format!("{code}: cycle in broader links"));
                }
                if seen.insert(b.clone()) {
                    stack.extend(t.broader.iter().cloned());
                }
            }
            if let Some(t) = terms.get_mut(code) {
                t.ancestors = seen;
            }
        }
        for code in &codes {
            let ancestors = terms[code].ancestors.clone();
            for a in ancestors {
                if let Some(t) = terms.get_mut(&a) {
                    t.descendants.insert(code.clone());
                }
            }
        }
        let mut map = Vec::new();
        for (n, line) in tcf.lines().enumerate() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let cols: Vec<&str> = line.split('\t').collect();
            let [id, dpv, name] = cols.as_slice() else {
                return Err(format!("tcf line {}: expected 3 columns", n + 1));
            };
            let id: u8 = id
                .parse()
                .map_err(|_| format!("tcf line {}: bad id", n + 1))?;
            let dpv: Vec<String> = if *dpv == "-" {
                vec![]
            } else {
                dpv.split(',').map(str::to_owned).collect()
            };
            for d in &dpv {
                match terms.get(d) {
                    Some(t) if t.kind == TermKind::Purpose => {}
                    _ => return Err(format!("tcf {id}: {d} is not a purpose")),
                }
            }
            map.push((id, dpv, (*name).to_owned()));
        }
        Ok(Vocabulary { terms, tcf: map })
    }

    /// The term for `code`, if any.
    pub fn get(&self, code: &str) -> Option<&Term> {
        self.terms.get(code)
    }

    /// Whether `code` is a term of `kind`.
    pub fn is(&self, code: &str, kind: TermKind) -> bool {
        self.terms.get(code).is_some_and(|t| t.kind == kind)
    }

    /// Every term of `kind`, sorted by code.
    pub fn terms(&self, kind: TermKind) -> Vec<&Term> {
        let mut v: Vec<&Term> = self.terms.values().filter(|t| t.kind == kind).collect();
        v.sort_by(|a, b| a.code.cmp(&b.code));
        v
    }

    /// Whether purpose `broad` covers purpose `narrow`: equal, or `broad` is an ancestor.
    pub fn covers(&self, broad: &str, narrow: &str) -> bool {
        broad == narrow
            || self
                .terms
                .get(narrow)
                .is_some_and(|t| t.ancestors.contains(broad))
    }

    /// The DPV purposes that a TCF v2.2 purpose maps to (empty for purpose 1), or `None` for an
    /// id outside 1..=11.
    pub fn tcf_to_dpv(&self, id: u8) -> Option<&[String]> {
        self.tcf
            .iter()
            .find(|(i, _, _)| *i == id)
            .map(|(_, d, _)| d.as_slice())
    }

    /// The TCF v2.2 purpose ids whose mapping includes `purpose` or a purpose it covers.
    pub fn dpv_to_tcf(&self, purpose: &str) -> Vec<u8> {
        self.tcf
            .iter()
            .filter(|(_, d, _)| d.iter().any(|p| self.covers(purpose, p)))
            .map(|(i, _, _)| *i)
            .collect()
    }

    /// The TCF purpose names, by id.
    pub fn tcf_names(&self) -> Vec<(u8, &str)> {
        self.tcf.iter().map(|(i, _, n)| (*i, n.as_str())).collect()
    }

    /// Up to `n` codes of `kind` nearest to `code` (edit distance, case-insensitive), for
    /// "did you mean" messages.
    pub fn suggest(&self, code: &str, kind: TermKind, n: usize) -> Vec<&str> {
        let lower = code.to_ascii_lowercase();
        let mut scored: Vec<(usize, &str)> = self
            .terms
            .values()
            .filter(|t| t.kind == kind)
            .map(|t| {
                let cand = t.code.to_ascii_lowercase();
                let mut d = levenshtein(&lower, &cand);
                let bare = cand.split(':').nth(1).unwrap_or(&cand);
                if bare.contains(lower.split(':').next_back().unwrap_or(&lower)) {
                    d = d.min(bare.len().saturating_sub(lower.len()) / 2);
                }
                (d, t.code.as_str())
            })
            .collect();
        scored.sort();
        scored.into_iter().take(n).map(|(_, c)| c).collect()
    }
}

/// Syntax of a code: `prefix:Name`, prefix `[a-z]+`, name `[A-Za-z0-9]+`, 3 to 64 bytes.
pub fn is_code_syntax(code: &str) -> bool {
    let Some((prefix, name)) = code.split_once(':') else {
        return false;
    };
    (3..=64).contains(&code.len())
        && !prefix.is_empty()
        && prefix.bytes().all(|b| b.is_ascii_lowercase())
        && !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hierarchy_follows_dpv() {
        let v = v1();
        assert!(v.covers("dpv:Marketing", "dpv:DirectMarketing"));
        assert!(!v.covers("dpv:DirectMarketing", "dpv:Marketing"));
        assert!(v.covers("dpv:Marketing", "dpv:TargetedAdvertising"));
        assert!(v.covers("dpv:Personalisation", "dpv:PersonalisedAdvertising"));
        assert!(!v.covers("dpv:Advertising", "dpv:DirectMarketing"));
        assert!(v.is("dpv:Consent", TermKind::LegalBasis));
        assert!(v.is("dpv:ExplicitlyExpressedConsent", TermKind::LegalBasis));
        assert!(v.is("pd:EmailAddress", TermKind::DataCategory));
        assert!(!v.is("dpv:Purpose", TermKind::Purpose));
        assert!(!v.is("dpv:Analytics", TermKind::Purpose));
    }

    #[test]
    fn every_dpv_purpose_class_is_present() {
        let csv = include_str!("../testdata/dpv/purposes.csv");
        let v = v1();
        let mut n = 0;
        for line in csv.lines() {
            // Rows start with "Term,class,": count only those whose term is a plain identifier.
            if let Some((term, rest)) = line.split_once(',') {
                if rest.starts_with("class,")
                    && term.bytes().all(|b| b.is_ascii_alphanumeric())
                    && term != "Purpose"
                    && term != "Sector"
                {
                    assert!(v.is(&format!("dpv:{term}"), TermKind::Purpose), "{term}");
                    n += 1;
                }
            }
        }
        assert!(n > 80, "only {n} purposes checked");
    }

    #[test]
    fn tcf_mapping_matches_the_gvl() {
        let gvl: serde_json::Value =
            serde_json::from_str(include_str!("../testdata/tcf/purposes-v2.2.json"))
                .expect("gvl json");
        let v = v1();
        for id in 1u8..=11 {
            let name = gvl["purposes"][id.to_string()]["name"]
                .as_str()
                .expect("name");
            let ours = v.tcf_names();
            assert!(ours.contains(&(id, name)), "tcf purpose {id}");
            assert!(v.tcf_to_dpv(id).is_some());
        }
        assert_eq!(v.tcf_to_dpv(12), None);
        assert_eq!(v.tcf_to_dpv(3).map(<[String]>::len), Some(1));
        assert!(v.dpv_to_tcf("dpv:Advertising").contains(&3));
    }

    #[test]
    fn suggestions_find_near_codes() {
        let s = v1().suggest("dpv:DirectMarketin", TermKind::Purpose, 3);
        assert_eq!(s.first(), Some(&"dpv:DirectMarketing"));
        let s = v1().suggest("marketing", TermKind::Purpose, 5);
        assert!(s.contains(&"dpv:Marketing"), "{s:?}");
    }

    #[test]
    fn bad_vocabulary_files_are_rejected() {
        assert!(Vocabulary::parse("purpose\tdpv:A\tdpv:B\n", "").is_err());
        assert!(Vocabulary::parse("purpose\tdpv:A\t-\npurpose\tdpv:A\t-\n", "").is_err());
        assert!(Vocabulary::parse("purpose\tdpv:A\tdpv:B\npurpose\tdpv:B\tdpv:A\n", "").is_err());
        assert!(Vocabulary::parse("purpose\tdpv:A\t-\n", "1\tdpv:X\tname\n").is_err());
    }
}
