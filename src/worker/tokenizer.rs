//! The subword tokenizer: trained once per (kind, vocabulary size, corpus) with the tokenizers
//! crate and cached as JSON. WordPiece training orders ties differently between runs
//! (DESIGN.md), so reusing the cached file is what makes runs repeatable.

use super::hparams::TokenizerKind;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::wordpiece::{WordPiece, WordPieceTrainerBuilder};
use tokenizers::models::{ModelWrapper, TrainerWrapper};
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::{AddedToken, Tokenizer};

/// `text` up to the end of its `words`-th whitespace-separated word.
fn head_words(text: &str, words: usize) -> &str {
    let mut seen = 0;
    let mut in_word = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if in_word {
                seen += 1;
                if seen == words {
                    return &text[..i];
                }
            }
            in_word = false;
        } else {
            in_word = true;
        }
    }
    text
}

/// Special tokens, trained first so they get these ids.
pub const PAD: u32 = 0;
pub const UNK: u32 = 1;
pub const CLS: u32 = 2;
pub const SEP: u32 = 3;
pub const MASK: u32 = 4;
const SPECIALS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("tokenizer {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("training the tokenizer failed: {0}")]
    Train(String),
    #[error("tokenizing failed: {0}")]
    Encode(String),
}

/// A trained tokenizer and where its JSON lives.
#[derive(Clone)]
pub struct Vocab {
    pub tokenizer: Tokenizer,
    pub path: PathBuf,
    /// SHA-256 of the JSON, read once at load: what the token-id cache is keyed by.
    digest: String,
}

impl Vocab {
    pub fn size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// Token ids of each text, without special tokens.
    pub fn encode(&self, texts: &[String]) -> Result<Vec<Vec<u32>>, TokenizerError> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.iter().map(String::as_str).collect::<Vec<_>>(), false)
            .map_err(|e| TokenizerError::Encode(e.to_string()))?;
        Ok(encodings.into_iter().map(|e| e.get_ids().to_vec()).collect())
    }

    /// The first `max_tokens` token ids of each text: what a classifier that cuts passages
    /// reads. Encodes only the text's first `max_tokens` words (each gives at least one token;
    /// normalizing and pre-tokenizing never join across whitespace, so the leading tokens are
    /// those of the whole text), and the whole text where that falls short. A user's documents
    /// may run to thousands of words; the shipped passages stop at 62.
    pub fn encode_heads(&self, texts: &[String], max_tokens: usize) -> Result<Vec<Vec<u32>>, TokenizerError> {
        let heads: Vec<String> = texts.iter().map(|t| head_words(t, max_tokens).to_string()).collect();
        let mut ids = self.encode(&heads)?;
        for (i, row) in ids.iter_mut().enumerate() {
            if row.len() < max_tokens && heads[i].len() < texts[i].len() {
                *row = self.encode(std::slice::from_ref(&texts[i]))?.remove(0);
            }
            row.truncate(max_tokens);
        }
        Ok(ids)
    }

    /// [`Vocab::encode_heads`], remembered in `cache`: every trial of a study tokenizes the same
    /// labeled sets, which took 2.6 of a quickstart trial's 19 s. Keyed by the tokenizer's
    /// file, `max_tokens` and the texts; an entry that is missing or does not read back whole
    /// is encoded again, and failing to store one only costs the next trial the time.
    pub fn encode_heads_cached(
        &self,
        texts: &[String],
        max_tokens: usize,
        cache: &Path,
    ) -> Result<Vec<Vec<u32>>, TokenizerError> {
        let head = format!("{}/{max_tokens}/", self.digest);
        let path = cache.join(format!("encoded-{}.bin", cache_key(&head, texts)));
        if let Some(ids) = read_ids(&path, texts.len()) {
            return Ok(ids);
        }
        let ids = self.encode_heads(texts, max_tokens)?;
        if let Err(e) = write_ids(&path, &ids) {
            eprintln!("could not cache token ids in {}: {e}", path.display());
        }
        Ok(ids)
    }

    pub fn load(path: &Path) -> Result<Vocab, TokenizerError> {
        let err = |message: String| TokenizerError::File { path: path.to_path_buf(), message };
        let json = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let tokenizer = Tokenizer::from_bytes(&json).map_err(|e| err(e.to_string()))?;
        for (id, token) in SPECIALS.iter().enumerate() {
            if tokenizer.token_to_id(token) != Some(id as u32) {
                return Err(err(format!("expected special token {token} to have id {id}")));
            }
        }
        Ok(Vocab { tokenizer, path: path.to_path_buf(), digest: format!("{:x}", Sha256::digest(&json)) })
    }
}

/// A short hex digest of `head` and every line of `corpus`: the name of a cached artefact.
pub fn cache_key(head: &str, corpus: &[String]) -> String {
    let mut hash = Sha256::new();
    hash.update(head);
    for line in corpus {
        hash.update(line.as_bytes());
        hash.update(b"\n");
    }
    hash.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

const IDS_MAGIC: &[u8; 8] = b"sweepid1";

/// Token ids as stored in the cache: the magic, the row count, then each row's length and ids
/// (little-endian u32). None unless the file holds exactly `rows` whole rows.
fn read_ids(path: &Path, rows: usize) -> Option<Vec<Vec<u32>>> {
    let bytes = std::fs::read(path).ok()?;
    let rest = bytes.strip_prefix(IDS_MAGIC)?;
    let mut words = rest.chunks_exact(4).map(|w| u32::from_le_bytes(w.try_into().expect("4 bytes")));
    if rest.len() % 4 != 0 || words.next()? as usize != rows {
        return None;
    }
    let mut ids = Vec::with_capacity(rows);
    for _ in 0..rows {
        let len = words.next()? as usize;
        let row: Vec<u32> = words.by_ref().take(len).collect();
        if row.len() != len {
            return None;
        }
        ids.push(row);
    }
    words.next().is_none().then_some(ids)
}

/// Writes under a temporary name and renames, so a reader never sees half a file.
fn write_ids(path: &Path, ids: &[Vec<u32>]) -> std::io::Result<()> {
    let mut bytes = IDS_MAGIC.to_vec();
    bytes.extend((ids.len() as u32).to_le_bytes());
    for row in ids {
        bytes.extend((row.len() as u32).to_le_bytes());
        bytes.extend(row.iter().flat_map(|id| id.to_le_bytes()));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let partial = path.with_extension(format!("partial-{}", std::process::id()));
    let written = std::fs::write(&partial, bytes).and_then(|()| std::fs::rename(&partial, path));
    if written.is_err() {
        // A full disk must not leave half a file behind.
        let _ = std::fs::remove_file(&partial);
    }
    written
}

/// The cached tokenizer for this corpus, trained (under a lock, once) when there is none.
pub fn load_or_train(
    kind: TokenizerKind,
    vocab_size: usize,
    corpus: &[String],
    cache: &Path,
) -> Result<Vocab, TokenizerError> {
    let key = cache_key(&format!("{kind:?}/{vocab_size}/"), corpus);
    let path = cache.join(format!("tokenizer-{key}.json"));
    let io = |e: std::io::Error| TokenizerError::File { path: path.clone(), message: e.to_string() };
    std::fs::create_dir_all(cache).map_err(io)?;
    let _lock = crate::lock::lock_exclusive(&cache.join(format!("tokenizer-{key}.lock"))).map_err(io)?;
    if !path.exists() {
        let tokenizer = train(kind, vocab_size, corpus)?;
        let partial = path.with_extension("json.partial");
        tokenizer.save(&partial, false).map_err(|e| TokenizerError::Train(e.to_string()))?;
        std::fs::rename(&partial, &path).map_err(io)?;
    }
    Vocab::load(&path)
}

fn train(kind: TokenizerKind, vocab_size: usize, corpus: &[String]) -> Result<Tokenizer, TokenizerError> {
    let specials: Vec<AddedToken> = SPECIALS.iter().map(|t| AddedToken::from(t.to_string(), true)).collect();
    let err = |e: tokenizers::Error| TokenizerError::Train(e.to_string());
    let (model, mut trainer): (ModelWrapper, TrainerWrapper) = match kind {
        TokenizerKind::Bpe => (
            BPE::builder().unk_token("[UNK]".into()).build().map_err(err)?.into(),
            BpeTrainerBuilder::new()
                .vocab_size(vocab_size)
                .min_frequency(2)
                .show_progress(false)
                .special_tokens(specials)
                .build()
                .into(),
        ),
        TokenizerKind::Wordpiece => (
            WordPiece::builder().unk_token("[UNK]".into()).build().map_err(err)?.into(),
            WordPieceTrainerBuilder::new()
                .vocab_size(vocab_size)
                .min_frequency(2)
                .show_progress(false)
                .special_tokens(specials)
                .build()
                .into(),
        ),
    };
    let mut tokenizer = Tokenizer::new(model);
    tokenizer.with_normalizer(Some(BertNormalizer::new(true, true, None, true))).map_err(err)?;
    tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
    tokenizer.train(&mut trainer, corpus.iter()).map_err(err)?;
    Ok(tokenizer)
}
