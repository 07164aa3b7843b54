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

    pub fn load(path: &Path) -> Result<Vocab, TokenizerError> {
        let tokenizer = Tokenizer::from_file(path)
            .map_err(|e| TokenizerError::File { path: path.to_path_buf(), message: e.to_string() })?;
        for (id, token) in SPECIALS.iter().enumerate() {
            if tokenizer.token_to_id(token) != Some(id as u32) {
                let message = format!("expected special token {token} to have id {id}");
                return Err(TokenizerError::File { path: path.to_path_buf(), message });
            }
        }
        Ok(Vocab { tokenizer, path: path.to_path_buf() })
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
