//! The candle workers' model-level checks, on tiny shapes so they run in seconds.

use super::checkpoint::Checkpoints;
use super::common::{self, Card};
use super::data::{self, Source};
use super::finetune::ClsModel;
use super::hparams::{self, PretrainParams, Shape, TokenizerKind};
use super::model::Dropout;
use super::pretrain::{self, Corpus, MlmModel};
use super::tokenizer::{self, Vocab};
use crate::protocol::Decision;
use candle_core::Device;
use rand::rngs::StdRng;
use rand::SeedableRng;

fn tiny_shape(vocab: usize) -> Shape {
    Shape { layers: 2, hidden: 32, heads: 4, ffn: 64, vocab_size: vocab, tokenizer: TokenizerKind::Bpe, max_len: 32 }
}

fn tiny_text() -> (Vec<String>, Vec<String>) {
    let train = data::read_text(&Source::Brown("pretrain-train")).unwrap();
    let valid = data::read_text(&Source::Brown("pretrain-valid")).unwrap();
    (train[..400].to_vec(), valid[..60].to_vec())
}

fn tiny_vocab(dir: &std::path::Path, text: &[String]) -> Vocab {
    tokenizer::load_or_train(TokenizerKind::Bpe, 400, text, dir).unwrap()
}

fn tiny_params(steps: usize) -> PretrainParams {
    let params = serde_json::json!({
        "layers": 2, "hidden": 32, "heads": 4, "ffn": 64, "vocab_size": 400, "seq_len": 32,
        "steps": steps, "batch_size": 8, "lr": 1e-2, "warmup": 0.1, "dropout": 0.1, "seed": 7,
    });
    hparams::pretrain(params.as_object().unwrap()).unwrap()
}

#[test]
fn every_variable_receives_a_gradient() {
    let dir = tempfile::tempdir().unwrap();
    let (text, _) = tiny_text();
    let vocab = tiny_vocab(dir.path(), &text);
    let shape = tiny_shape(vocab.size());
    let mlm = MlmModel::new(&shape, &Device::Cpu, 1).unwrap();
    let windows = pretrain::Windows::new(&vocab.encode(&text[..50]).unwrap(), 32);
    let picked: Vec<&[u32]> = (0..4).map(|i| &windows.tokens[i * 32..(i + 1) * 32]).collect();
    let batch = pretrain::mask(&picked, 0.3, shape.vocab_size, &mut StdRng::seed_from_u64(0));
    let grads = mlm.loss(&batch, &mut Dropout::train(0.1, 1)).unwrap().backward().unwrap();
    assert_every_variable_has_a_gradient(&mlm.vars, &grads);

    let cls = ClsModel::new(&shape, 3, &Device::Cpu, 1).unwrap();
    let encoded = vocab.encode(&text[..6]).unwrap();
    let batch = cls.batch(&encoded, &[0, 1, 2, 0, 1, 2], &[0, 1, 2, 3, 4, 5], 32).unwrap();
    let loss = super::train::smoothed_cross_entropy(
        &cls.logits(&batch, &mut Dropout::train(0.1, 1)).unwrap(),
        &batch.labels,
        0.1,
    );
    let grads = loss.unwrap().backward().unwrap();
    assert_every_variable_has_a_gradient(&cls.vars, &grads);
}

fn assert_every_variable_has_a_gradient(vars: &candle_nn::VarMap, grads: &candle_core::backprop::GradStore) {
    for (name, var) in vars.data().lock().unwrap().iter() {
        let g = grads.get(var).unwrap_or_else(|| panic!("{name} gets no gradient"));
        let norm = g.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(norm > 0.0 && norm.is_finite(), "{name} has gradient norm {norm}");
    }
}

/// Runs a tiny pretraining; returns every report and the model.
fn pretrain_tiny(cache: &std::path::Path, steps: usize) -> (Vec<serde_json::Value>, MlmModel, Vocab) {
    let (train, valid) = tiny_text();
    let vocab = tiny_vocab(cache, &train);
    let p = tiny_params(steps);
    let corpus = Corpus::new(&vocab, &train, &valid, p.optim.seq_len).unwrap();
    let mut reports = Vec::new();
    let none = Checkpoints { dir: cache.join("unused"), every: 0, resume_step: None };
    let (model, _) = pretrain::train(&p, &vocab, &corpus, &Device::Cpu, steps / 4, 16, &none, |_, m| {
        reports.push(m);
        Decision::Continue
    })
    .unwrap()
    .unwrap();
    (reports, model, vocab)
}

#[test]
fn loss_goes_down_and_one_seed_gives_identical_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let (first, _, _) = pretrain_tiny(dir.path(), 120);
    let losses: Vec<f64> = first.iter().map(|r| r["val_loss"].as_f64().unwrap()).collect();
    assert!(losses.last().unwrap() < &(losses[0] - 0.15), "validation loss should fall: {losses:?}");
    let (second, _, _) = pretrain_tiny(dir.path(), 120);
    assert_eq!(first, second, "same seed, data and params must give the same metrics");
}

/// Interrupted after any evaluation and resumed from the step the coordinator recorded (the
/// newest checkpoint, or an older one when the newest was never recorded), pretraining goes
/// on exactly as an uninterrupted run: the same reports, bit for bit, dropout included.
#[test]
fn a_resumed_pretraining_reports_what_an_uninterrupted_one_does() {
    let dir = tempfile::tempdir().unwrap();
    let (train, valid) = tiny_text();
    let vocab = tiny_vocab(dir.path(), &train);
    let p = tiny_params(40);
    let corpus = Corpus::new(&vocab, &train, &valid, p.optim.seq_len).unwrap();
    let run = |checkpoints: &Checkpoints, stop_at: usize| {
        let mut reports = Vec::new();
        let end = pretrain::train(&p, &vocab, &corpus, &Device::Cpu, 8, 16, checkpoints, |step, mut m| {
            let durable = m.as_object_mut().unwrap().remove("checkpoint").is_some();
            reports.push(m);
            assert!(durable == (step < 40), "every evaluation but the last writes one (step {step})");
            if step == stop_at {
                Decision::Stop
            } else {
                Decision::Continue
            }
        });
        (reports, end.unwrap().map(|(_, loss)| loss))
    };
    let folder = |name: &str, resume_step| Checkpoints { dir: dir.path().join(name), every: 1, resume_step };
    let (whole, last) = run(&folder("whole", None), 0);
    assert_eq!(whole.len(), 5);
    for (stop, resume) in [(16, 16), (24, 16), (8, 8)] {
        let name = format!("stop-{stop}-resume-{resume}");
        let (before, _) = run(&folder(&name, None), stop);
        let (after, end) = run(&folder(&name, Some(resume)), 0);
        let steps: Vec<u64> = after.iter().map(|r| r["step"].as_u64().unwrap()).collect();
        assert_eq!(steps[0], resume as u64 + 8, "{name}: resumed after its checkpoint");
        let joined: Vec<_> = before.iter().take(resume / 8).chain(&after).cloned().collect();
        assert_eq!(joined, whole, "{name}");
        assert_eq!(end.unwrap().to_bits(), last.unwrap().to_bits(), "{name}");
    }
}

#[test]
fn a_saved_checkpoint_loads_to_the_same_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let (_, model, vocab) = pretrain_tiny(dir.path(), 8);
    let shape = tiny_shape(vocab.size());
    let out = dir.path().join("checkpoint");
    let card = Card { shape: shape.clone(), made_by: serde_json::Value::Null };
    common::save_checkpoint(&out, &model.vars, &vocab, &card).unwrap();

    let loaded = common::load_checkpoint(&out, &Device::Cpu).unwrap();
    assert_eq!(loaded.card.shape, shape);
    let restored = MlmModel::new(&shape, &Device::Cpu, 999).unwrap();
    common::restore(&restored.vars, &loaded.tensors, "", &out).unwrap();
    let windows = pretrain::Windows::new(&loaded.vocab.encode(&tiny_text().1).unwrap(), 32);
    let picked: Vec<&[u32]> = (0..2).map(|i| &windows.tokens[i * 32..(i + 1) * 32]).collect();
    let batch = pretrain::mask(&picked, 0.2, shape.vocab_size, &mut StdRng::seed_from_u64(3));
    let a = model.loss(&batch, &mut Dropout::eval()).unwrap().to_scalar::<f32>().unwrap();
    let b = restored.loss(&batch, &mut Dropout::eval()).unwrap().to_scalar::<f32>().unwrap();
    assert_eq!(a, b);

    // A classifier restores the encoder part and refuses a checkpoint of another shape.
    let cls = ClsModel::new(&shape, 4, &Device::Cpu, 5).unwrap();
    common::restore(&cls.vars, &loaded.tensors, "encoder.", &out).unwrap();
    let wider = ClsModel::new(&Shape { hidden: 64, heads: 4, ..shape }, 4, &Device::Cpu, 5).unwrap();
    let error = common::restore(&wider.vars, &loaded.tensors, "encoder.", &out).unwrap_err().to_string();
    assert!(error.contains("has shape"), "{error}");
}

#[test]
fn params_are_checked_by_name_and_range() {
    let check = |params: serde_json::Value| {
        hparams::pretrain(params.as_object().unwrap()).map(|_| ()).map_err(|e| e.to_string())
    };
    assert!(check(serde_json::json!({ "lr": 1e-3, "layers": 3 })).is_ok());
    assert!(check(serde_json::json!({ "learning_rate": 1e-3 })).unwrap_err().contains("unknown param learning_rate"));
    assert!(check(serde_json::json!({ "lr": -1.0 })).unwrap_err().contains("param `lr`: -1 is out of range"));
    assert!(check(serde_json::json!({ "hidden": 100, "heads": 3 })).unwrap_err().contains("not divisible"));
    assert!(check(serde_json::json!({ "schedule": "step" })).unwrap_err().contains("expected one of linear, cosine"));
    assert!(check(serde_json::json!({ "batch_size": 2.5 })).unwrap_err().contains("expected a whole number"));
    let joint = serde_json::json!({ "lr": 1e-4, "pretrain_lr": 1e-3, "pretrain_steps": 50, "hidden": 64, "heads": 2 });
    let p = hparams::finetune(joint.as_object().unwrap(), true).unwrap();
    let pre = p.pretrain.unwrap();
    assert_eq!((pre.optim.lr, pre.optim.steps, pre.shape.hidden), (1e-3, 50, 64));
    // pretrain_* params are checked even when not used, so typos surface in every arm.
    let ablation = serde_json::json!({ "pretrain_lr": 1e-3, "init": "scratch" });
    assert!(hparams::finetune(ablation.as_object().unwrap(), false).unwrap().pretrain.is_none());
    let typo = serde_json::json!({ "pretrain_lrr": 1e-3 });
    assert!(hparams::finetune(typo.as_object().unwrap(), false).unwrap_err().to_string().contains("pretrain_lrr"));
}

#[test]
fn encoding_the_heads_of_passages_gives_the_leading_tokens_of_the_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (text, _) = tiny_text();
    let mut passages = data::read_train(&Source::Brown("genre-train")).unwrap().texts[..300].to_vec();
    // Whitespace of every kind, control characters, accents and a word with no token at all.
    passages.extend(
        ["a\u{7}  b\tc\n\nd", "\u{7} \u{7} \u{7} x y z", "  leading and trailing  ", "café naïve  — «quoted»", ""]
            .map(String::from),
    );
    for kind in [TokenizerKind::Bpe, TokenizerKind::Wordpiece] {
        let vocab = tokenizer::load_or_train(kind, 400, &text, dir.path()).unwrap();
        for max in [1, 3, 62] {
            let whole: Vec<Vec<u32>> =
                vocab.encode(&passages).unwrap().into_iter().map(|ids| ids[..ids.len().min(max)].to_vec()).collect();
            assert_eq!(vocab.encode_heads(&passages, max).unwrap(), whole, "{kind:?}, {max} tokens");
        }
    }
}

#[test]
fn cached_token_ids_equal_fresh_ones_and_a_damaged_entry_is_encoded_again() {
    let dir = tempfile::tempdir().unwrap();
    let (text, _) = tiny_text();
    let vocab = tiny_vocab(dir.path(), &text);
    let cache = dir.path().join("cache");
    let passages = &text[..40];
    let fresh = vocab.encode_heads(passages, 20).unwrap();
    assert_eq!(vocab.encode_heads_cached(passages, 20, &cache).unwrap(), fresh);
    let entries: Vec<_> = std::fs::read_dir(&cache).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(entries.len(), 1, "one entry, no partial files: {entries:?}");
    let entry = &entries[0];
    let whole = std::fs::read(entry).unwrap();
    // A second call reads the entry: one swapped for other valid ids comes back as stored.
    let mut planted = b"sweepid1".to_vec();
    planted.extend(40u32.to_le_bytes());
    (0..40u32).for_each(|i| planted.extend([1u32, i].iter().flat_map(|w| w.to_le_bytes())));
    std::fs::write(entry, &planted).unwrap();
    let read: Vec<Vec<u32>> = (0..40).map(|i| vec![i]).collect();
    assert_eq!(vocab.encode_heads_cached(passages, 20, &cache).unwrap(), read);
    std::fs::write(entry, &whole).unwrap();
    assert_eq!(vocab.encode_heads_cached(passages, 20, &cache).unwrap(), fresh);
    // A truncated entry, garbage, or an empty file are encoded again (and repaired).
    for damaged in [&whole[..whole.len() - 3], b"not ids at all".as_slice(), b""] {
        std::fs::write(entry, damaged).unwrap();
        assert_eq!(vocab.encode_heads_cached(passages, 20, &cache).unwrap(), fresh);
        assert_eq!(std::fs::read(entry).unwrap(), whole);
    }
    // A cache that cannot be written (here a file stands where its folder should be) only
    // costs the time: the ids still come back.
    let blocked = dir.path().join("not-a-folder");
    std::fs::write(&blocked, b"").unwrap();
    assert_eq!(vocab.encode_heads_cached(passages, 20, &blocked.join("cache")).unwrap(), fresh);
    // Other budgets and other texts get their own entries.
    vocab.encode_heads_cached(passages, 10, &cache).unwrap();
    vocab.encode_heads_cached(&text[..41], 20, &cache).unwrap();
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 3);
}
