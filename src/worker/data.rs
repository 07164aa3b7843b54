//! Training data: the Brown Corpus shipped inside the binary (see `brown/README.md`), or the
//! user's own files: plain text for pretraining, TSV or JSONL (`text`, `label`) for fine-tuning.
//! Bad files fail with the file, the line and what is wrong.

use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: no {what} in the file")]
    Empty { path: PathBuf, what: &'static str },
    #[error("{path}:{line}: {message}")]
    Malformed { path: PathBuf, line: usize, message: String },
    #[error("{path}: unsupported extension: expected .txt for text, .tsv or .jsonl for labeled data")]
    Format { path: PathBuf },
    #[error("{path}:{line}: label `{label}` does not occur in the training set (its labels: {known})")]
    UnseenLabel { path: PathBuf, line: usize, label: String, known: String },
}

const PRETRAIN_TRAIN: &[u8] = include_bytes!("brown/pretrain-train.txt.gz");
const PRETRAIN_VALID: &[u8] = include_bytes!("brown/pretrain-valid.txt.gz");
const GENRE_TRAIN: &[u8] = include_bytes!("brown/genre-train.tsv.gz");
const GENRE_VALID: &[u8] = include_bytes!("brown/genre-valid.tsv.gz");
const GENRE_TEST: &[u8] = include_bytes!("brown/genre-test.tsv.gz");

/// Labeled passages with labels as indices into `classes` (the training set's labels, sorted).
#[derive(Debug, Clone)]
pub struct Labeled {
    pub texts: Vec<String>,
    pub labels: Vec<usize>,
    pub classes: Vec<String>,
}

fn gunzip(name: &str, bytes: &[u8]) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut text)
        .unwrap_or_else(|e| panic!("the embedded {name} is corrupt: {e}"));
    text
}

/// Where text comes from: a user's file, or the named part of the shipped corpus.
#[derive(Debug, Clone)]
pub enum Source {
    Brown(&'static str),
    File(PathBuf),
}

impl Source {
    pub fn describe(&self) -> String {
        match self {
            Source::Brown(part) => format!("brown:{part}"),
            Source::File(path) => path.display().to_string(),
        }
    }

    fn read(&self) -> Result<(PathBuf, String), DataError> {
        match self {
            Source::Brown(part) => {
                let bytes = match *part {
                    "pretrain-train" => PRETRAIN_TRAIN,
                    "pretrain-valid" => PRETRAIN_VALID,
                    "genre-train" => GENRE_TRAIN,
                    "genre-valid" => GENRE_VALID,
                    "genre-test" => GENRE_TEST,
                    other => unreachable!("no shipped part {other}"),
                };
                let name = if part.starts_with("genre") { format!("{part}.tsv") } else { format!("{part}.txt") };
                Ok((PathBuf::from(format!("brown/{name}")), gunzip(part, bytes)))
            }
            Source::File(path) => {
                let bytes = std::fs::read(path).map_err(|source| DataError::Io { path: path.clone(), source })?;
                // Invalid UTF-8 is replaced, not fatal: a stray byte should not sink a corpus.
                Ok((path.clone(), String::from_utf8_lossy(&bytes).into_owned()))
            }
        }
    }
}

/// Plain text, one passage (a paragraph, a document) per line; blank lines are skipped.
pub fn read_text(source: &Source) -> Result<Vec<String>, DataError> {
    let (path, text) = source.read()?;
    let lines: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    if lines.is_empty() {
        return Err(DataError::Empty { path, what: "text" });
    }
    Ok(lines)
}

/// One labeled row: its line number, text and label.
type Row = (usize, String, String);

/// Raw rows of a TSV (`text<TAB>label`, optional header) or JSONL
/// (`{"text": ..., "label": ...}`) file.
fn read_rows(source: &Source) -> Result<(PathBuf, Vec<Row>), DataError> {
    let (path, content) = source.read()?;
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let malformed = |line: usize, message: String| DataError::Malformed { path: path.clone(), line, message };
    let mut rows = Vec::new();
    for (i, line) in content.lines().enumerate() {
        let number = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let (text, label) = match extension.as_str() {
            "tsv" => {
                let Some((text, label)) = line.rsplit_once('\t') else {
                    return Err(malformed(number, "expected `text<TAB>label`, found no tab".into()));
                };
                if number == 1 && text.trim() == "text" && label.trim() == "label" {
                    continue;
                }
                (text.trim().to_string(), label.trim().to_string())
            }
            "jsonl" | "json" => {
                let value: serde_json::Value =
                    serde_json::from_str(line).map_err(|e| malformed(number, format!("not a JSON object: {e}")))?;
                let field = |name: &str| -> Result<String, DataError> {
                    match value.get(name) {
                        Some(serde_json::Value::String(s)) => Ok(s.trim().to_string()),
                        Some(serde_json::Value::Number(n)) => Ok(n.to_string()),
                        Some(other) => Err(malformed(number, format!("`{name}` must be a string, got {other}"))),
                        None => Err(malformed(number, format!("missing `{name}`"))),
                    }
                };
                (field("text")?, field("label")?)
            }
            _ => return Err(DataError::Format { path }),
        };
        if text.is_empty() {
            return Err(malformed(number, "empty text".into()));
        }
        if label.is_empty() {
            return Err(malformed(number, "missing label".into()));
        }
        rows.push((number, text, label));
    }
    if rows.is_empty() {
        return Err(DataError::Empty { path, what: "labeled rows" });
    }
    Ok((path, rows))
}

/// A training set: its labels become the classes.
pub fn read_train(source: &Source) -> Result<Labeled, DataError> {
    let (path, rows) = read_rows(source)?;
    let mut classes: Vec<String> = rows.iter().map(|(_, _, l)| l.clone()).collect();
    classes.sort();
    classes.dedup();
    if classes.len() < 2 {
        return Err(DataError::Malformed {
            path,
            line: rows[0].0,
            message: format!("only one label (`{}`): a classifier needs at least two", classes[0]),
        });
    }
    let labels = rows.iter().map(|(_, _, l)| classes.binary_search(l).expect("collected above")).collect();
    Ok(Labeled { texts: rows.into_iter().map(|(_, t, _)| t).collect(), labels, classes })
}

/// `n` passages of `set` for a label budget: class-stratified (each class keeps its share of
/// `n`, rounded by largest remainders, and at least one passage while `n` allows), drawn at
/// random within each class from `seed`, and kept in the file's order. The same set, `n` and
/// seed always give the same subset; `n` at or above the set's size keeps the set whole.
pub fn stratified_subset(set: &Labeled, n: usize, seed: u64) -> Labeled {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    if n >= set.texts.len() {
        return set.clone();
    }
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); set.classes.len()];
    for (i, &label) in set.labels.iter().enumerate() {
        by_class[label].push(i);
    }
    let share = |members: &Vec<usize>| members.len() as f64 * n as f64 / set.texts.len() as f64;
    let mut quota: Vec<usize> = by_class.iter().map(|m| share(m) as usize).collect();
    if n >= by_class.iter().filter(|m| !m.is_empty()).count() {
        for (q, m) in quota.iter_mut().zip(&by_class) {
            *q = (*q).max(usize::from(!m.is_empty()));
        }
    }
    // The rest goes to the largest remainders; a minimum of one may have overshot instead.
    let mut by_remainder: Vec<usize> = (0..by_class.len()).collect();
    by_remainder.sort_by(|&a, &b| {
        let rest = |c: usize| share(&by_class[c]) - share(&by_class[c]).floor();
        rest(b).total_cmp(&rest(a)).then(a.cmp(&b))
    });
    // One more each in turn; n is below the set's size, so some class always has room.
    let mut turns = by_remainder.iter().cycle();
    while quota.iter().sum::<usize>() < n {
        let c = *turns.next().expect("classes");
        if quota[c] < by_class[c].len() {
            quota[c] += 1;
        }
    }
    while quota.iter().sum::<usize>() > n {
        let largest = (0..quota.len()).max_by_key(|&c| (quota[c], std::cmp::Reverse(c))).expect("classes");
        quota[largest] -= 1;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5AB5_E7ED);
    let mut picked: Vec<usize> = Vec::with_capacity(n);
    for (members, &q) in by_class.iter_mut().zip(&quota) {
        members.shuffle(&mut rng);
        picked.extend_from_slice(&members[..q]);
    }
    picked.sort_unstable();
    Labeled {
        texts: picked.iter().map(|&i| set.texts[i].clone()).collect(),
        labels: picked.iter().map(|&i| set.labels[i]).collect(),
        classes: set.classes.clone(),
    }
}

/// A validation or test set, labeled with the training set's classes.
pub fn read_eval(source: &Source, classes: &[String]) -> Result<Labeled, DataError> {
    let (path, rows) = read_rows(source)?;
    let mut labels = Vec::with_capacity(rows.len());
    for (line, _, label) in &rows {
        let index = classes.binary_search(label).map_err(|_| DataError::UnseenLabel {
            path: path.clone(),
            line: *line,
            label: label.clone(),
            known: classes.join(", "),
        })?;
        labels.push(index);
    }
    Ok(Labeled { texts: rows.into_iter().map(|(_, t, _)| t).collect(), labels, classes: classes.to_vec() })
}

/// A path given on the command line, or the shipped corpus's part when none is.
pub fn source(path: Option<&Path>, brown: &'static str) -> Source {
    path.map_or(Source::Brown(brown), |p| Source::File(p.to_path_buf()))
}

#[cfg(test)]
mod tests {

    /// A label budget keeps each class's share, is the same for the same seed, and differs
    /// for another; a budget beyond the set keeps it whole.
    #[test]
    fn the_subset_is_stratified_and_seeded() {
        let set = read_train(&Source::Brown("genre-train")).unwrap();
        let counts = |s: &Labeled| {
            let mut c = vec![0usize; s.classes.len()];
            s.labels.iter().for_each(|&l| c[l] += 1);
            c
        };
        let all = counts(&set);
        for n in [4, 100, 301, 1000] {
            let subset = stratified_subset(&set, n, 1);
            assert_eq!(subset.texts.len(), n);
            for (got, whole) in counts(&subset).iter().zip(&all) {
                let exact = *whole as f64 * n as f64 / set.texts.len() as f64;
                assert!((*got as f64 - exact).abs() <= 1.0 && *got >= 1, "n {n}: {got} for a share of {exact:.1}");
            }
            assert_eq!(stratified_subset(&set, n, 1).texts, subset.texts, "same seed, same subset");
        }
        assert_ne!(stratified_subset(&set, 100, 2).texts, stratified_subset(&set, 100, 1).texts);
        assert_eq!(stratified_subset(&set, set.texts.len() + 5, 1).texts.len(), set.texts.len());
    }
    use super::*;

    fn file(dir: &Path, name: &str, content: &str) -> Source {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        Source::File(path)
    }

    #[test]
    fn the_shipped_corpus_has_four_genres_in_every_split() {
        let train = read_train(&Source::Brown("genre-train")).unwrap();
        assert_eq!(train.classes, ["fiction", "learned", "nonfiction", "press"]);
        for part in ["genre-valid", "genre-test"] {
            let set = read_eval(&Source::Brown(part), &train.classes).unwrap();
            for class in 0..4 {
                assert!(set.labels.contains(&class), "{part} lacks {}", train.classes[class]);
            }
        }
        assert!(read_text(&Source::Brown("pretrain-train")).unwrap().len() > 1000);
    }

    #[test]
    fn bad_files_say_where_and_what() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("empty.tsv", "", "no labeled rows"),
            ("blank.txt", "\n  \n", "no text"),
            ("notab.tsv", "text\tlabel\nhello world\n", "notab.tsv:2: expected `text<TAB>label`"),
            ("nolabel.tsv", "a b c\t\n", "nolabel.tsv:1: missing label"),
            ("bad.jsonl", "{\"text\": \"a\", \"label\": \"x\"}\n{oops\n", "bad.jsonl:2: not a JSON object"),
            ("missing.jsonl", "{\"text\": \"a\"}\n", "missing.jsonl:1: missing `label`"),
            ("one.tsv", "a\tx\nb\tx\n", "only one label"),
            ("data.csv", "a,b\n", "unsupported extension"),
        ];
        for (name, content, expected) in cases {
            let source = file(dir.path(), name, content);
            let error =
                if name.ends_with(".txt") { read_text(&source).unwrap_err() } else { read_train(&source).unwrap_err() };
            assert!(error.to_string().contains(expected), "{name}: {error}");
        }
        let missing = read_text(&Source::File(dir.path().join("nope.txt"))).unwrap_err();
        assert!(missing.to_string().contains("cannot read"), "{missing}");
        let unseen = file(dir.path(), "valid.tsv", "a\tx\nb\tz\n");
        let error = read_eval(&unseen, &["x".into(), "y".into()]).unwrap_err();
        assert!(error.to_string().contains("valid.tsv:2: label `z`"), "{error}");
    }
}
